"""
C{[wsdaemon] log_level}: which events reach the daemon's own output.

C{twistd} writes every event it is given (debug ones too) and C{twist}
filters at its C{--log-level} (info by default). The daemon's output (stdout
under C{twistd -n} or C{twist}, i.e. journald; each worker's too) should show
what the config asks for, and a SIGHUP reload should change it.

Twisted's supported way is a C{FilteringLogObserver} around the observer
that writes: L{install}, once logging has begun, wraps each observer of the
global log publisher in one, whose predicate (L{LevelPredicate}) is shared
and changed in place by L{set_level}. The publisher has no public list of
its observers: the one private name read (C{LogPublisher._observers}) is in
L{wsdaemon.internals} (C{LOGLEVEL}), checked before use; without it the
level stays Twisted's and the log says so. Under C{twist}, L{tap} lowers
twist's own filter to debug so that C{log_level} alone decides.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import (
    FilteringLogObserver,
    ILogFilterPredicate,
    Logger,
    LogLevel,
    LogPublisher,
    PredicateResult,
    globalLogPublisher,
)
from zope.interface import implementer

from wsdaemon.internals import Reach, check_loglevel

__all__ = ["DEFAULT", "LEVELS", "LevelPredicate", "install", "set_level"]

#: The values of C{log_level}, lowest first, and their Twisted levels.
LEVELS = {"debug": LogLevel.debug, "info": LogLevel.info, "warn": LogLevel.warn,
          "error": LogLevel.error, "critical": LogLevel.critical}
DEFAULT = "info"

@implementer(ILogFilterPredicate)
class LevelPredicate:
    """
    Drops events below a level; an event without a level (a legacy
    C{twisted.python.log} one, say) passes, unlike Twisted's
    C{LogLevelFilterPredicate}, which drops it.

    @ivar level: the lowest level shown (a C{LogLevel}); change it in place.
    """

    def __init__(self, level: Any = LogLevel.info) -> None:
        self.level = level

    def __call__(self, event: dict[str, Any]) -> Any:
        level = event.get("log_level")
        if level is not None and level < self.level:
            return PredicateResult.no
        return PredicateResult.maybe


#: The one predicate of this process (every wrapped observer shares it).
_predicate = LevelPredicate()
_wrapped: list[Any] = []


def set_level(name: str) -> None:
    """
    Show events at C{name} (a key of L{LEVELS}) and above from now on.
    """
    _predicate.level = LEVELS[name]


def install(name: str, publisher: LogPublisher | None = None,
            reach: Reach | None = None) -> Reach:
    """
    Wrap every observer of C{publisher} (the global one) in a filter at
    C{name}; call once logging has begun. Observers wrapped before are left
    as they are (a second call only sets the level).

    @return: the check of the private name it reads (off: nothing wrapped,
        a warning logged).
    """
    set_level(name)
    if publisher is None:
        publisher = globalLogPublisher
    if reach is None:
        reach = check_loglevel(publisher)
    if not reach.usable:
        Logger(namespace="wsdaemon.service", observer=publisher).warn(
            "log_level {value} not applied, Twisted's filtering stays: {why}",
            value=name, why=reach.describe())
        return reach
    for observer in list(publisher._observers):
        if any(observer is done for done in _wrapped):
            continue
        filtering = FilteringLogObserver(observer, [_predicate])
        publisher.removeObserver(observer)
        publisher.addObserver(filtering)
        _wrapped.append(filtering)
    return reach
