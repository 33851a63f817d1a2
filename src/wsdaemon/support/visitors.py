"""
The visitors' open connections, as the conversation driver reaches them:
L{VisitorSessions} provides L{IVisitorPort}.

Each (route, visitor public id) may have several connections at once (tabs),
each C{plain} (text frames, the seed's page) or C{structured}
(C{wsdaemon.chat.v1}, JSON). A committed message goes to every one of them:
plain ones get its text (only messages to the visitor), structured ones the
JSON C{message} frame, each message once and in C{seq} order per
connection (a connection remembers the highest C{seq} it was written,
C{sent}).

Resuming without losing or doubling a message: while a connection's page of
older messages is being read from the store (a structured client's
C{hello}, a plain client's messages written while it was away), what the
driver delivers to it is held in its buffer; once the page is written the
buffer follows, without what the page already held. A message is committed
before the driver delivers it, so every message is in the page, in the
buffer, or both. Past C{max_buffered} held frames the buffer's messages are
dropped and the connection is I{behind}: a structured client is told
C{more} and pages on with C{history}; a plain one is read again.

Acknowledgements: a structured client's message is acknowledged (C{ack}
with its id, C{seq} and time) on the connection that sent it, and copied to
the visitor's other structured connections, in the driver's effect order,
so before the notices that follow it. The strategy registers the message
(L{expect}) before submitting it and settles it after (L{settle}).

Bounds (defaults below): C{max_sessions_per_visitor} connections of one
visitor (L{add} refuses more), C{max_buffered} frames held per connection,
C{max_pending_per_visitor} messages of one visitor awaiting their
acknowledgement.

Availability (L{announce}) goes to every structured connection: that is
O(structured connections) per flip, rare (the first operator online, the
last one gone), and spread over reactor turns of C{announce_batch}
connections each, so no message waits behind it long; the message path
itself is O(the visitor's own connections).

Constructor: C{VisitorSessions(inbox, clock, *, max_sessions_per_visitor=16,
max_buffered=256, max_pending_per_visitor=64, announce_batch=500)}, where
C{inbox} is the driver's committed view (its time of a message just
committed, its team's availability).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from wsdaemon.conversations.effects import (
    AnnounceAvailability,
    ConfirmVisitorMessage,
    DeliverMessage,
    RefuseVisitor,
    SignalVisitor,
)
from wsdaemon.conversations.model import Author, Message, conversation_id_for
from wsdaemon.conversations.profile import Profile
from wsdaemon.conversations.transition import InboxView
from wsdaemon.interfaces import ISession
from wsdaemon.support.ports import IVisitorPort
from wsdaemon.support.visitor_connection import DEFAULT_MAX_BUFFERED, Mode, VisitorConnection
from wsdaemon.support.visitor_delivery import Record, RecordedWrites
from wsdaemon.support.visitor_presence import DEFAULT_MAX_REMEMBERED, VisitorPresence
from wsdaemon.support.visitor_protocol import (
    ack_frame,
    availability_frame,
    message_frame,
    read_frame,
    status_frame,
    typing_frame,
)

__all__ = ["DEFAULT_ANNOUNCE_BATCH", "DEFAULT_MAX_BUFFERED", "DEFAULT_MAX_PENDING_PER_VISITOR",
           "DEFAULT_MAX_SESSIONS_PER_VISITOR", "Mode", "VisitorConnection", "VisitorSessions"]

#: Connections one visitor may have open on one route at once (tabs).
DEFAULT_MAX_SESSIONS_PER_VISITOR = 16
#: A visitor's messages sent and not yet acknowledged (structured).
DEFAULT_MAX_PENDING_PER_VISITOR = 64
#: Structured connections told of an availability flip per reactor turn.
DEFAULT_ANNOUNCE_BATCH = 500

_log = Logger(namespace="wsdaemon.support.visitors")


@dataclass(eq=False)
class _Pending:
    text: str
    origins: list[str]
    count: int = 0


@dataclass(eq=False)
class _Visitor:
    connections: dict[str, VisitorConnection] = field(default_factory=dict)
    pending: dict[str, _Pending] = field(default_factory=dict)


@implementer(IVisitorPort)
class VisitorSessions:
    def __init__(self, inbox: InboxView, clock: IReactorTime, *,
                 max_sessions_per_visitor: int = DEFAULT_MAX_SESSIONS_PER_VISITOR,
                 max_buffered: int = DEFAULT_MAX_BUFFERED,
                 max_pending_per_visitor: int = DEFAULT_MAX_PENDING_PER_VISITOR,
                 announce_batch: int = DEFAULT_ANNOUNCE_BATCH) -> None:
        if not IReactorTime.providedBy(clock):
            raise TypeError(f"{clock!r} does not provide IReactorTime")
        for name, value in (("max_sessions_per_visitor", max_sessions_per_visitor),
                            ("max_buffered", max_buffered),
                            ("max_pending_per_visitor", max_pending_per_visitor),
                            ("announce_batch", announce_batch)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
        self._clock = clock
        self._inbox = inbox
        self.max_sessions_per_visitor = max_sessions_per_visitor
        self.max_buffered = max_buffered
        self.max_pending_per_visitor = max_pending_per_visitor
        self.announce_batch = announce_batch
        self._visitors: dict[tuple[str, str], _Visitor] = {}
        self._connections: dict[str, VisitorConnection] = {}
        self._structured: dict[str, VisitorConnection] = {}
        self._handshakes: dict[str, tuple[Mode, int]] = {}
        self._token_profiles: dict[str, Profile] = {}
        self._available: bool | None = None
        #: Operators' display names by login name (the support component
        #: sets them, and again on a reload): an indicator's end names the
        #: operator by login, and visitors see display names only.
        self.display_names: Mapping[str, str] = {}
        #: A route's "we usually reply within" in seconds, or None (the
        #: support component gives L{wsdaemon.support.reply_times}'s).
        self.reply_within: Callable[[str], float | None] = lambda route: None
        self._sweep: list[str] = []
        self._sweep_call: IDelayedCall | None = None
        #: Who is connected now and when the others were last seen.
        self.presence = VisitorPresence(clock)
        #: What closed plain connections were written, by (route, visitor):
        #: the visitors seen most recently (L{written_upto}).
        self._written: OrderedDict[tuple[str, str], int] = OrderedDict()
        #: Daemons sharing the store: plain writes wait for their record.
        self.recorded: RecordedWrites | None = None

    # -- connections ---------------------------------------------------------

    def handshake(self, session_id: str, mode: Mode, max_bytes: int,
                  profile: Profile | None = None) -> None:
        """
        The handshake of C{session_id} chose C{mode}; its route takes
        messages of at most C{max_bytes} (0: any), either way. Kept here,
        not by the route's strategy, so that a connection whose handshake
        straddles a reload (the old strategy answered it, the new one sees
        it open) keeps what was chosen. As many are kept as handshakes are
        under way (the route's connection caps bound them).

        @param profile: who the client's token says it is (C{identity = jwt}).
        """
        self._handshakes[session_id] = (mode, max_bytes)
        if profile is not None:
            self._token_profiles[session_id] = profile

    def token_profile(self, session_id: str) -> Profile | None:
        """What C{session_id}'s token said (until L{take_handshake})."""
        return self._token_profiles.get(session_id)

    def take_handshake(self, session_id: str) -> tuple[Mode, int]:
        """
        @return: what C{session_id}'s handshake chose (plain and no bound
            when nothing was recorded), forgotten now: called when it opens
            or is abandoned.
        """
        self._token_profiles.pop(session_id, None)
        return self._handshakes.pop(session_id, (Mode.PLAIN, 0))

    def add(self, session: ISession, mode: Mode,
            max_bytes: int = 0) -> VisitorConnection | None:
        """
        A visitor's connection opened; it holds what is delivered to it
        until L{synced} (its first page read). Nothing bigger than
        C{max_bytes} (0: no bound) is written to it: a structured message
        is cut to fit, a plain one too big is not written.

        @return: its state, or None when the visitor has
            C{max_sessions_per_visitor} open already (not added: the caller
            closes it).
        """
        key = (session.route, session.client_id)
        visitor = self._visitors.get(key)
        if visitor is None:
            visitor = self._visitors[key] = _Visitor()
        if len(visitor.connections) >= self.max_sessions_per_visitor:
            self._drop_if_idle(key, visitor)
            return None
        connection = VisitorConnection(session, session.route, session.client_id, mode,
                                       max_bytes=max_bytes, max_buffered=self.max_buffered)
        visitor.connections[session.session_id] = connection
        self._connections[session.session_id] = connection
        if connection.structured:
            self._structured[session.session_id] = connection
        self.presence.opened(session.route, session.client_id)
        return connection

    def remove(self, session: ISession) -> None:
        """The connection closed: nothing more is written to it."""
        connection = self._connections.pop(session.session_id, None)
        if connection is None:
            return
        if not connection.structured and connection.sent:
            self._remember_written(connection.route, connection.visitor, connection.sent)
        self._structured.pop(session.session_id, None)
        key = (connection.route, connection.visitor)
        visitor = self._visitors.get(key)
        if visitor is not None:
            visitor.connections.pop(session.session_id, None)
            self._drop_if_idle(key, visitor)
        self.presence.closed(connection.route, connection.visitor)

    def _drop_if_idle(self, key: tuple[str, str], visitor: _Visitor) -> None:
        if not visitor.connections and not visitor.pending:
            del self._visitors[key]

    def connection(self, session: ISession) -> VisitorConnection | None:
        return self._connections.get(session.session_id)

    def _remember_written(self, route: str, visitor: str, sent: int) -> None:
        key = (route, visitor)
        self._written[key] = max(sent, self._written.pop(key, 0))
        while len(self._written) > DEFAULT_MAX_REMEMBERED:
            self._written.popitem(last=False)

    def written_upto(self, route: str, visitor: str) -> int:
        """
        The highest seq written here to a plain connection of the visitor,
        open or closed (closed ones remembered for the visitors seen most
        recently, as their presence is): a message up to it reached one.
        """
        written = self._written.get((route, visitor), 0)
        for connection in self.connections_of(route, visitor):
            if not connection.structured:
                written = max(written, connection.sent)
        return written

    def connections_of(self, route: str, visitor: str) -> list[VisitorConnection]:
        """The visitor's open connections on C{route}, oldest first."""
        found = self._visitors.get((route, visitor))
        return list(found.connections.values()) if found is not None else []

    def __len__(self) -> int:
        return len(self._connections)

    # -- pages (the strategy's) ---------------------------------------------

    def resync(self, connection: VisitorConnection) -> None:
        """A page is about to be read for it (L{VisitorConnection.resync})."""
        connection.resync()

    def synced(self, connection: VisitorConnection, start: int, end: int,
               more: bool) -> bool:
        """Its page was written (L{VisitorConnection.synced})."""
        return connection.synced(start, end, more)

    def send(self, connection: VisitorConnection, frame: str) -> bool:
        """A frame written now, past what is held (L{VisitorConnection.send})."""
        return connection.send(frame)

    # -- IVisitorPort --------------------------------------------------------

    def record_before_writing(self, record: Record) -> None:
        """
        Daemons share the store: a plain connection's message is recorded
        delivered before it is written (L{wsdaemon.support.visitor_delivery}).
        """
        self.recorded = RecordedWrites(record, self.connections_of, self.written_upto)

    def deliver(self, effect: DeliverMessage) -> bool:
        message = effect.message
        plain_took = plain_waits = False
        recorded = self.recorded
        whole: str | None = None
        for connection in self.connections_of(effect.route, effect.visitor):
            if connection.structured:
                whole = whole or message_frame(message)
                connection.write(connection.fitted(whole, message), message.seq)
            elif not message.to_visitor:
                continue
            elif recorded is not None:
                plain_waits = True
            elif connection.write(message.body, message.seq):
                plain_took = True
        if recorded is not None and plain_waits:
            recorded.deliver(effect.route, effect.visitor, message)
        return plain_took

    def tell(self, effect: ConfirmVisitorMessage | SignalVisitor | RefuseVisitor) -> None:
        """
        Refusals are answered by the strategy to the connection that sent
        the message (the effect does not say which): nothing here.
        """
        if isinstance(effect, ConfirmVisitorMessage):
            self._confirm(effect)
        elif isinstance(effect, SignalVisitor):
            if effect.signal == "typing" and not effect.on and effect.name is not None:
                effect = replace(effect, name=self.display_names.get(effect.name, effect.name))
            frame = _signal_frame(effect)
            if frame is None:
                return
            for connection in self.connections_of(effect.route, effect.visitor):
                if connection.structured:
                    connection.write(frame, None)

    def announce(self, effect: AnnounceAvailability) -> None:
        """Every structured connection, C{announce_batch} per reactor turn."""
        self._available = effect.available
        self._sweep = list(self._structured)
        if self._sweep_call is None or not self._sweep_call.active():
            self._sweep_call = self._clock.callLater(0, self._announce_some)

    def _announce_some(self) -> None:
        self._sweep_call = None
        available = self._available
        if available is None:
            return
        batch, self._sweep = self._sweep[:self.announce_batch], \
            self._sweep[self.announce_batch:]
        frames: dict[str, str] = {}  # one per route
        for session_id in batch:
            connection = self._structured.get(session_id)
            if connection is None or connection.told_available is available:
                continue
            connection.told_available = available
            frame = frames.get(connection.route)
            if frame is None:
                frame = frames[connection.route] = availability_frame(
                    available, self.reply_within(connection.route))
            connection.write(frame, None)
        if self._sweep:
            self._sweep_call = self._clock.callLater(0, self._announce_some)

    # -- acknowledgements ----------------------------------------------------

    def expect(self, session: ISession, client_id: str, text: str) -> bool:
        """
        A structured connection's message is about to be submitted: its
        acknowledgement goes to it, its copy to the visitor's other tabs.

        @return: False when C{max_pending_per_visitor} of the visitor's
            messages await theirs already (refuse it).
        """
        visitor = self._visitors.get((session.route, session.client_id))
        if visitor is None:
            return False
        pending = visitor.pending.get(client_id)
        if pending is None:
            if len(visitor.pending) >= self.max_pending_per_visitor:
                return False
            pending = visitor.pending[client_id] = _Pending(text, [])
        pending.count += 1
        if session.session_id not in pending.origins:
            pending.origins.append(session.session_id)
        return True

    def settle(self, session: ISession, client_id: str) -> None:
        """The submission L{expect} announced is over (acknowledged or failed)."""
        key = (session.route, session.client_id)
        visitor = self._visitors.get(key)
        if visitor is None:
            return
        pending = visitor.pending.get(client_id)
        if pending is not None:
            pending.count -= 1
            if pending.count <= 0:
                del visitor.pending[client_id]
        self._drop_if_idle(key, visitor)

    def _confirm(self, effect: ConfirmVisitorMessage) -> None:
        if effect.client_message_id is None:
            return
        visitor = self._visitors.get((effect.route, effect.visitor))
        pending = visitor.pending.get(effect.client_message_id) if visitor else None
        if visitor is None or pending is None:
            return
        if effect.duplicate:
            return  # the strategy answers a resend itself, with the stored time
        conversation_id = conversation_id_for(effect.route, effect.visitor)
        found = self._inbox.conversation(conversation_id)
        # Committed just now: the message's time is the conversation's last activity.
        at = found.last_activity_at if found is not None else self._clock.seconds()
        ack = ack_frame(effect.client_message_id, effect.seq, at)
        message: Message | None = None
        copy = ""
        for session_id, connection in list(visitor.connections.items()):
            if not connection.structured:
                continue
            if session_id in pending.origins:
                connection.write(ack, None, keep=True)
                continue
            if message is None:  # another tab: made once, only when there is one
                message = Message(conversation_id, effect.seq, Author.VISITOR, pending.text,
                                  at, client_message_id=effect.client_message_id)
                copy = message_frame(message)
            connection.write(connection.fitted(copy, message), effect.seq)

    @property
    def available(self) -> bool | None:
        """The last availability announced (None: none yet)."""
        return self._available


def _signal_frame(effect: SignalVisitor) -> str | None:
    if effect.signal == "typing":
        return typing_frame(effect.on, effect.name)
    if effect.signal == "read":
        return read_frame(effect.upto)
    if effect.signal == "status":
        return status_frame(effect.status)
    _log.warn("conversations: unknown visitor signal {signal}", signal=effect.signal)
    return None
