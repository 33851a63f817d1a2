"""
A push honours each receiving connection's message limit (its route's
max_message_size), as operator replies do: a connection it is too big for
does not get it, is counted as failed, and stays open.
"""

from __future__ import annotations

from dataclasses import replace

from twisted.internet.task import Clock

from tests import wsframes as ws
from tests.unit.test_protocol import SETTINGS, Client, ProgrammableStrategy, echo
from wsdaemon.broker.local import LocalPushBus
from wsdaemon.connections.index import PushTarget, SessionIndex
from wsdaemon.connections.protocol import RouteFactory
from wsdaemon.connections.route import Route


def _factory(path: str, max_message_size: int, index: SessionIndex) -> RouteFactory:
    settings = replace(SETTINGS, max_message_size=max_message_size,
                       max_frame_size=max_message_size)
    route = Route(path=path, section=f"route:{path}", strategy_name="test",
                  strategy=ProgrammableStrategy(echo), protocol=settings)
    return RouteFactory(route, clock=Clock(), index=index)


def test_a_push_too_big_for_a_route_is_not_sent_there() -> None:
    """50,000 bytes to everyone: the 64 KiB route gets it; the 1 KiB route's
    connection does not, is counted as failed, and still echoes."""
    index = SessionIndex()
    small = Client(_factory("/t", 1024, index))
    large = Client(_factory("/t", 65536, index))
    bus = LocalPushBus(index)
    assert bus.deliver(PushTarget("all"), "x" * 50_000) == (1, 1)
    assert [len(f.payload) for f in large.frames()] == [50_000]
    assert small.frames() == []
    small.send(ws.TEXT, b"still here")
    assert [f.payload for f in small.frames()] == [b"still here"]
    assert bus.deliver(PushTarget("all"), b"y" * 1024) == (2, 0)  # at the limit: sent


def test_the_size_is_the_message_bytes_not_characters() -> None:
    """A text's size is its UTF-8 bytes: 400 three-byte characters are over 1 KiB."""
    index = SessionIndex()
    small = Client(_factory("/t", 1024, index))
    assert LocalPushBus(index).deliver(PushTarget("all"), "€" * 400) == (0, 1)
    assert small.frames() == []
