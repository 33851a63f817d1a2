"""
Run-time control of routes and connections through the admin API, on the
real daemon: replace a scripted route's rules, reset its state, list, send
to, close and drop one connection; the others are unaffected.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from tests.admin_client import Admin, admin_config
from tests.daemon import Daemon, free_port

pytestmark = pytest.mark.slow

KEY = "control-key-0123456789abcdef"
RULES = """
[[rule]]
text = "count"
reply = "n={counter}"

[[rule]]
text = "once"
once = true
reply = "first time"

[default]
reply = "file rules: {message}"
"""


@pytest.fixture
def controlled(write_config: Callable[..., Path],
               start_daemon: Callable[..., Daemon]) -> tuple[Daemon, Admin, Path]:
    port = free_port()
    path = write_config(admin_config(port, KEY, """
        [route:/bot]
        strategy = scripted
        rules = bot.toml

        [route:/echo]
        strategy = echo
    """))
    (path.parent / "bot.toml").write_text(RULES)
    return start_daemon(path), Admin(port, KEY), path.parent / "bot.toml"


def session_of(admin: Admin, route: str, client: str) -> str:
    for _ in range(50):
        connections = admin.call("GET", f"/routes/connections?route={route}")["connections"]
        found = [c["session_id"] for c in connections if c["client_id"] == client]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"{client} not connected to {route}")


def test_replace_rules_at_run_time_then_reload_restores_the_file(
        controlled: tuple[Daemon, Admin, Path]) -> None:
    """PUT /routes/rules changes the answers of open and new connections at
    once; the file is untouched; a SIGHUP reload reads the file again."""
    daemon, admin, rules_file = controlled
    before = rules_file.read_text()
    with connect(f"{daemon.url}/bot") as ws:
        ws.send("hello")
        assert ws.recv() == "file rules: hello"
        answer = admin.call("PUT", "/routes/rules?route=/bot",
                            raw=b'[[rule]]\ntext = "hello"\nreply = "replaced"\n')
        assert answer == {"route": "/bot", "rules": 1}
        ws.send("hello")
        assert ws.recv() == "replaced"
    with connect(f"{daemon.url}/bot") as ws:
        ws.send("hello")
        assert ws.recv() == "replaced"
    assert rules_file.read_text() == before
    daemon.process.send_signal(1)
    daemon.wait_for_log("reloaded")
    with connect(f"{daemon.url}/bot") as ws:
        ws.send("hello")
        assert ws.recv() == "file rules: hello"


def test_wrong_rules_are_refused_with_their_line_and_change_nothing(
        controlled: tuple[Daemon, Admin, Path]) -> None:
    """A bad rules body answers 400 naming the line; the old rules keep
    answering. A route without rules answers 409."""
    daemon, admin, _ = controlled
    bad = b'[[rule]]\ntext = "a"\nreply = "b"\n\n[[rule]]\nregex = "(x)\\\\1"\nreply = "c"\n'
    code, why = admin.error("PUT", "/routes/rules?route=/bot", raw=bad)
    assert code == 400 and why.startswith("rules:6:") and "RE2" in why
    code, why = admin.error("PUT", "/routes/rules?route=/bot", raw=b"[[rule]\n")
    assert code == 400 and why.startswith("rules:1:")
    with connect(f"{daemon.url}/bot") as ws:
        ws.send("x")
        assert ws.recv() == "file rules: x"
    assert admin.error("PUT", "/routes/rules?route=/echo", raw=b"")[0] == 409
    assert admin.error("PUT", "/routes/rules?route=/nope", raw=b"")[0] == 404


def test_reset_state_and_journal(controlled: tuple[Daemon, Admin, Path]) -> None:
    """POST /routes/reset restarts counters and once-rules of open connections
    and empties the route's journal."""
    daemon, admin, _ = controlled
    with connect(f"{daemon.url}/bot") as ws:
        for expected in ("n=1", "n=2"):
            ws.send("count")
            assert ws.recv() == expected
        ws.send("once")
        assert ws.recv() == "first time"
        ws.send("once")
        assert ws.recv() == "file rules: once"
        answer = admin.call("POST", "/routes/reset?route=/bot")
        assert answer["state_reset"] is True and answer["journal_cleared"] >= 8
        assert admin.call("GET", "/journal?route=/bot")["entries"] == []
        ws.send("count")
        assert ws.recv() == "n=1"
        ws.send("once")
        assert ws.recv() == "first time"
    routes = {r["route"]: r for r in admin.call("GET", "/routes")["routes"]}
    assert routes["/bot"]["can_replace_rules"] and not routes["/echo"]["can_reset"]


