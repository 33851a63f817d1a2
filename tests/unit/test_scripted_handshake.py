"""
Scripted rules that see the handshake: [handshake] paths and faults, a
rule's or greeting's `when` (path pattern, query, headers, subprotocols
offered), and the templates {path}, {path.NAME}, {query.NAME},
{headers.NAME}; mistakes refused with their line and key.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from wsdaemon.records import HandshakeRequest
from wsdaemon.strategies.scripted.rules import RulesError, parse_rules
from wsdaemon.strategies.scripted.strategy import ScriptedStrategy
from wsdaemon.testing import RecordingSession


class HandshakeSession(RecordingSession):
    """A recording session that connected with a handshake."""

    def __init__(self, path: str, query: str = "", headers: dict[str, str] | None = None,
                 subprotocols: tuple[str, ...] = (), session_id: str = "s1") -> None:
        super().__init__(session_id=session_id, route="/mock")
        self.handshake = HandshakeRequest(
            session_id=session_id, path=path, query=query, headers=headers or {},
            subprotocols=subprotocols, peer="tcp4:127.0.0.1:1")


def strategy(rules: str) -> ScriptedStrategy:
    return ScriptedStrategy(parse_rules(textwrap.dedent(rules).encode(), Path("r.toml")),
                            Clock())


def opened(scripted: ScriptedStrategy, session: HandshakeSession) -> HandshakeSession:
    scripted.connection_opened(session)
    return session


ROOMS = """
    [handshake]
    paths = ["/", "/rooms/{room}", "/users/{user}/feed"]

    [[greeting]]
    text = "welcome to {path.room} at {path}"
    when = { path = "/rooms/{room}" }

    [[greeting]]
    text = "feed of {path.user}"
    when = { path = "/users/{user}/feed" }

    [[rule]]
    text = "who"
    when = { headers = { x-user = { regex = '^a' } } }
    reply = "you are {headers.X-User} in {path.room}"

    [[rule]]
    text = "who"
    reply = "nobody ({headers.x-user})"

    [[rule]]
    when = { query = { token = true }, subprotocol = ["chat.v2", "chat.v3"] }
    reply = "v2 with token {query.token} said {message}"

    [[rule]]
    text = "secret"
    when.query.token = false
    reply = "no token"
"""


def test_greetings_follow_the_path_and_fill_its_placeholders() -> None:
    """A greeting with when.path goes only to connections on that pattern,
    filled with its placeholders and the path."""
    scripted = strategy(ROOMS)
    room = opened(scripted, HandshakeSession("/mock/rooms/7"))
    feed = opened(scripted, HandshakeSession("/mock/users/ann/feed", session_id="s2"))
    plain = opened(scripted, HandshakeSession("/mock", session_id="s3"))
    assert room.sent == ["welcome to 7 at /mock/rooms/7"]
    assert feed.sent == ["feed of ann"]
    assert plain.sent == []


def test_rules_match_on_headers_and_fill_them() -> None:
    """when.headers (any case, a regex) picks the rule; {headers.NAME} and
    {path.NAME} fill the reply; another user falls to the next rule."""
    scripted = strategy(ROOMS)
    ann = opened(scripted, HandshakeSession("/mock/rooms/7", headers={"x-user": "ann"}))
    bob = opened(scripted, HandshakeSession("/mock/rooms/7", headers={"x-user": "bob"},
                                            session_id="s2"))
    assert scripted.message_received(ann, "who") == "you are ann in 7"
    assert scripted.message_received(bob, "who") == "nobody (bob)"


def test_a_rule_with_only_when_answers_every_message_its_condition_admits() -> None:
    """when with query presence and an offered subprotocol, no matcher: any
    message of such a connection; others are not answered by it."""
    scripted = strategy(ROOMS)
    v2 = opened(scripted, HandshakeSession("/mock", query="token=t0&x=1",
                                           subprotocols=("chat.v1", "chat.v3")))
    v1 = opened(scripted, HandshakeSession("/mock", query="token=t0", subprotocols=("chat.v1",),
                                           session_id="s2"))
    bare = opened(scripted, HandshakeSession("/mock", session_id="s3"))
    assert scripted.message_received(v2, "hi") == "v2 with token t0 said hi"
    assert scripted.message_received(v1, "hi") is None
    assert scripted.message_received(bare, "secret") == "no token"
    assert scripted.message_received(v1, "secret") is None


def test_a_rules_own_path_pattern_fills_its_placeholders() -> None:
    """A rule's when.path names placeholders [handshake] does not; the
    route's other paths are not refused when [handshake] has no paths."""
    scripted = strategy("""
        [[rule]]
        when.path = "/orders/{id}/events"
        text = "status"
        reply = "order {id} is {path.id}"
        """.replace("{id} is", "{{id}} is"))
    order = opened(scripted, HandshakeSession("/mock/orders/55/events"))
    other = opened(scripted, HandshakeSession("/mock/orders", session_id="s2"))
    assert scripted.message_received(order, "status") == "order {id} is 55"
    assert scripted.message_received(other, "status") is None


