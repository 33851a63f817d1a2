"""
L{VisitorSessions} on a store shared by daemons (L{RecordedWrites}): a plain
connection's message is recorded delivered (L{VisitorDelivered} submitted)
before it is written, in the order delivered even when the records' outcomes
come out of order; a failed record still writes; structured connections are
written at once, as with one daemon.
"""

from __future__ import annotations

from types import SimpleNamespace

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from tests.conversation_desk import ROUTE, Desk
from tests.unit.test_support_visitors import deliver, got, seqs_of, session, sessions
from wsdaemon.conversations import VisitorMessage, VisitorRead
from wsdaemon.conversations.events import VisitorDelivered, VisitorMissed
from wsdaemon.errors import BrokerUnavailable
from wsdaemon.support.visitors import Mode


def outcome(*, confirmed: bool) -> SimpleNamespace:
    """A record's transition: it raised what is delivered (not confirmed), or
    confirmed what another connection had recorded."""
    return SimpleNamespace(commit=SimpleNamespace(
        conversations=(SimpleNamespace(delivered_confirmed=confirmed),)))


class Records:
    """The driver's submit, answered by the test."""

    def __init__(self) -> None:
        self.submitted: list[tuple[VisitorDelivered | VisitorMissed, Deferred[object]]] = []

    def __call__(self, event: VisitorDelivered | VisitorMissed) -> Deferred[object]:
        d: Deferred[object] = Deferred()
        self.submitted.append((event, d))
        return d

    def upto(self) -> list[int]:
        return [event.upto for event, _ in self.submitted if isinstance(event, VisitorDelivered)]

    def missed(self) -> list[VisitorMissed]:
        return [event for event, _ in self.submitted if isinstance(event, VisitorMissed)]


def test_a_plain_message_is_written_once_its_delivery_is_recorded() -> None:
    """Nothing is written before the record commits; then the text, once.
    The driver is told no plain connection took it (it records nothing more)."""
    port, _ = sessions()
    records = Records()
    port.record_before_writing(records)
    plain = session()
    structured = session()
    port.synced(port.add(plain, Mode.PLAIN), 0, 0, False)  # type: ignore[arg-type]
    port.synced(port.add(structured, Mode.STRUCTURED), 0, 0, False)  # type: ignore[arg-type]
    assert deliver(port, 1) is False
    assert records.upto() == [1]
    assert got(plain) == []
    assert seqs_of(got(structured)) == [1]  # structured: at once
    records.submitted[0][1].callback(None)
    assert got(plain) == ["m1"]
    assert len(port.recorded or ()) == 0


def test_writes_keep_their_order_when_records_answer_out_of_order() -> None:
    """Records of 1, 2, 3: 2 answers first (nothing written), then 1 (1 and 2
    written), a failed record of 3 still writes 3 (it may come once more
    later, as with one daemon, never lost)."""
    port, _ = sessions()
    records = Records()
    port.record_before_writing(records)
    plain = session()
    port.synced(port.add(plain, Mode.PLAIN), 0, 0, False)  # type: ignore[arg-type]
    for seq in (1, 2, 3):
        deliver(port, seq)
    assert records.upto() == [1, 2, 3]
    records.submitted[1][1].callback(None)
    assert got(plain) == []
    records.submitted[0][1].callback(None)
    assert got(plain) == ["m1", "m2"]
    records.submitted[2][1].errback(Failure(BrokerUnavailable("redis is away")))
    assert got(plain) == ["m3"]


def test_a_connection_opened_before_the_write_gets_it_once() -> None:
    """A second tab opened while the record is out, its page (up to 0) read:
    the write reaches both tabs, once each; a tab gone by then gets nothing."""
    port, _ = sessions()
    records = Records()
    port.record_before_writing(records)
    first, second = session(), session()
    port.synced(port.add(first, Mode.PLAIN), 0, 0, False)  # type: ignore[arg-type]
    deliver(port, 1)
    port.synced(port.add(second, Mode.PLAIN), 0, 0, False)  # type: ignore[arg-type]
    port.remove(first)
    records.submitted[0][1].callback(None)
    assert got(first) == [] and got(second) == ["m1"]