def test_send_close_and_drop_one_connection(controlled: tuple[Daemon, Admin, Path]) -> None:
    """Send to one session; close one with a code and reason (the client sees
    them); drop one without a close frame (the client sees 1006); the other
    connection carries on."""
    daemon, admin, _ = controlled
    with connect(f"{daemon.url}/echo?client_id=a") as a, \
            connect(f"{daemon.url}/echo?client_id=b") as b, \
            connect(f"{daemon.url}/echo?client_id=c") as c:
        listed = admin.call("GET", "/routes/connections?route=/echo")
        assert listed["count"] == 3
        session_a = session_of(admin, "/echo", "a")
        assert admin.call("POST", "/connections/send",
                          {"session": session_a, "text": "just you"})["delivered"] == 1
        assert a.recv() == "just you"
        admin.call("POST", "/connections/close",
                   {"session": session_a, "code": 4001, "reason": "test says bye"})
        with pytest.raises(ConnectionClosed) as closed:
            a.recv()
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "test says bye")
        session_b = session_of(admin, "/echo", "b")
        admin.call("POST", "/connections/drop", {"session": session_b})
        with pytest.raises(ConnectionClosed) as dropped:
            b.recv()
        assert dropped.value.rcvd is None  # no close frame: 1006 for the client
        c.send("still here")
        assert c.recv() == "still here"
    code, why = admin.error("POST", "/connections/close", {"session": "nope"})
    assert code == 404 and "nope" in why


def test_bad_close_codes_are_refused(controlled: tuple[Daemon, Admin, Path]) -> None:
    """Codes a server may not send (1005, 1006, 1015, 2000) are a 400 naming the range."""
    daemon, admin, _ = controlled
    with connect(f"{daemon.url}/echo?client_id=z"):
        session = session_of(admin, "/echo", "z")
        for code in (1005, 1006, 1015, 2000, 5000, "1000"):
            status, why = admin.error("POST", "/connections/close",
                                      {"session": session, "code": code})
            assert status == 400 and "3000-4999" in why
        status, why = admin.error("POST", "/connections/close",
                                  {"session": session, "reason": "x" * 124})
        assert status == 400 and "123" in why


def test_handshake_changes_keep_what_they_do_not_name(
        controlled: tuple[Daemon, Admin, Path]) -> None:
    """POST /routes/handshake changes the keys it gives, and only those:
    refusing the next handshake keeps the subprotocols set before (what
    wsmock.refuse_next() after wsmock.subprotocols() does), and changing the
    subprotocols keeps the refusals still left; DELETE goes back to the
    rules' plan."""
    daemon, admin, _ = controlled
    admin.call("POST", "/routes/handshake?route=/echo", {"subprotocols": ["v2"]})
    admin.call("POST", "/routes/handshake?route=/echo",
               {"refuse_next": 2, "refuse_status": 429, "refuse_headers": {"Retry-After": "1"}})
    plan = admin.call("GET", "/routes/handshake?route=/echo")["handshake"]
    assert plan["subprotocols"] == ["v2"] and plan["refusals_left"] == 2
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{daemon.url}/echo", subprotocols=[Subprotocol("v2")])
    assert refused.value.response.status_code == 429
    admin.call("POST", "/routes/handshake?route=/echo", {"require_subprotocol": True})
    plan = admin.call("GET", "/routes/handshake?route=/echo")["handshake"]
    assert (plan["subprotocols"], plan["require_subprotocol"], plan["refusals_left"],
            plan["refuse_status"], plan["refuse_headers"]) == (["v2"], True, 1, 429,
                                                               {"Retry-After": "1"})
    with pytest.raises(InvalidStatus):
        connect(f"{daemon.url}/echo", subprotocols=[Subprotocol("v2")])
    with connect(f"{daemon.url}/echo", subprotocols=[Subprotocol("v2")]) as ws:
        assert ws.subprotocol == "v2"
    admin.call("DELETE", "/routes/handshake?route=/echo")
    plan = admin.call("GET", "/routes/handshake?route=/echo")["handshake"]
    assert (plan["subprotocols"], plan["refusals_left"]) == ([], 0)


def test_a_drop_the_daemon_made_is_journalled_as_the_daemons(
        controlled: tuple[Daemon, Admin, Path]) -> None:
    """A connection dropped by the admin API or by a rule is journalled as
    dropped by the daemon, with why; only a client that really went away
    is the peer's drop."""
    daemon, admin, _ = controlled
    admin.call("PUT", "/routes/rules?route=/bot", raw=b'[[rule]]\ntext = "drop me"\ndrop = true\n')
    with connect(f"{daemon.url}/echo?client_id=d") as ws:
        admin.call("POST", "/connections/drop", {"session": session_of(admin, "/echo", "d")})
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
    with connect(f"{daemon.url}/bot") as ws:
        ws.send("drop me")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)

    def close_reasons(route: str) -> list[str]:
        for _ in range(50):
            entries = admin.call("GET", f"/journal?route={route}")["entries"]
            closes = [e.get("reason", "") for e in entries if e["direction"] == "close"]
            if closes:
                return closes
            time.sleep(0.05)
        raise AssertionError(f"no close journalled on {route}")

    (by_admin,) = close_reasons("/echo")
    assert "the daemon dropped the connection through the admin API" in by_admin
    assert "peer dropped" not in by_admin
    (by_rule,) = close_reasons("/bot")
    assert "the daemon dropped the connection on purpose" in by_rule
    assert "peer dropped" not in by_rule
