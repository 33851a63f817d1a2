"""
The text log line of every connection, made cheap without changing a byte
of it (issue #26).

Each connection writes two log lines, who connected and who left, and in a
reconnect storm they were the largest single cost of a handshake: in a
10,000-client storm, turning them off took the daemon's CPU per handshake
from 358 to 284 µs and per close from 74 to 36 µs. Almost all of it is
Twisted's text observer (C{textFileLogObserver}, what C{twistd} and
C{twist} write with), not the write itself:

  - every event is formatted with C{string.Formatter} over a C{CallMapping}
    (Python-level parsing, a wrapper object and a few calls per field);
  - every timestamp is formatted from scratch (time zone, C{datetime},
    C{strftime}), for a text that changes once a second.

L{install} replaces the two names that observer's formatting looks up in
C{twisted.logger._file} (named in L{wsdaemon.internals}, C{LOGLINES}) with
L{classic_text}, which renders an event whose format has only plain fields
(C{{peer}}, C{{origin!r}}, C{{count:5d}}) with C{str.format_map}, in C, and
L{cached_time}, which keeps the last second's timestamp text. Anything
else (a field with a call, attribute or index, a traceback, a flattened
event, anything that fails) goes to Twisted's own functions: the text is
the same either way, which the tests check event by event. Structured
fields, JSON logs and every other observer are untouched.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from string import Formatter
from typing import Any

from wsdaemon.internals import Reach, check_loglines

__all__ = ["cached_time", "classic_text", "describe", "install"]

#: Formats seen, and whether C{str.format_map} renders them as Twisted
#: would (bounded: a program logs a fixed set of formats; past the bound,
#: new ones are checked each time instead of remembered).
_simple: dict[str, bool] = {}
MAX_FORMATS = 1000

_twisted_classic: Callable[..., str | None] | None = None
_twisted_time: Callable[..., str] | None = None
_installed: list[str] = []


def _is_simple(format_: str) -> bool:
    """
    Whether every field of C{format_} is a plain name (no call, attribute,
    index or position) with no nested field in its spec.
    """
    known = _simple.get(format_)
    if known is not None:
        return known
    try:
        simple = all(
            name is None or (name.isidentifier() and "{" not in (spec or "")
                             and conversion in (None, "r", "s", "a"))
            for _, name, spec, conversion in Formatter().parse(format_))
    except ValueError:
        simple = False
    if len(_simple) < MAX_FORMATS:
        _simple[format_] = simple
    return simple


def classic_text(event: dict[str, Any],
                 formatTime: Callable[[Any], str] | None = None) -> str | None:
    """
    C{twisted.logger.formatEventAsClassicLogText}, the same text, rendered
    in C for events with plain fields; any other event goes to Twisted's.
    """
    twisted = _twisted_classic
    assert twisted is not None
    format_ = event.get("log_format")
    if (formatTime is None or type(format_) is not str or "log_failure" in event
            or "log_flattened" in event or not _is_simple(format_)):
        return twisted(event) if formatTime is None else twisted(event, formatTime=formatTime)
    try:
        text = format_.format_map(event)
        system = event.get("log_system")
        if system is None:
            level = event.get("log_level")
            system = f"{event.get('log_namespace', '-')}#{'-' if level is None else level.name}"
        elif type(system) is not str:
            raise TypeError(system)
    except Exception:  # noqa: BLE001 - Twisted's own says what went wrong
        return twisted(event, formatTime=formatTime)
    if not text:
        return twisted(event, formatTime=formatTime)
    line = f"{formatTime(event.get('log_time'))} [{system}] {text}"
    return line.replace("\n", "\n\t") + "\n"


_last_time: list[Any] = [None, None, ""]


def cached_time(when: float | None, timeFormat: str | None = "%Y-%m-%dT%H:%M:%S%z",
                default: str = "-") -> str:
    """
    C{twisted.logger.formatTime}, the same text, computed once per second
    (for formats without sub-second fields).
    """
    twisted = _twisted_time
    assert twisted is not None
    if when is None or timeFormat is None or "%f" in timeFormat:
        return twisted(when, timeFormat, default)
    second = math.floor(when)
    last = _last_time
    if last[0] == second and last[1] == timeFormat:
        return str(last[2])
    text = twisted(when, timeFormat, default)
    last[0], last[1], last[2] = second, timeFormat, text
    return text


def install(reach: Reach | None = None) -> Reach:
    """
    Replace Twisted's text formatting of log events with L{classic_text}
    and L{cached_time}, once, if the names are there
    (L{wsdaemon.internals.check_loglines}).

    @return: the check's result.
    """
    global _twisted_classic, _twisted_time
    if _installed:
        return reach if reach is not None else Reach("loglines")
    if reach is None:
        reach = check_loglines()
    if not reach.usable:
        _installed.append(f"Twisted's own log text ({reach.describe()})")
        return reach
    from twisted.logger import _file

    if _file.formatTime is cached_time:  # already ours
        return reach
    _twisted_classic = _file.formatEventAsClassicLogText
    _twisted_time = _file.formatTime
    _file.formatEventAsClassicLogText = classic_text
    _file.formatTime = cached_time
    _installed.append("log lines formatted in C")
    return reach


def describe() -> str:
    return ", ".join(_installed)
