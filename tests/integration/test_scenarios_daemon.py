"""
Scenarios on the real daemon: two connections of a scripted route share a
scenario's state; the admin API reads and sets it (GET/PUT
/routes/scenarios), and POST /routes/reset starts it again. A broadcast
rule answers every connection of the route, each journalled. Steps run per
connection; what they expected, met or missed, is in the journal.
"""

from __future__ import annotations

import time
import urllib.error
from collections.abc import Callable
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.admin_client import Admin, admin_config
from tests.daemon import Daemon, free_port

pytestmark = pytest.mark.slow

KEY = "scenario-key-0123456789abcdef"
RULES = """
[[rule]]
text = "pay"
scenario = "checkout"
when_state = "Started"
set_state = "Paid"
reply = "paid"

[[rule]]
text = "status"
scenario = "checkout"
when_state = "Paid"
reply = "status: paid"

[[rule]]
regex = '^say (?P<text>.+)$'
broadcast = true
reply = "someone said {match.text}"

[[rule]]
name = "login"
text = "login"
steps = [{ send = "who?" }, { expect = { regex = '^user ' }, within = 0.5 },
         { send = "welcome" }, { expect = "bye", within = 0.3 }, { close = 1000 }]
fail_close = { code = 4002, reason = "script failed" }

[default]
reply = "status: open"
"""


@pytest.fixture
def shop(write_config: Callable[..., Path],
         start_daemon: Callable[..., Daemon]) -> tuple[Daemon, Admin]:
    port = free_port()
    path = write_config(admin_config(port, KEY, """
        [route:/shop]
        strategy = scripted
        rules = shop.toml

        [route:/echo]
        strategy = echo
    """))
    (path.parent / "shop.toml").write_text(RULES)
    return start_daemon(path), Admin(port, KEY)


def test_two_connections_share_state_through_the_admin_api(
        shop: tuple[Daemon, Admin]) -> None:
    """Alice's payment moves the scenario for Bob; GET shows it, PUT sets it,
    reset starts it again in "Started"."""
    daemon, admin = shop
    scenarios = "/routes/scenarios?route=/shop"
    with connect(f"{daemon.url}/shop") as alice, connect(f"{daemon.url}/shop") as bob:
        bob.send("status")
        assert bob.recv(timeout=5) == "status: open"
        alice.send("pay")
        assert alice.recv(timeout=5) == "paid"
        bob.send("status")
        assert bob.recv(timeout=5) == "status: paid"
        assert admin.call("GET", scenarios)["scenarios"] == {"checkout": "Paid"}
        admin.call("POST", "/routes/reset?route=/shop")
        assert admin.call("GET", scenarios)["scenarios"] == {"checkout": "Started"}
        bob.send("status")
        assert bob.recv(timeout=5) == "status: open"
        answer = admin.call("PUT", scenarios, {"checkout": "Paid"})
        assert answer == {"route": "/shop", "scenarios": {"checkout": "Paid"}}
        alice.send("status")
        assert alice.recv(timeout=5) == "status: paid"


def test_scenario_requests_that_cannot_be_done_are_refused(
        shop: tuple[Daemon, Admin]) -> None:
    """An unknown scenario is a 404 naming the known ones, a state that is no
    name a 400 (nothing changed), a route without scenarios a 409."""
    _, admin = shop
    scenarios = "/routes/scenarios?route=/shop"
    status, text = admin.error("PUT", scenarios, {"checkout": "Paid", "basket": "Full"})
    assert status == 404 and "no scenario 'basket'" in text and "checkout" in text
    status, text = admin.error("PUT", scenarios, {"checkout": ""})
    assert status == 400 and '"checkout" must be a state name' in text
    status, text = admin.error("PUT", scenarios, {"checkout": "x" * 201})
    assert status == 400 and "at most 200 characters" in text
    assert admin.call("GET", scenarios)["scenarios"] == {"checkout": "Started"}
    status, text = admin.error("GET", "/routes/scenarios?route=/echo")
    assert status == 409 and "no scenarios" in text
    with pytest.raises(urllib.error.HTTPError):
        admin.call("GET", "/routes/scenarios")


def test_a_broadcast_reaches_every_connection_and_is_journalled(
        shop: tuple[Daemon, Admin]) -> None:
    """Alice's broadcast reaches her and Bob, not the echo route; the
    journal holds one sent message per connection."""
    daemon, admin = shop
    with connect(f"{daemon.url}/shop") as alice, connect(f"{daemon.url}/shop") as bob, \
            connect(f"{daemon.url}/echo") as other:
        alice.send("say hello")
        assert alice.recv(timeout=5) == "someone said hello"
        assert bob.recv(timeout=5) == "someone said hello"
        other.send("still here")
        assert other.recv(timeout=5) == "still here"
        found = admin.call("POST", "/journal/find", {
            "route": "/shop", "direction": "out", "match": {"text": "someone said hello"}})
        assert len({entry["session"] for entry in found["entries"]}) == 2


def step_notes(admin: Admin, session_count: int) -> list[str]:
    for _ in range(100):
        entries = admin.call("GET", "/journal?route=/shop&direction=step")["entries"]
        if len({e["session"] for e in entries}) >= session_count and \
                all(e["type"] == "text" for e in entries):
            return [e["text"] for e in entries]
        time.sleep(0.05)
    raise AssertionError("no step notes in the journal")


def test_steps_are_checked_and_journalled(shop: tuple[Daemon, Admin]) -> None:
    """One client follows the script to its close 1000; another answers too
    late and is closed with fail_close; the journal says which step failed."""
    daemon, admin = shop
    with connect(f"{daemon.url}/shop") as good:
        good.send("login")
        assert good.recv(timeout=5) == "who?"
        good.send("user ann")
        assert good.recv(timeout=5) == "welcome"
        good.send("bye")
        with pytest.raises(ConnectionClosed):
            good.recv(timeout=5)
        assert good.close_code == 1000
    with connect(f"{daemon.url}/shop") as late:
        late.send("login")
        assert late.recv(timeout=5) == "who?"
        with pytest.raises(ConnectionClosed):
            late.recv(timeout=5)
        assert (late.close_code, late.close_reason) == (4002, "script failed")
    notes = step_notes(admin, 2)
    assert notes[:2] == ["rule login step 2: got 'user ann' as expected (regex = '^user ')",
                         "rule login step 4: got 'bye' as expected (text = 'bye')"]
    assert notes[2:] == ["rule login: steps done (closed 1000)",
                         "rule login step 2 failed: expected regex = '^user ' within 0.5 s, "
                         "got nothing"]
