"""
Push API request bodies: every mistake is a 400 with the reason.
"""

from __future__ import annotations

import json

import pytest

from wsdaemon.connections.index import PushTarget
from wsdaemon.server.admin import _RequestError, parse_push


@pytest.mark.parametrize(
    ("body", "target", "message"),
    [
        ({"client": "c1", "text": "hi"}, PushTarget("client", "c1"), "hi"),
        ({"session": "s", "text": ""}, PushTarget("session", "s"), ""),
        ({"route": "/echo", "text": "你好"}, PushTarget("route", "/echo"), "你好"),
        ({"all": True, "base64": "AAE="}, PushTarget("all"), b"\x00\x01"),
    ],
)
def test_valid(body: dict[str, object], target: PushTarget, message: str | bytes) -> None:
    """Each target and body form parses."""
    assert parse_push(json.dumps(body).encode()) == (target, message)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{not json", "body is not JSON"),
        (b"[1]", "must be a JSON object"),
        (b'{"text": "x"}', "exactly one target"),
        (b'{"client": "a", "route": "/b", "text": "x"}', "exactly one target"),
        (b'{"client": "a"}', 'exactly one of "text"'),
        (b'{"client": "a", "text": "x", "base64": "AA=="}', 'exactly one of "text"'),
        (b'{"client": "", "text": "x"}', '"client" must be a non-empty string'),
        (b'{"all": "yes", "text": "x"}', '"all" must be true'),
        (b'{"all": true, "base64": "***"}', "not valid base64"),
        (b'{"all": true, "text": 5}', '"text" must be a string'),
        (b'{"all": true, "text": "x", "ttl": 5}', "unknown field(s): ttl"),
    ],
)
def test_invalid(body: bytes, error: str) -> None:
    """Each malformed body is a 400 with the reason."""
    with pytest.raises(_RequestError) as info:
        parse_push(body)
    assert info.value.code == 400 and error in info.value.message


@pytest.mark.parametrize("key", ["since", "limit"])
@pytest.mark.parametrize("value", [
    "²", "¹", "٣", "１", "1_0", "+1", " 1", "1 ", "-1", "", "0x10", "1.0", "1" * 20,
    pytest.param("9" * 5000, id="5000-digits"),
])
def test_journal_numbers_are_ascii_digits(key: str, value: str) -> None:
    """A number in the journal's query is ASCII digits, at most 19 of them;
    anything else (superscripts isdigit() takes, digits of other scripts
    int() takes, a 5,000-digit number int() refuses) is a 400 naming it."""
    from wsdaemon.server.journal_api import _filters

    with pytest.raises(_RequestError) as info:
        _filters({key: value})
    assert info.value.code == 400 and f'"{key}"' in info.value.message


def test_journal_numbers_in_range() -> None:
    """Plain numbers pass, from the query (text) or a JSON body (integers)."""
    from wsdaemon.server.journal_api import MAX_LIMIT, _filters

    _, wanted, limit = _filters({"since": "0", "limit": "5"})
    assert (wanted.since, limit) == (0, 5)
    assert _filters({"since": "9" * 19})[1].since == 10 ** 19 - 1
    assert _filters({"since": 42, "limit": MAX_LIMIT})[2] == MAX_LIMIT
    for bad in ({"limit": str(MAX_LIMIT + 1)}, {"limit": True}, {"since": 10 ** 19},
                {"since": 1.5}, {"since": -1}):
        with pytest.raises(_RequestError):
            _filters(bad)
