"""
What every connection of a route sent and received, kept for a while: the
journal a test suite asks "what did my client send?" (through the admin
API's C{/journal}).

One L{Journal} per route, bounded twice: at most C{entries} events and at
most C{max_bytes} bytes of message data (the oldest go first). Recording is
a tuple appended to a deque: the cost on the echo path is measured in
C{bench/RESULTS.md}. Entries keep the message objects the daemon already
has (no copy, no decoding); they are decoded only when listed.
"""

from __future__ import annotations

import base64
import heapq
import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from wsdaemon.interfaces import ISession

__all__ = ["DIRECTIONS", "Journal", "JournalFilter", "Sequence"]

#: What an entry records: a message in or out, a connection opened or closed.
DIRECTIONS = ("in", "out", "open", "close")

# An entry: (seq, time, session, direction, binary, data, code, reason).
# data is str (text received), bytes (binary, or text as sent: decoded when
# listed) or None (open, close).
_Entry = tuple[int, float, ISession, str, bool, "str | bytes | None", "int | None", str]
_SEQ: Final = 0
_TIME: Final = 1
_SESSION: Final = 2
_DIRECTION: Final = 3
_BINARY: Final = 4
_DATA: Final = 5
_CODE: Final = 6
_REASON: Final = 7


class Sequence:
    """
    Numbers entries across every route's journal, so that a listing of
    several routes is in the order things happened and C{since} means the
    same everywhere.
    """

    def __init__(self) -> None:
        self._next = itertools.count(1).__next__
        self.last = 0

    def __call__(self) -> int:
        self.last = self._next()
        return self.last


@dataclass(frozen=True)
class JournalFilter:
    """
    Which entries a listing wants; None: any.

    @ivar since: only entries numbered above this.
    """

    client: str | None = None
    session: str | None = None
    direction: str | None = None
    since: int = 0

    def accepts(self, entry: _Entry) -> bool:
        if entry[_SEQ] <= self.since:
            return False
        if self.direction is not None and entry[_DIRECTION] != self.direction:
            return False
        session = entry[_SESSION]
        if self.session is not None and session.session_id != self.session:
            return False
        return self.client is None or session.client_id == self.client


class Journal:
    """
    One route's journal.

    @param route: the route's path, named in every listed entry.
    @param entries: events kept at most (0: the journal is off).
    @param max_bytes: bytes of message data kept at most.
    @param sequence: numbers entries (shared by the daemon's journals).
    @param clock: the time of each entry.
    """

    def __init__(self, route: str, entries: int, max_bytes: int, sequence: Sequence,
                 clock: Callable[[], float]) -> None:
        self.route = route
        self.entries = entries
        self.max_bytes = max_bytes
        self._sequence = sequence
        self._clock = clock
        self._kept: deque[_Entry] = deque()
        self._bytes = 0
        #: Entries dropped to stay within the bounds, since the last reset.
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._kept)

    @property
    def enabled(self) -> bool:
        return self.entries > 0

    # -- recording (on every message: keep it short) -------------------------------

    def message(self, session: ISession, direction: str, data: str | bytes,
                binary: bool) -> None:
        """
        Record a message C{direction} (C{in} or C{out}); text as C{str}, or
        as the UTF-8 bytes that were sent.
        """
        kept = self._kept
        kept.append((self._sequence(), self._clock(), session, direction, binary, data,
                     None, ""))
        self._bytes += len(data)
        if len(kept) > self.entries or self._bytes > self.max_bytes:
            self._shrink()

    def opened(self, session: ISession) -> None:
        self._kept.append((self._sequence(), self._clock(), session, "open", False, None,
                           None, ""))
        if len(self._kept) > self.entries:
            self._shrink()

    def closed(self, session: ISession, code: int | None, reason: str) -> None:
        self._kept.append((self._sequence(), self._clock(), session, "close", False, None,
                           code, reason))
        if len(self._kept) > self.entries:
            self._shrink()

    def _shrink(self) -> None:
        kept = self._kept
        while kept and (len(kept) > self.entries or self._bytes > self.max_bytes):
            data = kept.popleft()[_DATA]
            if data is not None:
                self._bytes -= len(data)
            self.dropped += 1

    # -- managing ----------------------------------------------------------------

    def resize(self, entries: int, max_bytes: int) -> None:
        """
        New bounds (a reload); the newest entries that fit are kept.
        """
        self.entries, self.max_bytes = entries, max_bytes
        self._shrink()

    def clear(self) -> None:
        self._kept.clear()
        self._bytes = 0
        self.dropped = 0

    # -- reading -------------------------------------------------------------------

    def select(self, wanted: JournalFilter) -> Iterator[_Entry]:
        """
        @return: the entries C{wanted} accepts, oldest first.
        """
        return (entry for entry in tuple(self._kept) if wanted.accepts(entry))

    def describe(self) -> dict[str, Any]:
        return {"route": self.route, "entries": len(self._kept), "bytes": self._bytes,
                "max_entries": self.entries, "max_bytes": self.max_bytes,
                "dropped": self.dropped}


def text_of(entry: _Entry) -> str | bytes | None:
    """
    @return: the message as a strategy saw it: C{str} for text, C{bytes}
        for binary, None for open and close.
    """
    data = entry[_DATA]
    if isinstance(data, bytes) and not entry[_BINARY]:
        return data.decode("utf-8", "replace")
    return data


def to_json(entry: _Entry, route: str) -> dict[str, Any]:
    """
    @return: the entry as the admin API lists it.
    """
    session = entry[_SESSION]
    found: dict[str, Any] = {
        "seq": entry[_SEQ], "time": entry[_TIME], "route": route,
        "session": session.session_id, "client": session.client_id,
        "direction": entry[_DIRECTION],
    }
    data = text_of(entry)
    if isinstance(data, str):
        found.update(type="text", text=data, length=len(data.encode("utf-8")))
    elif isinstance(data, bytes):
        found.update(type="binary", base64=base64.b64encode(data).decode("ascii"),
                     length=len(data))
    elif entry[_DIRECTION] == "close":
        found.update(code=entry[_CODE], reason=entry[_REASON])
    return found


def merged(journals: Iterable[Journal], wanted: JournalFilter
           ) -> Iterator[tuple[Journal, _Entry]]:
    """
    @return: the entries of several journals, in the order they happened.
    """
    streams = [_numbered(index, journal, wanted) for index, journal in enumerate(journals)]
    for _, _, journal, entry in heapq.merge(*streams):
        yield journal, entry


def _numbered(index: int, journal: Journal, wanted: JournalFilter
              ) -> Iterator[tuple[int, int, Journal, _Entry]]:
    for entry in journal.select(wanted):
        yield entry[_SEQ], index, journal, entry
