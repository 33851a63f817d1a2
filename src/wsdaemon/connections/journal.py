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
import bisect
import heapq
import itertools
import json
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Final

from wsdaemon.interfaces import ISession

__all__ = ["DIRECTIONS", "Journal", "JournalFilter", "Scan", "Sequence"]

#: What an entry records: a message in or out, a connection opened or closed,
#: a ping sent (a fault on purpose), a pong received, a strategy's note
#: (a scripted rule's step: what it expected, met or missed), or an opening
#: handshake (on scripted routes: method, path, query, headers, credentials
#: masked).
DIRECTIONS = ("in", "out", "open", "close", "ping", "pong", "step", "handshake")

# An entry: (seq, time, session id, client id, direction, binary, data, code,
# reason). data is str (text received), bytes (binary, or text as sent:
# decoded when listed) or None (open, close). Only atomic values: CPython's
# garbage collector stops tracking such tuples, so a full journal adds
# nothing to its collections.
_Entry = tuple[int, float, str, str, str, bool, "str | bytes | None", "int | None", str]
_SEQ: Final = 0
_TIME: Final = 1
_SESSION: Final = 2
_CLIENT: Final = 3
_DIRECTION: Final = 4
_BINARY: Final = 5
_DATA: Final = 6
_CODE: Final = 7
_REASON: Final = 8


class Sequence:
    """
    Numbers entries across every route's journal, so that a listing of
    several routes is in the order things happened and C{since} means the
    same everywhere. Numbers only increase; there may be gaps.

    @param clock: number entries by the time instead of counting (the
        workers of one daemon).
    @param worker: this worker's number, from 0 (with C{clock}).
    @param workers: how many workers number entries (with C{clock}).
    """

    def __init__(self, clock: Callable[[], float] | None = None, worker: int = 0,
                 workers: int = 1) -> None:
        if not 0 <= worker < workers:
            raise ValueError(f"worker {worker} of {workers}")
        #: The next number (a C function: no Python frame per message).
        self.next: Callable[[], int] = itertools.count(1).__next__
        if clock is not None:
            self.next = self._timed(clock, worker, workers)

    @staticmethod
    def _timed(clock: Callable[[], float], worker: int, workers: int) -> Callable[[], int]:
        """
        Numbers that are microseconds of the clock (strictly increasing):
        the workers of one daemon then number entries on one time line, so
        their journals merge in order and a C{since} means the same in each.
        Each worker's numbers leave C{worker} divided by C{workers}, so no
        two workers ever give the same number (a page cut between two
        entries with one number could not be resumed by C{since}).
        """
        last = 0

        def next_number() -> int:
            nonlocal last
            number = max(last + 1, int(clock() * 1_000_000))
            last = number + (worker - number) % workers
            return last

        return next_number

    def mark(self) -> int:
        """
        @return: a number above every entry made so far and below every
            entry made later.
        """
        return self.next()


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
        if self.session is not None and entry[_SESSION] != self.session:
            return False
        return self.client is None or entry[_CLIENT] == self.client


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
        self._next = sequence.next
        self._clock = clock
        self._kept: deque[_Entry] = deque(maxlen=max(entries, 1))
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
        if len(kept) == self.entries:  # full: the oldest goes (inlined: every message)
            old = kept.popleft()[_DATA]
            if old is not None:
                self._bytes -= len(old)
            self.dropped += 1
        kept.append((self._next(), self._clock(), session.session_id, session.client_id,
                     direction, binary, data, None, ""))
        self._bytes += len(data)
        if self._bytes > self.max_bytes:
            self._shrink()

    def opened(self, session: ISession) -> None:
        self._event(session, "open", None, "")

    def closed(self, session: ISession, code: int | None, reason: str) -> None:
        self._event(session, "close", code, reason)

    def handshake(self, session_id: str, request: Mapping[str, Any]) -> None:
        """
        Record an opening handshake (as L{wsdaemon.connections.handshake.
        masked_handshake} makes it), under the session id its connection
        gets if accepted; kept as JSON text, so that matchers search it
        and it counts against C{max_bytes} as a message does.
        """
        data = json.dumps(request, ensure_ascii=False, separators=(",", ":"))
        if len(self._kept) == self.entries:
            self._forget_oldest()
        self._kept.append((self._next(), self._clock(), session_id, session_id, "handshake",
                           False, data, None, ""))
        self._bytes += len(data)
        if self._bytes > self.max_bytes:
            self._shrink()

    def _event(self, session: ISession, direction: str, code: int | None, reason: str) -> None:
        if len(self._kept) == self.entries:
            self._forget_oldest()
        self._kept.append((self._next(), self._clock(), session.session_id, session.client_id,
                           direction, False, None, code, reason))

    def _forget_oldest(self) -> None:
        data = self._kept.popleft()[_DATA]
        if data is not None:
            self._bytes -= len(data)
        self.dropped += 1

    def _shrink(self) -> None:
        # Inlined (a full byte budget calls this on every large message).
        kept, entries, limit = self._kept, self.entries, self.max_bytes
        while kept and (len(kept) > entries or self._bytes > limit):
            old = kept.popleft()[_DATA]
            if old is not None:
                self._bytes -= len(old)
            self.dropped += 1

    # -- managing ----------------------------------------------------------------

    def resize(self, entries: int, max_bytes: int) -> None:
        """
        New bounds (a reload); the newest entries that fit are kept.
        """
        self.entries, self.max_bytes = entries, max_bytes
        self._shrink()
        self._kept = deque(self._kept, maxlen=max(entries, 1))

    def clear(self) -> None:
        self._kept.clear()
        self._bytes = 0
        self.dropped = 0

    # -- reading -------------------------------------------------------------------

    def snapshot(self) -> tuple[_Entry, ...]:
        """
        @return: the entries now, oldest first (their references: entries
            are immutable, so later recording does not change it).
        """
        return tuple(self._kept)

    def select(self, wanted: JournalFilter) -> Iterator[_Entry]:
        """
        @return: the entries C{wanted} accepts, oldest first.
        """
        return (entry for entry in self.snapshot() if wanted.accepts(entry))

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
    found: dict[str, Any] = {
        "seq": entry[_SEQ], "time": entry[_TIME], "route": route,
        "session": entry[_SESSION], "client": entry[_CLIENT],
        "direction": entry[_DIRECTION],
    }
    data = text_of(entry)
    if entry[_DIRECTION] == "handshake" and isinstance(data, str):
        found.update(json.loads(data))
    elif isinstance(data, str):
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


