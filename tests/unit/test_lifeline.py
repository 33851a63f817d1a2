"""
A worker's lifeline to its supervisor (L{wsdaemon.server.lifeline}): the end
of the pipe stops the worker once, a stop with the parent gone says why, and
the parent death signal is asked for and checked against a supervisor that
ended first. (tests/integration/test_worker_lifeline.py: the real daemon.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IReadDescriptor
from twisted.internet.testing import MemoryReactor
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from wsdaemon.server.lifeline import SupervisorLifeline


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read, write = os.pipe()
    yield read, write
    for fd in (read, write):
        try:
            os.close(fd)
        except OSError:
            pass


def test_the_pipes_end_stops_the_worker_once(pipe: tuple[int, int]) -> None:
    """Watched in the reactor: data is ignored; the end of the pipe (the
    supervisor's end closed) calls on_gone, once, and the reader is gone."""
    read, write = pipe
    reactor = MemoryReactor()
    stops: list[bool] = []
    lifeline = SupervisorLifeline(reactor, lambda: stops.append(True), supervisor_pid=42,
                                  fd=read, getppid=lambda: 42)
    verifyObject(IReadDescriptor, lifeline)
    lifeline.startService()
    assert reactor.getReaders() == [lifeline]
    assert lifeline.doRead() is None  # nothing to read yet
    os.write(write, b"x")
    assert lifeline.doRead() is None and not stops
    os.close(write)
    why = lifeline.doRead()
    assert isinstance(why, ConnectionDone)
    reactor.removeReader(lifeline)  # as the reactor does before connectionLost
    lifeline.connectionLost(Failure(why))
    assert stops == [True] and lifeline.gone
    lifeline.stopService()
    assert stops == [True] and reactor.getReaders() == []


def test_a_stop_says_whether_the_supervisor_is_gone(pipe: tuple[int, int]) -> None:
    """The parent death signal arrives as a SIGTERM: the stop it causes is
    marked as the supervisor's end; an ordinary stop is not."""
    parent = [42]
    reactor = MemoryReactor()
    lifeline = SupervisorLifeline(reactor, lambda: None, supervisor_pid=42, fd=pipe[0],
                                  getppid=lambda: parent[0])
    lifeline.startService()
    lifeline.stopService()
    assert not lifeline.gone and reactor.getReaders() == []
    lifeline.startService()
    parent[0] = 1  # reparented
    lifeline.stopService()
    assert lifeline.gone


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_parent_death_signal_is_asked_for_and_the_parent_checked() -> None:
    """die_with_parent sets PR_SET_PDEATHSIG (read back with PR_GET_PDEATHSIG)
    and says whether the parent is the supervisor still (in a child process:
    the test runner must not die with its own parent)."""
    script = """if True:
        import ctypes, os, signal
        from wsdaemon.server.lifeline import die_with_parent
        libc = ctypes.CDLL(None)
        found = ctypes.c_int(0)
        libc.prctl(2, ctypes.byref(found), 0, 0, 0)
        before = found.value
        mine = die_with_parent(os.getppid())
        libc.prctl(2, ctypes.byref(found), 0, 0, 0)
        other = die_with_parent(os.getppid() + 1)
        print(before, found.value == signal.SIGTERM, mine, other)
    """
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    assert out.split() == ["0", "True", "True", "False"]