def test_a_session_without_a_handshake_sees_empty_values() -> None:
    """A session that shows no handshake (a test double) gets empty values
    and matches no condition."""
    scripted = strategy(ROOMS)
    session = RecordingSession()
    scripted.connection_opened(session)
    assert scripted.message_received(session, "who") == "nobody ()"


def test_handshake_faults_and_paths_load_into_the_plan() -> None:
    """[handshake] reset_next, hang_next, delay and paths reach the plan."""
    rules = parse_rules(b'[handshake]\nreset_next = 1\nhang_next = 2\ndelay = 0.5\n'
                        b'paths = "/rooms/{room}"\n', Path("r.toml"))
    plan = rules.handshake
    assert plan is not None
    assert (plan.reset_next, plan.hang_next, plan.delay, plan.paths) == \
        (1, 2, 0.5, ("/rooms/{room}",))
    assert rules.paths == (("rooms", "{room}"),)


BAD = {
    "unknown placeholder": ("""
        [handshake]
        paths = ["/rooms/{room}"]
        [[rule]]
        text = "x"
        reply = "{path.rom}"
        """, 6, "no path pattern names {rom}"),
    "path placeholder without a pattern": ("""
        [[greeting]]
        text = "in {path.room}"
        """, 3, "no path pattern names {room}"),
    "when key": ("""
        [[rule]]
        text = "x"
        reply = "y"

        [rule.when]
        paht = "/a"
        """, 7, "when: unknown key 'paht'"),
    "when path": ("""
        [[rule]]
        text = "x"
        when = { path = "rooms/{room}" }
        """, 4, "must start with /"),
    "placeholder inside a segment": ("""
        [handshake]
        paths = ["/rooms/r{room}"]
        """, 3, "a placeholder is a whole segment"),
    "header condition": ("""
        [[rule]]
        text = "x"
        [rule.when]
        headers = { x-user = 3 }
        """, 5, "headers.x-user: expected a value"),
    "delay": ("""
        [handshake]
        delay = -1
        """, 3, "delay: expected seconds between 0 and 3600"),
    "hang_next": ("""
        [handshake]
        hang_next = "many"
        """, 3, "hang_next: expected a whole number"),
    "subprotocol": ("""
        [[rule]]
        text = "x"
        when = { subprotocol = [] }
        """, 4, "subprotocol: expected a name"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_mistakes_are_refused_with_line_and_key(case: str) -> None:
    """Each mistake names the line and the key, with what was expected."""
    source, line, message = BAD[case]
    with pytest.raises(RulesError) as raised:
        parse_rules(textwrap.dedent(source).encode(), Path("r.toml"))
    assert message in raised.value.message
    assert raised.value.line == line


def test_new_rules_read_open_connections_paths_again() -> None:
    """Rules replaced while a connection is open: its path's placeholders
    are those the new [handshake] paths name."""
    scripted = strategy('[[rule]]\ntext = "x"\nreply = "none"\n')
    session = opened(scripted, HandshakeSession("/mock/rooms/3"))
    scripted.replace_rules(b'[handshake]\npaths = ["/rooms/{room}"]\n'
                           b'[[rule]]\ntext = "x"\nreply = "room {path.room}"\n')
    assert scripted.message_received(session, "x") == "room 3"
