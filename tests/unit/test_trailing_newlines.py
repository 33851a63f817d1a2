"""
Every value checked against a pattern is checked whole: a trailing newline
(which a C{^...$} pattern's C{$} lets through, matching before it) is
refused. (Client ids and JWT subjects: tests/unit/test_identity.py; the
refusal header on the real daemon: tests/integration/test_faults.py.)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactorClock

from wsdaemon.credentials import parse_tokens
from wsdaemon.endpoints import check_endpoint
from wsdaemon.origin import OriginPolicy
from wsdaemon.records import HandshakePlan, check_plan
from wsdaemon.strategies.scripted.rules import parse_rules
from wsdaemon.strategies.scripted.template import parse_json_path

TOKEN = "0123456789abcdef0123"

#: (what, check it with this value): each passes without the newline.
CHECKS: dict[str, tuple[Callable[[str], object], str]] = {
    "handshake subprotocol": (
        lambda value: check_plan(HandshakePlan(subprotocols=(value,))), "chat.v2"),
    "refusal header name": (
        lambda value: check_plan(HandshakePlan(refuse_headers=((value, "1"),))), "X-Evil"),
    "origin pattern": (lambda value: OriginPolicy(patterns=(value,)), "http://localhost:8080"),
    "systemd endpoint": (lambda value: check_endpoint(value, MemoryReactorClock()),
                         "systemd:domain=INET:index=0"),
    "JSON path in a template": (parse_json_path, "user.name"),
}


@pytest.mark.parametrize("what", sorted(CHECKS))
def test_a_trailing_newline_is_refused(what: str) -> None:
    """The value passes as it is, and is refused with a newline after it."""
    check, good = CHECKS[what]
    check(good)
    with pytest.raises(ValueError):
        check(good + "\n")


def test_a_credential_name_is_taken_without_the_space_around_it() -> None:
    """Token lines are stripped around the name, a newline too: the name kept
    never holds one."""
    assert parse_tokens([f"alice\n:{TOKEN}", f" bob :{TOKEN}x"]) == {
        TOKEN: "alice", f"{TOKEN}x": "bob"}
    with pytest.raises(ValueError):
        parse_tokens([f"al\nice:{TOKEN}"])


def test_a_placeholder_is_taken_without_the_space_around_it() -> None:
    """{json.user\\n} names json.user, as { json.user } does: a placeholder
    name never holds a newline."""
    rules = '[[rule]]\njson = {{ type = "hi" }}\nreply = "hello {{json.user{end}}}"\n'
    (rule,) = parse_rules(rules.format(end="\\n").encode(), Path("r.toml")).rules
    assert rule.messages[0].template.names == {"json.user"}
