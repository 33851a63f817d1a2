"""
A worker's lifeline to its supervisor: workers die with it.

A supervisor killed outright (C{kill -9}, the OOM killer) runs no stop code.
Its workers used to keep serving the port on the old config, unseen by push,
reload, journal and metrics, and took half the connections of the daemon
started next. Two signs now tell a worker its supervisor is gone:

  - on Linux, the parent death signal (C{PR_SET_PDEATHSIG}): the kernel
    sends the worker SIGTERM when the supervisor's thread that started it
    (its reactor's, the main thread) ends. A supervisor that ended before
    the worker could ask is caught by comparing C{getppid()} just after;
  - everywhere, a pipe: the worker's stdin, whose other end only the
    supervisor holds. End of file there means it is gone.

Either way the worker stops as on SIGTERM: it stops accepting at once, closes
its clients with 1001 (waiting at most a few seconds) and exits.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet import main
from twisted.internet.interfaces import IReactorFDSet, IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = ["PARENT_FD", "SUPERVISOR_PID_ENV", "SupervisorLifeline", "die_with_parent"]

_log = Logger(namespace="wsdaemon.lifeline")

#: The worker's end of the supervisor's pipe: its stdin.
PARENT_FD = 0
#: The supervisor's pid, as its workers are told it.
SUPERVISOR_PID_ENV = "WSDAEMON_SUPERVISOR_PID"
#: prctl(2): the signal this process gets when its parent ends.
_PR_SET_PDEATHSIG = 1


def die_with_parent(supervisor_pid: int, number: int = signal.SIGTERM) -> bool:
    """
    Ask the kernel for signal C{number} when the parent ends (Linux; a no-op
    elsewhere, where the pipe alone tells), then check the parent is still
    C{supervisor_pid}.

    @return: whether the supervisor is still this process's parent (False:
        it ended first, and no signal will come).
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(number), 0, 0, 0)
        except (OSError, AttributeError):  # no libc to load: the pipe still tells
            pass
    return os.getppid() == supervisor_pid


@implementer(IReadDescriptor)
class SupervisorLifeline(Service):
    """
    Watches the pipe from the supervisor, in the reactor: at its end, calls
    C{on_gone} (once). Whatever stops the worker, says so if it is because
    the supervisor is gone (the parent death signal arrives as a SIGTERM).

    @param on_gone: stops the worker.
    @param getppid: the parent's pid (tests replace it).
    """

    def __init__(self, reactor: IReactorFDSet, on_gone: Callable[[], Any],
                 supervisor_pid: int, fd: int = PARENT_FD,
                 getppid: Callable[[], int] = os.getppid) -> None:
        self.reactor = reactor
        self.on_gone = on_gone
        self.supervisor_pid = supervisor_pid
        self.fd = fd
        self.getppid = getppid
        self.gone = False
        self._watching = False

    def startService(self) -> None:
        super().startService()
        os.set_blocking(self.fd, False)
        self.reactor.addReader(self)
        self._watching = True

    def stopService(self) -> None:
        super().stopService()
        if self._watching:
            self._watching = False
            self.reactor.removeReader(self)
        if self.getppid() != self.supervisor_pid:
            self._say_gone()

    def _say_gone(self) -> None:
        if not self.gone:
            self.gone = True
            _log.warn("the supervisor (pid {pid}) is gone: stopping", pid=self.supervisor_pid)

    # -- IReadDescriptor -------------------------------------------------------------

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:
        return "SupervisorLifeline"

    def doRead(self) -> Any:
        try:
            data = os.read(self.fd, 4096)
        except BlockingIOError:
            return None
        except OSError:
            return main.CONNECTION_LOST
        # The supervisor writes nothing: anything read is ignored.
        return None if data else main.CONNECTION_DONE

    def connectionLost(self, reason: Failure) -> None:
        self._watching = False
        self._say_gone()
        self.on_gone()
