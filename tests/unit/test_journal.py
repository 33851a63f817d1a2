"""
One route's journal: bounded by entries and by bytes, filtered, merged
across routes in the order things happened.
"""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from wsdaemon.connections.journal import (
    Journal,
    JournalFilter,
    Scan,
    Sequence,
    merged,
    to_json,
)
from wsdaemon.testing import RecordingSession


def journal(entries: int = 100, max_bytes: int = 1000, sequence: Sequence | None = None,
            clock: Clock | None = None, route: str = "/r") -> Journal:
    return Journal(route, entries, max_bytes, sequence or Sequence(), (clock or Clock()).seconds)


def test_entries_bound_drops_the_oldest() -> None:
    """At most `entries` events; the oldest go first and are counted."""
    kept = journal(entries=3)
    session = RecordingSession()
    for number in range(5):
        kept.message(session, "in", f"m{number}", False)
    assert [to_json(e, "/r")["text"] for e in kept.select(JournalFilter())] == ["m2", "m3", "m4"]
    assert kept.dropped == 2 and kept.describe()["entries"] == 3


def test_bytes_bound_drops_the_oldest() -> None:
    """At most max_bytes of message data: one big message pushes out older ones."""
    kept = journal(max_bytes=100)
    session = RecordingSession()
    kept.message(session, "in", "a" * 40, False)
    kept.message(session, "in", "b" * 40, False)
    kept.message(session, "out", b"c" * 50, False)
    texts = [to_json(e, "/r")["text"] for e in kept.select(JournalFilter())]
    assert texts == ["b" * 40, "c" * 50] and kept.describe()["bytes"] == 90


def test_text_sent_as_bytes_is_listed_as_text_and_binary_as_base64() -> None:
    """Out text is kept as the UTF-8 bytes sent and decoded when listed."""
    kept = journal()
    session = RecordingSession(session_id="s1", client_id="c1")
    kept.message(session, "out", "héllo".encode(), False)
    kept.message(session, "out", b"\xff\x00", True)
    kept.closed(session, 1000, "bye")
    first, second, third = (to_json(e, "/r") for e in kept.select(JournalFilter()))
    assert (first["type"], first["text"], first["length"]) == ("text", "héllo", 6)
    assert (second["type"], second["base64"]) == ("binary", "/wA=")
    assert (third["direction"], third["code"], third["reason"]) == ("close", 1000, "bye")
    assert first["session"] == "s1" and first["client"] == "c1"


def test_filters() -> None:
    """Client, session, direction and since each narrow the listing."""
    kept = journal()
    alice, bob = RecordingSession("s-a", client_id="alice"), RecordingSession("s-b",
                                                                               client_id="bob")
    kept.opened(alice)
    kept.message(alice, "in", "1", False)
    kept.message(bob, "in", "2", False)
    kept.message(bob, "out", b"2", False)
    def texts(wanted: JournalFilter) -> list[str | None]:
        return [to_json(e, "/r").get("text") for e in kept.select(wanted)]
    assert texts(JournalFilter(client="bob")) == ["2", "2"]
    assert texts(JournalFilter(session="s-a")) == [None, "1"]
    assert texts(JournalFilter(direction="in")) == ["1", "2"]
    assert texts(JournalFilter(since=3)) == ["2"]


def test_resize_and_clear() -> None:
    """A reload's smaller bounds keep the newest entries; clear empties."""
    kept = journal(entries=10)
    session = RecordingSession()
    for number in range(6):
        kept.message(session, "in", str(number), False)
    kept.resize(2, 1000)
    assert [to_json(e, "/r")["text"] for e in kept.select(JournalFilter())] == ["4", "5"]
    kept.clear()
    assert len(kept) == 0 and kept.describe()["bytes"] == 0


def test_routes_merge_in_the_order_things_happened() -> None:
    """Two routes' journals, numbered by one sequence, list interleaved."""
    sequence = Sequence()
    a, b = journal(sequence=sequence, route="/a"), journal(sequence=sequence, route="/b")
    session = RecordingSession()
    a.message(session, "in", "1", False)
    b.message(session, "in", "2", False)
    a.message(session, "in", "3", False)
    listed = [(j.route, to_json(e, j.route)["text"]) for j, e in merged([a, b], JournalFilter())]
    assert listed == [("/a", "1"), ("/b", "2"), ("/a", "3")]
    assert sequence.mark() == 4


