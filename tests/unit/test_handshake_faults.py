"""
Handshakes on the slow path (connections.handshake), on an in-memory
transport: each journalled with its credentials masked, paths answered or
404, and the faults on purpose: reset, never answered (bounded), slow.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from tests import wsframes as ws
from tests.unit.test_protocol import SETTINGS, LenientTransport, ProgrammableStrategy, echo
from wsdaemon.connections import handshake as handshake_module
from wsdaemon.connections.journal import JournalFilter, to_json
from wsdaemon.connections.protocol import RouteFactory, RouteProtocol
from wsdaemon.connections.route import Route
from wsdaemon.records import HandshakePlan
from wsdaemon.strategies.scripted.rules import parse_rules
from wsdaemon.strategies.scripted.strategy import ScriptedStrategy

JOURNALLED = replace(SETTINGS, journal_entries=100, journal_max_bytes=1 << 20)


def scripted(rules: str, clock: Clock, settings: Any = JOURNALLED) -> RouteFactory:
    strategy = ScriptedStrategy(parse_rules(rules.encode(), Path("r.toml")), clock)
    route = Route(path="/mock", section="route:/mock", strategy_name="scripted",
                  strategy=strategy, protocol=settings)
    return RouteFactory(route, clock=clock)


class ResettableTransport(LenientTransport):
    """Records an abort (what a reset is, once SO_LINGER is 0)."""

    aborted = False

    def abortConnection(self) -> None:
        self.aborted = True
        self.loseConnection()


def connect(factory: RouteFactory, path: str = "/mock", extra: str = ""
            ) -> tuple[RouteProtocol, ResettableTransport]:
    transport = ResettableTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    protocol = factory.buildProtocol(transport.getPeer())
    assert isinstance(protocol, RouteProtocol)
    protocol.makeConnection(transport)
    protocol.dataReceived(ws.handshake_request(path, extra=extra))
    return protocol, transport


def status(transport: ResettableTransport) -> int | None:
    data = transport.value()
    if not data:
        return None
    return int(data.split(b" ", 2)[1])


def handshakes(factory: RouteFactory) -> list[dict[str, Any]]:
    return [to_json(e, "/mock") for e in factory.journal.select(
        JournalFilter(direction="handshake"))]


def test_a_scripted_route_journals_each_handshake_with_secrets_masked() -> None:
    """Method, path, query and headers are journalled under the session id
    the connection gets; Authorization keeps its scheme, a Cookie its
    names, token-like query values and Sec-WebSocket-Key are masked."""
    factory = scripted('[default]\nreply = "x"\n', Clock())
    protocol, transport = connect(
        factory, "/mock/rooms/7?token=s3cret&client_token=c&page=2&tag=a&tag=b",
        extra="Authorization: Bearer abc.def\r\nCookie: sid=42; theme=dark\r\n"
              "X-User: ann\r\nSec-WebSocket-Protocol: chat.v2, chat.v1\r\n")
    assert status(transport) == 101
    [entry] = handshakes(factory)
    assert entry["session"] == protocol.session.session_id  # type: ignore[union-attr]
    assert (entry["method"], entry["path"]) == ("GET", "/mock/rooms/7")
    assert entry["query"] == {"token": "***", "client_token": "***", "page": "2",
                              "tag": ["a", "b"]}
    headers = entry["headers"]
    assert headers["authorization"] == "Bearer ***"
    assert headers["cookie"] == "sid=***; theme=***"
    assert headers["sec-websocket-key"] == "***"
    assert headers["x-user"] == "ann"
    assert entry["subprotocols"] == ["chat.v2", "chat.v1"] and entry["fault"] is None
    assert "s3cret" not in json.dumps(entry) and "abc.def" not in json.dumps(entry)


def test_other_routes_take_the_fast_path() -> None:
    """A route whose strategy has no handshake plan journals no handshake
    and does not go through the slow path (nothing to do there)."""
    route = Route(path="/t", section="route:/t", strategy_name="test",
                  strategy=ProgrammableStrategy(echo), protocol=JOURNALLED)
    factory = RouteFactory(route, clock=Clock())
    assert not factory.handshake.active
    _, transport = connect(factory, "/t")
    assert status(transport) == 101
    assert handshakes_of(factory) == []


def handshakes_of(factory: RouteFactory) -> list[Any]:
    return list(factory.journal.select(JournalFilter(direction="handshake")))


def test_the_journal_bounds_handshakes_as_messages() -> None:
    """Handshake entries count against journal_entries: the oldest go."""
    settings = replace(SETTINGS, journal_entries=3, journal_max_bytes=1 << 20)
    factory = scripted('[default]\nreply = "x"\n', Clock(), settings)
    for n in range(5):
        connect(factory, f"/mock?n={n}")
    kept = factory.journal.snapshot()
    assert len(kept) == 3 and factory.journal.dropped > 0


def test_paths_answer_their_patterns_and_404_the_rest() -> None:
    """[handshake] paths: the route's own path and /rooms/{room} are
    answered; another path below the route gets 404, journalled as
    not_found."""
    factory = scripted('[handshake]\npaths = ["/", "/rooms/{room}"]\n', Clock())
    assert status(connect(factory, "/mock")[1]) == 101
    assert status(connect(factory, "/mock/rooms/9")[1]) == 101
    assert status(connect(factory, "/mock/rooms/9/x")[1]) == 404
    assert status(connect(factory, "/mock/lobby")[1]) == 404
    assert [e["fault"] for e in handshakes(factory)] == [None, None, "not_found", "not_found"]


def test_reset_next_aborts_without_an_answer() -> None:
    """reset_next = 1: the next handshake gets no HTTP answer, its TCP
    connection is aborted; the one after is answered."""
    factory = scripted('[handshake]\nreset_next = 1\n', Clock())
    _, transport = connect(factory)
    assert transport.aborted and status(transport) is None
    _, transport = connect(factory)
    assert not transport.aborted and status(transport) == 101
    assert [e["fault"] for e in handshakes(factory)] == ["reset", None]


def test_hang_next_holds_until_the_client_goes_and_is_bounded(monkeypatch: Any) -> None:
    """hang_next: handshakes never answered, held while their clients stay
    (the count goes down when one leaves); past MAX_HELD the next to be held
    is refused 503 instead."""
    monkeypatch.setattr(handshake_module, "MAX_HELD", 2)
    clock = Clock()
    factory = scripted('[handshake]\nhang_next = 3\n', clock)
    first, t1 = connect(factory)
    _, t2 = connect(factory)
    _, t3 = connect(factory)
    clock.advance(600)
    assert (status(t1), status(t2), status(t3)) == (None, None, 503)
    assert len(factory.handshake.held) == 2
    first.connectionLost(Failure(ConnectionDone()))
    assert len(factory.handshake.held) == 1
    assert status(connect(factory)[1]) == 101
    assert [e["fault"] for e in handshakes(factory)] == ["held", "held", "too_many_held", None]


def test_a_held_handshake_ends_after_the_longest_hold() -> None:
    """A client that never gives up is dropped after MAX_HOLD_SECONDS."""
    clock = Clock()
    factory = scripted('[handshake]\nhang_next = 1\n', clock)
    _, transport = connect(factory)
    clock.advance(handshake_module.MAX_HOLD_SECONDS - 1)
    assert not transport.disconnecting
    clock.advance(1)
    assert transport.disconnecting and status(transport) is None


def test_delay_answers_after_it_and_not_for_a_client_gone() -> None:
    """delay = 2: the answer (an acceptance, or a refusal) comes 2 s later;
    a client gone in between is answered nothing and counts no connection."""
    clock = Clock()
    factory = scripted('[handshake]\ndelay = 2\nrefuse_next = 1\n[default]\nreply = "x"\n',
                       clock)
    _, transport = connect(factory)
    clock.advance(1.9)
    assert status(transport) is None
    clock.advance(0.1)
    assert status(transport) == 503
    _, transport = connect(factory)
    clock.advance(2)
    assert status(transport) == 101 and factory.connections == 1
    gone, transport = connect(factory)
    gone.connectionLost(Failure(ConnectionDone()))
    clock.advance(2)
    assert status(transport) is None and factory.connections == 1


def test_the_admin_plan_turns_the_slow_path_on_and_off() -> None:
    """A plan set at run time (as the admin API does) with faults makes an
    ordinary route take the slow path until they are used up."""
    route = Route(path="/t", section="route:/t", strategy_name="test",
                  strategy=ProgrammableStrategy(echo), protocol=JOURNALLED)
    factory = RouteFactory(route, clock=Clock())
    factory.handshake.set(HandshakePlan(reset_next=1))
    assert factory.handshake.active
    _, transport = connect(factory, "/t")
    assert transport.aborted
    assert not factory.handshake.active
    assert handshakes_of(factory) == []  # not a scripted route: not journalled


def test_workers_plans_add_up_in_the_supervisors_answer() -> None:
    """With workers, GET /routes/handshake sums what each has left and holds."""
    from wsdaemon.server.aggregate import _COMBINERS

    answers = [{"route": "/mock", "handshake": {"refusals_left": 1, "resets_left": 2,
                                                "hangs_left": 0, "held": n, "delay": 0.5}}
               for n in (1, 3)]
    combined = _COMBINERS[b"/routes/handshake"](answers, 2)["handshake"]
    assert (combined["refusals_left"], combined["resets_left"], combined["hangs_left"],
            combined["held"], combined["delay"]) == (2, 4, 0, 4, 0.5)
