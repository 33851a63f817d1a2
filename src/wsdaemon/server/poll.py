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
the connection's prefix. Any other reactor (or a future Twisted whose
reactor no longer has these parts) is left alone.
"""

from __future__ import annotations

import errno
from typing import Any

from twisted.logger import Logger

__all__ = ["describe", "install"]

_log = Logger(namespace="wsdaemon.poll")


def install(reactor: Any) -> bool:
    """
    @return: whether C{reactor}'s poll loop was replaced.
    """
    try:
        from twisted.internet.epollreactor import EPollReactor
    except ImportError:  # pragma: no cover - not Linux
        return False
    if type(reactor) is not EPollReactor or getattr(reactor, "_wsdaemon_poll", False):
        return getattr(reactor, "_wsdaemon_poll", False)
    selectables = getattr(reactor, "_selectables", None)
    handle = getattr(reactor, "_doReadOrWrite", None)
    if getattr(reactor, "_poller", None) is None or not isinstance(selectables, dict) \
            or handle is None:
        return False

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
    return True


def describe(reactor: Any) -> str | None:
    """
    @return: what the startup log says of C{reactor}'s poll loop, if ours.
    """
    if getattr(reactor, "_wsdaemon_poll", False):
        return "epoll loop without a log context per event"
    return None
