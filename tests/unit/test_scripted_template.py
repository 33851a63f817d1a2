"""
Reply templates: placeholders checked at load, rendered as data.
"""

from __future__ import annotations

import pytest

from wsdaemon.strategies.scripted.template import Scope, Template, TemplateError, parse_json_path

VALUES = {"message": "hi", "session": "s1", "counter": "3", "match.1": "one",
          "match.name": "Bob", "json.user.name": "ann", "tick": "7"}


def render(source: str, scope: Scope | None = None) -> str:
    return Template.compile(source, scope or Scope()).render(VALUES.__getitem__)


def test_literal_and_placeholders() -> None:
    """Literal and placeholders."""
    assert render("you said {message} (#{counter}) on {session}") == "you said hi (#3) on s1"


def test_braces_escape() -> None:
    """Braces escape."""
    assert render('{{"echo": "{message}"}}') == '{"echo": "hi"}'


def test_regex_groups() -> None:
    """Regex groups."""
    scope = Scope(groups={"0", "1", "name"})
    assert render("{match.1} {match.name}", scope) == "one Bob"


def test_json_path_and_tick() -> None:
    """JSON path and tick."""
    assert render("{json.user.name}", Scope(json=True)) == "ann"
    assert render("{tick}", Scope(tick=True)) == "7"


def test_names_are_data_not_code() -> None:
    """No attribute access, no indexing, no format specs: all refused at compile time."""
    for source in ("{message.__class__}", "{session[0]}", "{counter:>5}", "{0}", "{__import__}"):
        with pytest.raises(TemplateError):
            Template.compile(source, Scope())


@pytest.mark.parametrize(
    ("source", "scope", "error"),
    [
        ("{nope}", Scope(), "unknown placeholder {nope}"),
        ("{match.1}", Scope(), "needs a rule that matches a regex"),
        ("{match.3}", Scope(groups={"0", "1"}), "the regex has no group '3' (it has 0, 1)"),
        ("{match.who}", Scope(groups={"0", "name"}), "no group 'who'"),
        ("{json.a}", Scope(), "needs a rule that matches JSON"),
        ("{json.a..b}", Scope(json=True), "bad JSON path 'a..b'"),
        ("{tick}", Scope(), "only available in a ticker"),
        ("{message}", Scope(message=False), "not available in a greeting"),
        ("a { b", Scope(), "lone '{' at character 3"),
        ("a } b", Scope(), "lone '}'"),
    ],
)
def test_errors(source: str, scope: Scope, error: str) -> None:
    """Errors."""
    with pytest.raises(TemplateError) as info:
        Template.compile(source, scope)
    assert error in str(info.value)


def test_json_paths() -> None:
    """JSON paths."""
    assert parse_json_path("items.0.id") == ("items", 0, "id")
    with pytest.raises(ValueError):
        parse_json_path("")
