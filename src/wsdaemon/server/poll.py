"""
The epoll reactor's poll loop, without a logging context per event.

For every ready socket Twisted's C{EPollReactor.doPoll} calls
C{log.callWithLogger(selectable, ...)}: it asks the connection for its log
prefix and pushes and pops a legacy C{twisted.python.log} context around the
read, so that old-style C{log.msg} calls made inside carry it as their
"system". py-spy had that at ~15% of the daemon's CPU on the 64-byte echo,
for a context that nothing of ours reads (wsdaemon logs through
C{twisted.logger}, which never looks at it).

L{install} replaces the running reactor's C{doPoll} with the same loop that
calls C{_doReadOrWrite} directly: the same reads, writes and disconnects in
the same order; an exception escaping one event is logged, as Twisted's
wrapper logs it, and the other events of the batch are still handled.
Legacy log lines from inside a read say C{-} for their system instead of
the connection's prefix. Any other reactor (or a Twisted whose reactor no
longer has the parts named in L{wsdaemon.internals}, C{POLL}) is left
alone, and the start-up log says why.
"""

from __future__ import annotations

import errno
from typing import Any

from twisted.logger import Logger

from wsdaemon.internals import Reach, check_poll

__all__ = ["describe", "install"]

_log = Logger(namespace="wsdaemon.poll")


def install(reactor: Any, reach: Reach | None = None) -> Reach:
    """
    Replace C{reactor}'s poll loop if it has what the loop uses
    (L{wsdaemon.internals.check_poll}).

    @return: the check's result (usable: the loop is ours).
    """
    if getattr(reactor, "_wsdaemon_poll", False):
        return Reach("poll")
    if reach is None:
        reach = check_poll(reactor)
    if not reach.usable:
        return reach
    selectables = reactor._selectables
    handle = reactor._doReadOrWrite

    def do_poll(timeout: float | None) -> None:
        try:
            events = reactor._poller.poll(-1 if timeout is None else timeout,
                                          len(selectables))
        except OSError as e:
            if e.errno == errno.EINTR:
                return
            raise
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is None:
                continue
            try:
                handle(selectable, fd, event)
            except BaseException:
                _log.failure("unhandled error on {selectable}", selectable=selectable)

    patched: Any = reactor
    patched.doPoll = patched.doIteration = do_poll
    patched._wsdaemon_poll = True
    return reach


def describe(reactor: Any) -> str | None:
    """
    @return: what the startup log says of C{reactor}'s poll loop, if ours.
    """
    if getattr(reactor, "_wsdaemon_poll", False):
        return "epoll loop without a log context per event"
    return None
