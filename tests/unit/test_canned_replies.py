"""
Canned replies: the file's format, every mistake refused naming file, line
and what was expected, the bounds, and expansion of placeholders.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from wsdaemon.support.canned import (
    MAX_REPLIES,
    MAX_TEXT,
    CannedError,
    expand,
    parse_canned,
    read_canned,
)


def test_parses_replies_comments_and_continuations(tmp_path: Path) -> None:
    """Comments and blank lines are skipped; indented lines continue a reply on a new line."""
    path = tmp_path / "canned.txt"
    path.write_text("# team replies\n\n/hello Hello {name}, this is {operator}.\n"
                    "/Refund Refunds take 5 days.\n  Ask me anything else.\n",
                    encoding="utf-8")
    replies = read_canned(path)
    assert [r.shortcut for r in replies.replies] == ["hello", "refund"]
    refund = replies.get("/REFUND")
    assert refund is not None
    assert refund.text == "Refunds take 5 days.\nAsk me anything else."
    assert replies.get("nope") is None


@pytest.mark.parametrize(("text", "expected"), [
    ("hello there\n", "line 1: expected '/shortcut text'"),
    ("/he!lo Hi\n", "line 1: expected '/shortcut text'"),
    ("/hello\n", "line 1: /hello has no text"),
    ("  indented\n", "line 1: an indented line continues a reply"),
    ("/a Hi\n/A Again\n", "line 2: /a is already defined on line 1"),
    ("/a Hi {nmae}\n", "line 1: unknown placeholder {nmae}; expected one of {name}"),
    ("/a Hi {name!r}\n", "line 1: placeholder {name} takes no format"),
    ("/a Hi {name\n", "line 1: .*braces"),
    ("/a ok\n/b Hi }\n", "line 2: "),
])
def test_mistakes_name_file_and_line(text: str, expected: str) -> None:
    """Each mistake is refused naming the file, the line and what was expected."""
    with pytest.raises(CannedError, match=f"canned.txt, {expected}"):
        parse_canned(text.splitlines(), "canned.txt")


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    """A file that cannot be read is named in the error."""
    with pytest.raises(CannedError, match="missing.txt: cannot read"):
        read_canned(tmp_path / "missing.txt")


def test_bounds() -> None:
    """At most MAX_REPLIES replies of MAX_TEXT characters: at the bound taken, past it refused."""
    lines = [f"/r{n} text" for n in range(MAX_REPLIES)]
    assert len(parse_canned(lines)) == MAX_REPLIES
    with pytest.raises(CannedError, match=f"line {MAX_REPLIES + 1}: more than {MAX_REPLIES}"):
        parse_canned([*lines, "/one-more text"])
    assert parse_canned(["/long " + "x" * MAX_TEXT]).replies[0].text == "x" * MAX_TEXT
    with pytest.raises(CannedError, match=f"at most {MAX_TEXT}"):
        parse_canned(["/long " + "x" * (MAX_TEXT + 1)])
    with pytest.raises(CannedError, match="at most 32"):
        parse_canned(["/" + "s" * 33 + " text"])


def test_expand_fills_placeholders() -> None:
    """Placeholders are filled; {name} falls back to the alias; braces stay braces."""
    replies = parse_canned(["/hi Hello {name} ({email}), I am {operator}. {{ok}}"])
    text = replies.replies[0].text
    assert expand(text, {"name": "Ann", "email": "ann@example.com", "operator": "Alice"}) \
        == "Hello Ann (ann@example.com), I am Alice. {ok}"
    assert expand(text, {"alias": "Visitor 4821", "operator": "Alice"}) \
        == "Hello Visitor 4821 (), I am Alice. {ok}"
