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