def test_no_plain_connection_nothing_recorded() -> None:
    """A visitor with no plain connection here: nothing to record or write."""
    port, _ = sessions()
    records = Records()
    port.record_before_writing(records)
    structured = session()
    port.synced(port.add(structured, Mode.STRUCTURED), 0, 0, False)  # type: ignore[arg-type]
    deliver(port, 1)
    assert records.submitted == [] and seqs_of(got(structured)) == [1]


def test_a_connection_closed_before_the_write_is_recorded_missed() -> None:
    """
    The visitor's only plain connection closes while the record of its
    reply is out: once recorded (this record raised what is delivered),
    nothing takes the reply, so it is recorded missed (its next
    connection, through any daemon, gets it); the one after it too, in
    order. A failed record, or one that only confirmed another connection's,
    is not taken back (nothing of this daemon's to take back).
    """
    port, _ = sessions()
    records = Records()
    port.record_before_writing(records)
    plain = session()
    port.synced(port.add(plain, Mode.PLAIN), 0, 0, False)  # type: ignore[arg-type]
    for seq in (1, 2, 3, 4):
        deliver(port, seq)
    port.remove(plain)
    records.submitted[0][1].callback(outcome(confirmed=False))
    records.submitted[1][1].callback(outcome(confirmed=False))
    records.submitted[2][1].errback(Failure(BrokerUnavailable("redis is away")))
    records.submitted[3][1].callback(outcome(confirmed=True))
    assert got(plain) == []
    assert records.missed() == [VisitorMissed(ROUTE, "v1", 1), VisitorMissed(ROUTE, "v1", 2)]
    assert len(port.recorded or ()) == 0


def test_the_core_takes_a_missed_message_back_unless_confirmed() -> None:
    """
    Missed: the message and what follows count as not delivered again; but
    not once a second record (another connection, maybe through another
    daemon, which wrote it) confirmed it, nor once the visitor said it read
    it; a miss past what is recorded changes nothing; a raise clears the
    confirmation.
    """
    desk = Desk(fallback_after=0)
    desk.step(VisitorMessage(ROUTE, "v1", "hello"))
    last = desk.conversation("v1").last_seq
    desk.step(VisitorDelivered(ROUTE, "v1", last))
    assert desk.conversation("v1").delivered_upto == last >= 1
    assert desk.step(VisitorMissed(ROUTE, "v1", last)).commit is not None
    assert desk.conversation("v1").delivered_upto == last - 1
    assert desk.step(VisitorMissed(ROUTE, "v1", last + 5)).commit is None
    desk.step(VisitorDelivered(ROUTE, "v1", last))      # daemon A's record: raised
    confirmed = desk.step(VisitorDelivered(ROUTE, "v1", last))  # daemon B's: confirms
    assert confirmed.commit is not None and desk.conversation("v1").delivered_confirmed
    assert desk.step(VisitorMissed(ROUTE, "v1", last)).commit is None
    assert desk.conversation("v1").delivered_upto == last
    desk.step(VisitorMessage(ROUTE, "v1", "again"))
    newer = desk.conversation("v1").last_seq
    desk.step(VisitorDelivered(ROUTE, "v1", newer))
    assert not desk.conversation("v1").delivered_confirmed
    desk.step(VisitorRead(ROUTE, "v1", newer))
    assert desk.step(VisitorMissed(ROUTE, "v1", newer)).commit is None


def test_a_message_a_closed_connection_was_written_is_not_taken_back() -> None:
    """
    A catch-up page wrote message 1 to the visitor's connection, which then
    closed; this daemon's live record of 1 comes after (its view had not the
    message when the page was recorded) and raises what is delivered: no
    connection takes it now, but one here had it: not taken back (the
    visitor would be written it twice).
    """
    port, _ = sessions()
    records = Records()
    port.record_before_writing(records)
    plain = session()
    connection = port.add(plain, Mode.PLAIN)
    assert connection is not None
    deliver(port, 1)                       # live: its record goes out
    deliver(port, 2)
    port.synced(connection, 0, 1, False)   # meanwhile the catch-up page wrote 1
    assert connection.sent == 1
    port.remove(plain)
    assert port.written_upto(ROUTE, "v1") == 1
    records.submitted[0][1].callback(outcome(confirmed=False))
    records.submitted[1][1].callback(outcome(confirmed=False))
    assert records.missed() == [VisitorMissed(ROUTE, "v1", 2)]
