"""
Rules nested too deeply are one clear error with their line, found before
the TOML parser recurses (RecursionError) or builds a long dotted key (its
time and memory grow with the square of the key's length); matchers and
messages nested too deeply never raise either.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wsdaemon.strategies.scripted.matching import (
    NOT_JSON,
    Matcher,
    MatcherError,
    build_matcher,
    match,
)
from wsdaemon.strategies.scripted.nesting import MAX_NESTING, nesting_depth
from wsdaemon.strategies.scripted.rules import RulesError, parse_rules

RULE = '[[rule]]\ntext = "x"\nreply = "y"\n'
PATH = Path("/etc/wsdaemon/deep.toml")


def refused(text: str) -> RulesError:
    with pytest.raises(RulesError) as info:
        parse_rules(text.encode(), PATH)
    assert "nested too deeply" in info.value.message, info.value.message
    assert f"more than {MAX_NESTING}" in info.value.message
    return info.value


@pytest.mark.parametrize("text", [
    pytest.param(RULE + "json = " + "{a = " * 3000 + "1" + "}" * 3000 + "\n", id="inline-tables"),
    pytest.param(RULE + "json = {a = " + "[" * 3000 + "1" + "]" * 3000 + "}\n", id="arrays"),
    pytest.param(RULE + "json = { a" + ".b" * 5000 + " = 1 }\n", id="dotted-key"),
    pytest.param(RULE + "[rule.a" + ".b" * 5000 + "]\nc = 1\n", id="table-header"),
    pytest.param(RULE + "[[rule.a" + ".b" * 5000 + "]]\nc = 1\n", id="array-header"),
])
def test_deep_nesting_is_one_error_with_its_line(text: str) -> None:
    """Each way TOML nests, 3,000 to 5,000 deep: a RulesError on line 4 (where
    it goes too deep), never a RecursionError or a long parse."""
    assert refused(text).line == 4


def test_nesting_adds_up_across_headers_keys_and_values() -> None:
    """A table header, a dotted key and inline tables, each shallow, together
    deeper than the limit: refused, with the line of the key."""
    third = MAX_NESTING // 3
    text = ("[[rule]]\ntext = \"x\"\nreply = \"y\"\n[rule.json" + ".a" * third + "]\n"
            "b" + ".c" * third + " = " + "{d = " * third + "1" + "}" * third + "\n")
    assert refused(text).line in (4, 5)


def test_the_limit_itself_is_accepted() -> None:
    """A JSON matcher as deep as the limit allows loads; one level more does not."""
    # [[rule]] is two levels (the array, the table), then json's tables.
    inner = MAX_NESTING - 2
    ok = RULE.replace('text = "x"\n', "") + "json = " + "{a = " * inner + "1" + "}" * inner
    rules = parse_rules((ok + "\n").encode(), PATH)
    assert nesting_depth(rules.rules[0].matcher.json) == inner  # type: ignore[union-attr]
    deeper = RULE.replace('text = "x"\n', "") + "json = " + "{a = " * (inner + 1) + "1" \
        + "}" * (inner + 1)
    refused(deeper + "\n")


SILENT = "[[rule]]\ntext = {text}\n"


@pytest.mark.parametrize("text", [
    pytest.param(SILENT.format(text=json.dumps("{[" * 3000 + "a.b" * 3000)), id="basic"),
    pytest.param(SILENT.format(text="'" + "{[." * 3000 + "'"), id="literal"),
    pytest.param(SILENT.format(text='"""\n' + "{[." * 3000 + '\n\\"""\n"""'),
                 id="multiline-basic"),
    pytest.param(SILENT.format(text="'''\n" + "{[." * 3000 + "\n''''"), id="multiline-literal"),
    pytest.param(SILENT.format(text='"x"') + "# " + "{[." * 3000 + "\n", id="comment"),
    pytest.param(RULE.replace('reply = "y"\n', "") + "[[rule.send]]\ndelay = 1.5\n"
                 "text = 'a'\n" * 200, id="many-tables"),
])
def test_brackets_and_dots_in_strings_and_comments_do_not_count(text: str) -> None:
    """Only TOML's own structure counts: strings of every kind and comments
    may hold any brackets and dots; many shallow tables are fine."""
    parse_rules(text.encode(), PATH)


def test_the_scan_names_the_line_even_after_multiline_strings() -> None:
    """Lines are counted through multi-line strings and comments."""
    text = RULE.replace('"y"', '"""\none\ntwo\n"""') + "# note\n" + "json = " + \
        "{a = " * 100 + "1" + "}" * 100 + "\n"
    assert refused(text).line == 8


def test_a_json_matcher_too_deep_is_refused() -> None:
    """The journal's search takes the same matchers: one nested past the
    limit is a MatcherError, not a RecursionError later."""
    deep: dict[str, object] = {"a": 1}
    for _ in range(MAX_NESTING):
        deep = {"a": deep}
    with pytest.raises(MatcherError) as info:
        build_matcher({"json": deep})
    assert "nested too deeply" in info.value.message


def test_a_message_too_deep_to_parse_is_not_json() -> None:
    """A client's message nested 100,000 deep does not match a JSON matcher
    (Python's JSON parser raises RecursionError on it)."""
    matcher = Matcher("json", json={"a": 1})
    for message in ("[" * 100_000, '{"a":' * 100_000):
        assert match(matcher, message) == (False, None, NOT_JSON)
