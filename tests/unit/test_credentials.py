"""
Operator tokens: parsing with line numbers, constant-time checking.
"""

from __future__ import annotations

import pytest

from wsdaemon.credentials import check_token, parse_tokens


def test_parse_and_check() -> None:
    """Parse and check."""
    tokens = parse_tokens(["# comment", "", "alice: aaaaaaaaaaaaaaaa1", "bob:bbbbbbbbbbbbbbbb2"])
    assert tokens == {"aaaaaaaaaaaaaaaa1": "alice", "bbbbbbbbbbbbbbbb2": "bob"}
    assert check_token("bbbbbbbbbbbbbbbb2", tokens) == "bob"
    assert check_token("bbbbbbbbbbbbbbbb", tokens) is None
    assert check_token("", tokens) is None


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        (["alice"], "line 1: expected name:token"),
        (["ok:cccccccccccccccc", "bad name:dddddddddddddddd"], "line 2: expected name:token"),
        (["alice:short"], "at least 16 characters"),
        (["a:eeeeeeeeeeeeeeee", "b:eeeeeeeeeeeeeeee"], "line 2: 'b' has the same token as 'a'"),
    ],
)
def test_bad_tokens(lines: list[str], error: str) -> None:
    """Bad tokens."""
    with pytest.raises(ValueError, match=error):
        parse_tokens(lines)