#: Entries a step of L{Scan} looks at, at most.
SCAN_CHUNK = 256
#: Bytes of messages a step of L{Scan} gives to the matcher, at most (a
#: step ends after the message that passes it).
SCAN_CHUNK_BYTES = 64 * 1024

_seq = itemgetter(_SEQ)


class Scan:
    """
    One query over several journals as they were when it was made: counts
    the entries that C{wanted} and C{matches} accept, and keeps the first
    C{keep} of them. L{steps} does the work a chunk at a time, so that the
    admin API can spread a long query over many reactor turns.

    @param matches: accepts an entry the filter accepted (None: every one).
    @param keep: how many accepted entries to keep, the oldest.
    @param chunk: entries per step at most.
    @param chunk_bytes: bytes of messages given to C{matches} per step.
    """

    def __init__(self, journals: Iterable[Journal], wanted: JournalFilter,
                 matches: Callable[[_Entry], bool] | None = None, keep: int = 0,
                 chunk: int = SCAN_CHUNK, chunk_bytes: int = SCAN_CHUNK_BYTES) -> None:
        self.wanted = wanted
        self._journals = list(journals)
        self._snapshots = [journal.snapshot() for journal in self._journals]
        self._matches = matches
        self._keep = keep
        self._chunk = max(chunk, 1)
        self._chunk_bytes = max(chunk_bytes, 1)
        self._kept: list[list[_Entry]] = [[] for _ in self._journals]
        #: Entries accepted so far.
        self.count = 0

    def steps(self) -> Iterator[None]:
        """
        @return: the scan, which yields after each chunk (a snapshot of
            each journal sorted by number: what C{since} excludes is skipped
            by a binary search).
        """
        accepts, matches, keep = self.wanted.accepts, self._matches, self._keep
        chunk, chunk_bytes = self._chunk, self._chunk_bytes
        looked = examined = 0
        for kept, snapshot in zip(self._kept, self._snapshots, strict=True):
            start = bisect.bisect_right(snapshot, self.wanted.since, key=_seq)
            for entry in itertools.islice(snapshot, start, None):
                looked += 1
                if accepts(entry):
                    if matches is not None:
                        data = entry[_DATA]
                        if data is not None:
                            examined += len(data)
                    if matches is None or matches(entry):
                        self.count += 1
                        if len(kept) < keep:
                            kept.append(entry)
                if looked >= chunk or examined >= chunk_bytes:
                    looked = examined = 0
                    yield None

    def listed(self) -> Iterator[tuple[str, _Entry]]:
        """
        @return: the entries kept (once L{steps} is done), with their
            route, in the order things happened: the first C{keep}.
        """
        if len(self._journals) == 1:
            route = self._journals[0].route
            return ((route, entry) for entry in self._kept[0])
        streams = [[(entry[_SEQ], journal.route, entry) for entry in kept]
                   for journal, kept in zip(self._journals, self._kept, strict=True)]
        return ((route, entry) for _, route, entry
                in itertools.islice(heapq.merge(*streams), self._keep))
