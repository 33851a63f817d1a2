"""
The reactor's poll loop without a logging context per event: the same
reads, in order; an exception in one handler is logged and the others in
the batch still run; other reactors are left alone.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.interfaces import IReadDescriptor
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogEvent, globalLogPublisher
from zope.interface import implementer

from wsdaemon.server.poll import install


@implementer(IReadDescriptor)
class Reader:
    def __init__(self, sock: socket.socket, seen: list[tuple[str, bytes]], name: str,
                 fail: bool = False) -> None:
        self.sock, self.seen, self.name, self.fail = sock, seen, name, fail

    def fileno(self) -> int:
        return self.sock.fileno()

    def doRead(self) -> None:
        data = self.sock.recv(100)
        self.seen.append((self.name, data))
        if self.fail:
            raise RuntimeError("handler failed")

    def connectionLost(self, reason: Any) -> None:
        self.seen.append((self.name, b"lost"))
        if self.fail:  # escapes Twisted's own handling: ours must catch it
            raise RuntimeError("connectionLost failed")

    def logPrefix(self) -> str:
        return self.name


@pytest.fixture
def reactor() -> Any:
    made = EPollReactor()
    yield made
    made.removeAll()
    made._poller.close()


def test_other_reactors_are_left_alone() -> None:
    """A memory reactor (tests) keeps its own loop."""
    memory = MemoryReactorClock()
    reach = install(memory)
    assert not reach.usable and "MemoryReactorClock" in reach.describe()
    assert "doIteration" not in vars(memory)


def test_an_epoll_reactor_missing_a_part_is_left_alone(
        reactor: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """An epoll reactor without one of the parts the loop uses (as a future
    Twisted might be) keeps its own loop, and the check names what is missing."""
    from twisted.internet.epollreactor import EPollReactor

    owner = next(c for c in EPollReactor.__mro__ if "_doReadOrWrite" in vars(c))
    monkeypatch.delattr(owner, "_doReadOrWrite")
    reach = install(reactor)
    assert reach.missing == ("EPollReactor._doReadOrWrite",)
    assert "doIteration" not in vars(reactor)


def test_reads_go_through_and_a_failing_handler_is_logged(reactor: Any) -> None:
    """Both ready sockets are read in one poll; the one whose handlers raise is
    disconnected as Twisted does and the error escaping that is logged by us;
    the other one is read all the same, in that batch and later."""
    assert install(reactor).usable
    assert install(reactor).usable  # once is enough; a second call changes nothing
    pairs = [socket.socketpair() for _ in range(2)]
    seen: list[tuple[str, bytes]] = []
    good = Reader(pairs[0][0], seen, "good")
    bad = Reader(pairs[1][0], seen, "bad", fail=True)
    reactor.addReader(good)
    reactor.addReader(bad)
    logged: list[LogEvent] = []
    globalLogPublisher.addObserver(logged.append)
    try:
        pairs[0][1].send(b"one")
        pairs[1][1].send(b"two")
        reactor.doIteration(0.5)
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert ("good", b"one") in seen and ("bad", b"two") in seen
    assert ("bad", b"lost") in seen and ("good", b"lost") not in seen
    ours = [e for e in logged if e.get("log_namespace") == "wsdaemon.poll"]
    assert len(ours) == 1 and ours[0]["log_failure"].check(RuntimeError)
    pairs[0][1].send(b"again")
    reactor.doIteration(0.5)
    assert seen[-1] == ("good", b"again")
    reactor.removeAll()
    for a, b in pairs:
        a.close()
        b.close()
