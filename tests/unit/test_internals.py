"""
The speed paths' reach into Twisted's and Autobahn's private parts
(wsdaemon.internals): every name is found on the versions installed, a
missing one turns its path off instead of breaking it, and the daemon then
works through the libraries' own code and says so.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.testing import StringTransport

from tests import wsframes as ws
from tests.unit.test_protocol import Client, ProgrammableStrategy, echo, make_factory
from wsdaemon import internals
from wsdaemon.connections import directwrite, frames
from wsdaemon.internals import Reach


def test_every_path_finds_what_it_uses_on_the_installed_versions() -> None:
    """On the Twisted and Autobahn installed (newest, or the declared floors
    in CI's second run), every speed path may run."""
    from twisted.internet import epollreactor

    reactor = epollreactor.EPollReactor()
    try:
        reaches = internals.check(reactor)
    finally:
        reactor._poller.close()
    assert set(reaches) == {"accel", "frames", "directwrite", "poll", "upgrade", "loglines"}
    assert {path: reach.describe() for path, reach in reaches.items()} == dict.fromkeys(
        reaches, "")


def test_a_missing_protocol_attribute_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """If an open Autobahn connection lacks a name the fast path uses, the
    check says which (an Autobahn that renamed its parser state)."""
    from autobahn.websocket.protocol import WebSocketProtocol

    monkeypatch.delattr(WebSocketProtocol, "_invalid_payload")
    reach = internals.check_fast_frames()
    assert not reach.usable and reach.missing == ("WebSocketServerProtocol._invalid_payload",)


def test_a_missing_transport_attribute_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """Likewise for Twisted's TCP transport."""
    from twisted.internet import abstract

    monkeypatch.setattr(abstract.FileDescriptor, "_writeDisconnected", None, raising=True)
    monkeypatch.delattr(abstract.FileDescriptor, "_writeDisconnected")
    reach = internals.check_direct_write()
    assert reach.missing == ("twisted.internet.tcp.Server._writeDisconnected",)


@pytest.fixture
def fast_frames_off(monkeypatch: pytest.MonkeyPatch) -> Reach:
    off = Reach("frames", ("WebSocketServerProtocol.current_frame",))
    monkeypatch.setattr(frames, "_reach", [off])
    return off


def test_with_the_fast_path_off_every_frame_goes_to_autobahn(fast_frames_off: Reach) -> None:
    """With the check failed, whole frames go through Autobahn's parser and
    come back the same; the start-up line says why."""
    client = Client(make_factory(ProgrammableStrategy(echo)))
    calls: list[int] = []
    original = client.protocol.processData

    def counted() -> bool:
        calls.append(1)
        return bool(original())

    client.protocol.processData = counted  # type: ignore[method-assign]
    client.send(ws.BINARY, b"a" * 64)
    client.send(ws.TEXT, "é".encode() * 300)
    assert len(calls) >= 2
    assert [f.payload for f in client.frames()] == [b"a" * 64, "é".encode() * 300]
    assert frames.describe() == ("every frame through Autobahn's parser "
                                 "(missing WebSocketServerProtocol.current_frame)")


def test_with_direct_writes_off_everything_goes_through_transport_write(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With the check failed, a TCP transport is written through its own
    write(), never its socket."""
    import socket

    from twisted.internet import tcp
    from twisted.internet.protocol import Protocol
    from twisted.internet.testing import MemoryReactor

    monkeypatch.setattr(directwrite, "_reach", [])
    directwrite.enable(Reach("directwrite", ("twisted.internet.tcp.Server.dataBuffer",)))
    ours, theirs = socket.socketpair()
    try:
        transport: Any = tcp.Server(ours, Protocol(), ("127.0.0.1", 1), None,  # type: ignore[arg-type]
                                    0, MemoryReactor())
        written: list[bytes] = []
        transport.write = written.append
        directwrite.write_now(transport, b"hello")
        assert written == [b"hello"]
        theirs.setblocking(False)
        with pytest.raises(BlockingIOError):
            theirs.recv(10)
    finally:
        ours.close()
        theirs.close()
    assert directwrite.describe() == ("every write through transport.write "
                                      "(missing twisted.internet.tcp.Server.dataBuffer)")
    monkeypatch.setattr(directwrite, "_reach", [])
    directwrite.enable()
    assert directwrite.describe() is None
    other = StringTransport()
    directwrite.write_now(other, b"x")
    assert other.value() == b"x"
