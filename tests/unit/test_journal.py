"""
One route's journal: bounded by entries and by bytes, filtered, merged
across routes in the order things happened.
"""

from __future__ import annotations

from twisted.internet.task import Clock

from wsdaemon.connections.journal import Journal, JournalFilter, Sequence, merged, to_json
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
