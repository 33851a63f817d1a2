"""
L{VisitorSessions}, the driver's visitor port, on recording sessions and a
L{Clock}: who takes a delivery (plain or structured), each message once and
in order per connection, what is held while a page is read and its bound,
the per-visitor caps, and availability announced in bounded batches.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from wsdaemon.conversations import (
    AnnounceAvailability,
    Author,
    ConfirmVisitorMessage,
    ConversationSettings,
    DeliverMessage,
    Inbox,
    Message,
    RefuseVisitor,
    SignalVisitor,
    conversation_id_for,
)
from wsdaemon.support.ports import IVisitorPort
from wsdaemon.support.visitors import (
    DEFAULT_MAX_SESSIONS_PER_VISITOR,
    Mode,
    VisitorSessions,
)
from wsdaemon.testing import RecordingSession

ROUTE = "/support"


def sessions(**bounds: int) -> tuple[VisitorSessions, Clock]:
    clock = Clock()
    return VisitorSessions(Inbox(ConversationSettings()), clock, **bounds), clock


_ids = iter(range(1_000_000))


def session(visitor: str = "v1") -> RecordingSession:
    return RecordingSession(f"s{next(_ids)}", ROUTE, client_id=visitor)


def deliver(port: VisitorSessions, seq: int, visitor: str = "v1",
            author: Author = Author.OPERATOR) -> bool:
    message = Message(conversation_id_for(ROUTE, visitor), seq, author, f"m{seq}", float(seq),
                      operator="alice", display_name="Alice")
    return port.deliver(DeliverMessage(ROUTE, visitor, message))


def got(recording: RecordingSession) -> list[Any]:
    out: list[Any] = []
    for sent in recording.sent:
        assert isinstance(sent, str)
        out.append(json.loads(sent) if sent.startswith("{") else sent)
    recording.sent.clear()
    return out


def turn(clock: Clock) -> bool:
    """Run one reactor turn's calls (those due now, not those they schedule)."""
    due = [call for call in clock.calls if call.getTime() <= clock.seconds()]
    for call in due:
        clock.calls.remove(call)
        call.func(*call.args, **call.kw)
    return bool(due)


def seqs_of(frames: list[Any]) -> list[int]:
    return [f["seq"] for f in frames if isinstance(f, dict) and f["type"] == "message"]


def test_provides_the_port() -> None:
    """VisitorSessions is the driver's IVisitorPort; bad bounds are refused."""
    port, _ = sessions()
    assert verifyObject(IVisitorPort, port)
    with pytest.raises(ValueError, match="max_buffered"):
        sessions(max_buffered=0)
    with pytest.raises(TypeError, match="IReactorTime"):
        VisitorSessions(Inbox(ConversationSettings()), object())  # type: ignore[arg-type]


def test_deliver_plain_and_structured() -> None:
    """
    A plain connection takes the text (deliver says True: the driver records
    it delivered); a structured one the JSON message (False: it sends its
    own receipts); each message once per connection.
    """
    port, _ = sessions()
    plain, structured = session(), session()
    p = port.add(plain, Mode.PLAIN)
    s = port.add(structured, Mode.STRUCTURED)
    assert p is not None and s is not None
    port.synced(p, 0, 0, False)
    port.synced(s, 0, 0, False)
    assert deliver(port, 1) is True
    assert got(plain) == ["m1"]
    assert seqs_of(got(structured)) == [1]
    assert deliver(port, 1) is False  # a second delivery of seq 1 is not written again
    assert got(plain) == [] and got(structured) == []
    port.remove(plain)
    assert deliver(port, 2) is False
    assert seqs_of(got(structured)) == [2]
    assert deliver(port, 3, visitor="nobody") is False


def test_sessions_per_visitor_bound() -> None:
    """A visitor has at most max_sessions_per_visitor connections; others are unaffected."""
    port, _ = sessions()
    for _ in range(DEFAULT_MAX_SESSIONS_PER_VISITOR):
        assert port.add(session(), Mode.STRUCTURED) is not None
    assert port.add(session(), Mode.PLAIN) is None
    assert port.add(session("v2"), Mode.PLAIN) is not None
    assert len(port.connections_of(ROUTE, "v1")) == DEFAULT_MAX_SESSIONS_PER_VISITOR


