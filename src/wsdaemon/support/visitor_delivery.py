"""
A plain visitor's messages on daemons sharing a store (Redis): the delivery
is recorded (L{VisitorDelivered}) before the message is written.

Why: a plain client says nothing back, so what it has is what the daemons
recorded. Written first and recorded after (as with one daemon), a visitor
that read a reply, closed and connected through another daemon at once was
written it again there: that daemon's catch-up (the messages after the
stored C{delivered_upto}) ran before the record landed (or before its own
view had it). Recorded first, a visitor can only have read a message whose
record is in the store, and the other daemon's catch-up, reading the store,
starts after it. The catch-up itself records each page before writing it
(L{wsdaemon.support.visitor.ConversationStrategy}), for a visitor hopping on.

A connection that closes in the moment between the record and the write
(one Redis round trip) does not get the message: the daemon then records
it missed (L{VisitorMissed}: delivered only up to before it again), so
that the visitor's next connection, through any daemon, gets it; unless
another connection confirmed the record (the visitor connected elsewhere
has it: C{delivered_confirmed}), and only when this daemon's record is
what raised it (L{_raised}). A record that fails (Redis away, a full lane) does not hold
the message back: it is written, and may come once more on the visitor's
next connection (as before).

Order: each visitor's messages are written in the order they were
delivered, each once its record's outcome is known (the records of one
conversation commit in order; an outcome out of order waits for those
before it). Bounded by the records in flight, which the driver's lanes
bound.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from wsdaemon.conversations.events import VisitorDelivered, VisitorMissed
from wsdaemon.conversations.model import Message
from wsdaemon.support.visitor_connection import VisitorConnection

__all__ = ["Record", "RecordedWrites", "record_page"]

#: Submits a visitor event to the driver (L{ConversationDriver.submit}).
Record = Callable[[VisitorDelivered | VisitorMissed], "Deferred[Any]"]

_log = Logger(namespace="wsdaemon.support.visitors")


class _Write:
    __slots__ = ("done", "message", "raised")

    def __init__(self, message: Message) -> None:
        self.message = message
        self.done = False
        self.raised = False


class RecordedWrites:
    """
    Plain writes waiting for their delivery's record, per visitor.

    @param record: submits the L{VisitorDelivered}.
    @param connections_of: the visitor's open connections (route, visitor)
        at the moment of the write.
    @param written_upto: the highest seq written here to a plain connection
        of the visitor, closed ones too (a catch-up page may have written a
        message whose live record comes after its connection closed).
    """

    def __init__(self, record: Record,
                 connections_of: Callable[[str, str], list[VisitorConnection]],
                 written_upto: Callable[[str, str], int] = lambda route, visitor: 0) -> None:
        self.record = record
        self._connections_of = connections_of
        self._written_upto = written_upto
        self._waiting: dict[tuple[str, str], deque[_Write]] = {}

    def __len__(self) -> int:
        """Visitors with writes waiting."""
        return len(self._waiting)

    def deliver(self, route: str, visitor: str, message: Message) -> None:
        """Record C{message} delivered, then write it to the visitor's plain connections."""
        key = (route, visitor)
        write = _Write(message)
        self._waiting.setdefault(key, deque()).append(write)
        try:
            d = self.record(VisitorDelivered(route, visitor, message.seq))
        except Exception:
            d = Deferred()
            d.errback(Failure())
        d.addBoth(self._recorded, key, write)

    def _recorded(self, outcome: object, key: tuple[str, str], write: _Write) -> None:
        if isinstance(outcome, Failure):
            _log.debug("conversations: the delivery to {client_id} on {route} was not recorded "
                       "before its write: {why}", client_id=key[1], route=key[0],
                       why=outcome.getErrorMessage())
        write.done = True
        write.raised = _raised(outcome)
        waiting = self._waiting.get(key)
        while waiting and waiting[0].done:
            done = waiting.popleft()
            message = done.message
            took = False
            for connection in self._connections_of(*key):
                if not connection.structured:
                    connection.write(message.body, message.seq)
                    took = True
            if done.raised and not took and self._written_upto(*key) < message.seq:
                self.missed(key[0], key[1], message.seq)
        if waiting is not None and not waiting:
            del self._waiting[key]

    def missed(self, route: str, visitor: str, seq: int) -> None:
        """
        Message C{seq} was recorded delivered (by this daemon's record) but
        no connection took it (the visitor's closed meanwhile): recorded
        missed, for its next connection.
        """
        def failed(failure: Failure) -> None:
            _log.debug("conversations: message {seq} to {client_id} on {route} was not "
                       "written and could not be recorded so: {why}", seq=seq,
                       client_id=visitor, route=route, why=failure.getErrorMessage())

        try:
            self.record(VisitorMissed(route, visitor, seq)).addErrback(failed)
        except Exception:
            failed(Failure())


async def record_page(record: Record, route: str, connection: VisitorConnection,
                      messages: list[Message]) -> int | None:
    """
    A plain catch-up's page, for a visitor other daemons may serve next:
    recorded delivered before it is written (a failure is written all the
    same, as with one daemon).

    @return: the page's first message this record raised what is delivered
        past (for L{RecordedWrites.missed} if the connection closes before
        the page is written), or None when it raised nothing.
    """
    upto = max((m.seq for m in messages if m.to_visitor), default=0)
    if upto <= connection.sent:
        return None
    try:
        outcome = await record(VisitorDelivered(route, connection.visitor, upto))
    except Exception as e:
        _log.debug("conversations: the catch-up of {client_id} on {route} was not recorded "
                   "before its write: {why}", client_id=connection.visitor, route=route,
                   why=str(e))
        return None
    if not _raised(outcome):
        return None
    return min((m.seq for m in messages if m.to_visitor and m.seq > connection.sent),
               default=upto)


def _raised(outcome: object) -> bool:
    """
    Whether a record's outcome (the driver's transition) raised what is
    recorded delivered: only then may a message that was not written be
    recorded missed (not raised: another connection, maybe through another
    daemon, had it recorded already).
    """
    commit = getattr(outcome, "commit", None)
    return commit is not None and any(
        getattr(c, "delivered_confirmed", True) is False for c in commit.conversations)