def test_a_journal_with_no_entries_is_off() -> None:
    """journal_entries = 0 turns a route's journal off."""
    assert not journal(entries=0).enabled and journal(entries=1).enabled


# -- scans: a snapshot read a chunk at a time -----------------------------------------


def filled(count: int, sequence: Sequence | None = None, route: str = "/r",
           text: str = "m{}") -> Journal:
    kept = journal(entries=10_000, max_bytes=10_000_000, sequence=sequence, route=route)
    session = RecordingSession()
    for number in range(count):
        kept.message(session, "in", text.format(number), False)
    return kept


def test_a_scan_reads_a_snapshot_a_chunk_at_a_time() -> None:
    """Each step looks at `chunk` entries at most; what is recorded or
    cleared after the scan began does not change its answer."""
    kept = filled(10)
    scan = Scan([kept], JournalFilter(), keep=4, chunk=3)
    steps = scan.steps()
    next(steps)
    assert scan.count == 3
    kept.message(RecordingSession(), "in", "later", False)
    kept.clear()
    assert sum(1 for _ in steps) == 2  # 6 and 9 entries; the 10th ends it
    assert scan.count == 10
    assert [to_json(e, r)["text"] for r, e in scan.listed()] == ["m0", "m1", "m2", "m3"]


def test_a_scan_step_ends_after_chunk_bytes_of_matched_messages() -> None:
    """Big messages given to the matcher end a step early: a step's work is
    bounded in bytes as well as entries."""
    kept = filled(10, text="{}" + "x" * 999)
    scan = Scan([kept], JournalFilter(), lambda entry: True, chunk=100, chunk_bytes=2500)
    assert sum(1 for _ in scan.steps()) == 3  # after 3, 6 and 9 messages (3,000 bytes)
    assert scan.count == 10
    unmatched = Scan([kept], JournalFilter(), None, chunk=100, chunk_bytes=2500)
    assert sum(1 for _ in unmatched.steps()) == 0


def test_a_scan_skips_what_since_excludes_without_looking() -> None:
    """Entries numbered up to `since` are not stepped through: a page deep in
    a full journal costs what is after it."""
    kept = filled(100)
    since = list(kept.select(JournalFilter()))[89][0]
    scan = Scan([kept], JournalFilter(since=since), keep=100, chunk=1)
    assert sum(1 for _ in scan.steps()) == 10
    assert [to_json(e, r)["text"] for r, e in scan.listed()][:2] == ["m90", "m91"]


def test_a_scan_of_several_routes_lists_the_oldest_first() -> None:
    """Routes are scanned one after the other, and their kept entries merged
    in the order things happened; count covers all of them."""
    sequence = Sequence()
    a = journal(sequence=sequence, route="/a")
    b = journal(sequence=sequence, route="/b")
    session = RecordingSession()
    for number in range(6):
        (a if number % 3 else b).message(session, "in", str(number), False)
    scan = Scan([a, b], JournalFilter(), keep=4)
    list(scan.steps())
    assert scan.count == 6
    assert [(r, to_json(e, r)["text"]) for r, e in scan.listed()] == [
        ("/b", "0"), ("/a", "1"), ("/a", "2"), ("/b", "3")]


def test_workers_never_give_one_number_twice() -> None:
    """Timed numbers: microseconds of the clock, each worker's in its own
    residue, so that entries of two workers made in the same microsecond
    still have distinct numbers (a page cut between them resumes with
    since); each worker's numbers strictly increase."""
    clock = Clock()
    clock.advance(1_000.0)
    sequences = [Sequence(clock.seconds, worker=n, workers=3) for n in range(3)]
    numbers: list[list[int]] = [[] for _ in sequences]
    for _ in range(50):
        for mine, sequence in zip(numbers, sequences, strict=True):
            mine.extend(sequence.next() for _ in range(3))
        clock.advance(0.000_002)
    every = [n for mine in numbers for n in mine]
    assert len(set(every)) == len(every)
    for worker, mine in enumerate(numbers):
        assert mine == sorted(set(mine)) and all(n % 3 == worker for n in mine)
        assert 1_000_000_000 <= mine[0] < 1_000_000_000 + 3
    with pytest.raises(ValueError):
        Sequence(clock.seconds, worker=2, workers=2)