def test_held_while_reading_then_in_order() -> None:
    """What is delivered while a page is read follows the page, without what it held."""
    port, _ = sessions()
    recording = session()
    connection = port.add(recording, Mode.STRUCTURED)
    assert connection is not None
    deliver(port, 3)
    deliver(port, 4)
    port.tell(SignalVisitor(ROUTE, "v1", "typing", on=True, name="Alice"))
    assert got(recording) == []
    assert port.synced(connection, 0, 3, False)
    frames = got(recording)
    assert seqs_of(frames) == [4]
    assert frames[1] == {"type": "typing", "on": True, "name": "Alice"}
    deliver(port, 5)
    assert seqs_of(got(recording)) == [5]


def test_plain_held_messages_delivered_elsewhere_still_written() -> None:
    """A plain tab writes held messages the catch-up page did not (one another tab took)."""
    port, _ = sessions()
    recording = session()
    connection = port.add(recording, Mode.PLAIN)
    assert connection is not None
    deliver(port, 2)          # held: the catch-up starts after 2 (delivered elsewhere)
    deliver(port, 4)          # held, and in the page
    assert port.synced(connection, 2, 4, False)
    assert got(recording) == ["m2"]


def test_plain_held_messages_the_visitor_had_through_another_daemon_not_written() -> None:
    """
    Daemons sharing the store: a plain visitor read message 2 through
    daemon A, closed and connected here (B), whose news of 2 comes late,
    while the catch-up reads its page (held). The catch-up starts after what
    was recorded delivered (2: A records before it writes), which the
    visitor has: the late 2 is not written again; 4, new, is.
    """
    port, _ = sessions()
    recording = session()
    connection = port.add(recording, Mode.PLAIN)
    assert connection is not None
    connection.had = 2        # recorded delivered (by A) when the catch-up began
    deliver(port, 2)          # B's late news of 2: held
    deliver(port, 4)          # held, and in the page
    assert port.synced(connection, 2, 4, False)
    assert got(recording) == []   # (the page wrote 4, through the strategy)
    deliver(port, 5)
    assert got(recording) == ["m5"]


def test_buffer_bound_makes_structured_behind() -> None:
    """
    Past max_buffered held messages a structured connection is behind: it
    gets no live message until a page reaches the end; acknowledgements
    and signals held are still written.
    """
    port, _ = sessions(max_buffered=3)
    recording = session()
    connection = port.add(recording, Mode.STRUCTURED)
    assert connection is not None
    for seq in range(1, 6):
        deliver(port, seq)
    port.tell(SignalVisitor(ROUTE, "v1", "read", upto=1))  # past the bound: dropped
    assert port.synced(connection, 0, 0, False)
    assert connection.behind and got(recording) == []
    deliver(port, 6)
    assert got(recording) == []
    port.resync(connection)
    deliver(port, 7)
    port.synced(connection, 0, 6, False)
    assert not connection.behind
    assert seqs_of(got(recording)) == [7]


def test_buffer_bound_plain_reads_again() -> None:
    """A plain connection whose held messages overflowed is read again (synced says so)."""
    port, _ = sessions(max_buffered=2)
    recording = session()
    connection = port.add(recording, Mode.PLAIN)
    assert connection is not None
    for seq in range(1, 5):
        deliver(port, seq)
    assert port.synced(connection, 0, 0, False) is False
    # What was held before the bound follows; the rest is read again after it.
    assert connection.syncing and got(recording) == ["m1", "m2"] and connection.sent == 2
    deliver(port, 5)
    assert port.synced(connection, 0, 4, False) is True
    assert got(recording) == ["m5"]


def test_acknowledgement_and_copies() -> None:
    """
    A confirmed message is acknowledged on the connection that sent it and
    copied to the visitor's other structured tabs (not its plain ones);
    refusals are left to the strategy; a resend's confirmation too.
    """
    port, _ = sessions()
    origin, tab, plain = session(), session(), session()
    for recording, mode in ((origin, Mode.STRUCTURED), (tab, Mode.STRUCTURED),
                            (plain, Mode.PLAIN)):
        connection = port.add(recording, mode)
        assert connection is not None
        port.synced(connection, 0, 0, False)
    assert port.expect(origin, "c-1", "Hello?")
    port.tell(ConfirmVisitorMessage(ROUTE, "v1", "c-1", 1))
    assert got(origin) == [{"type": "ack", "id": "c-1", "seq": 1, "at": 0.0}]
    assert got(tab) == [{"type": "message", "seq": 1, "author": "visitor", "name": None,
                         "text": "Hello?", "at": 0.0, "id": "c-1"}]
    assert got(plain) == []
    port.tell(ConfirmVisitorMessage(ROUTE, "v1", "c-1", 1, duplicate=True))
    port.tell(RefuseVisitor(ROUTE, "v1", "unanswered", 20))
    assert got(origin) == [] and got(tab) == []
    port.settle(origin, "c-1")
    port.tell(ConfirmVisitorMessage(ROUTE, "v1", "c-1", 1))
    assert got(origin) == []


def test_pending_bound() -> None:
    """At most max_pending_per_visitor messages await acknowledgement; settling frees one."""
    port, _ = sessions(max_pending_per_visitor=2)
    recording = session()
    port.add(recording, Mode.STRUCTURED)
    assert port.expect(recording, "a", "x") and port.expect(recording, "b", "x")
    assert port.expect(recording, "a", "x")   # the same id again: no new slot
    assert not port.expect(recording, "c", "x")
    port.settle(recording, "b")
    assert port.expect(recording, "c", "x")


def test_visitor_forgotten_when_idle() -> None:
    """A visitor with no connection and nothing pending takes no memory."""
    port, _ = sessions()
    recording = session()
    port.add(recording, Mode.STRUCTURED)
    port.expect(recording, "a", "x")
    port.remove(recording)
    assert port._visitors  # noqa: SLF001 - the pending message holds it
    port.settle(recording, "a")
    assert not port._visitors and len(port) == 0  # noqa: SLF001


def test_announce_in_batches() -> None:
    """
    Availability goes to every structured connection (none plain),
    announce_batch per reactor turn, each told once per flip.
    """
    port, clock = sessions(announce_batch=2)
    structured = [session(f"v{n}") for n in range(5)]
    for recording in structured:
        connection = port.add(recording, Mode.STRUCTURED)
        assert connection is not None
        port.synced(connection, 0, 0, False)
    plain = session("p")
    port.add(plain, Mode.PLAIN)
    port.announce(AnnounceAvailability(True))
    assert all(not r.sent for r in structured)
    assert turn(clock) and [len(r.sent) for r in structured] == [1, 1, 0, 0, 0]
    assert turn(clock) and [len(r.sent) for r in structured] == [1, 1, 1, 1, 0]
    assert turn(clock) and not turn(clock)
    assert [got(r) for r in structured] == [
        [{"type": "availability", "available": True, "reply_within": None}]] * 5
    assert plain.sent == []
    port.announce(AnnounceAvailability(True))
    clock.advance(0)
    assert all(not r.sent for r in structured)
    assert port.available is True


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["commit", "commit", "commit", "read", "finish"]),
                max_size=60),
       st.integers(min_value=1, max_value=4), st.integers(min_value=1, max_value=5),
       st.booleans())
def test_once_and_in_order_whatever_the_interleaving(
        steps: list[str], max_buffered: int, page_size: int, plain: bool) -> None:
    """
    Commits delivered while pages are read, pages short or full, buffers
    overflowing: a connection is written each message at most once and in
    order, and once its reads reach the end it has had every message (a
    structured one pages on while behind; a plain one is read again).
    """
    port, _ = sessions(max_buffered=max_buffered)
    recording = session()
    connection = port.add(recording, Mode.PLAIN if plain else Mode.STRUCTURED)
    assert connection is not None
    committed: list[int] = []
    received: list[int] = []
    read: list[int] | None = None        # what a page read in flight will see
    start = 0                             # where the catch-up started (plain)
    after = 0

    def drain() -> None:
        for sent in recording.sent:
            assert isinstance(sent, str)
            received.append(int(sent[1:]) if not sent.startswith("{")
                            else json.loads(sent)["seq"])
        recording.sent.clear()

    def begin() -> None:
        nonlocal read
        port.resync(connection)
        read = [seq for seq in committed if seq > after][:page_size + 1]

    def finish() -> None:
        nonlocal read, after
        assert read is not None
        rows, more = read[:page_size], len(read) > page_size
        read = None
        received.extend(rows)          # the page is written first
        end = rows[-1] if rows else after
        if plain and more:             # the strategy reads on before it syncs
            after = end
            return
        port.synced(connection, start, end, more)
        drain()
        after = connection.sent if plain else end

    for step in steps:
        if step == "commit":
            seq = len(committed) + 1
            committed.append(seq)
            port.deliver(DeliverMessage(ROUTE, "v1", Message(
                conversation_id_for(ROUTE, "v1"), seq, Author.OPERATOR, f"m{seq}",
                float(seq))))
            drain()
        elif step == "read" and read is None and (connection.syncing or connection.behind):
            begin()
        elif step == "finish" and read is not None:
            finish()
        assert received == sorted(set(received)), received
    for _ in range(len(committed) + 3):   # the client reads on until it is up to date
        if read is None and not (connection.syncing or connection.behind):
            break
        if read is None:
            begin()
        finish()
    assert received == committed
