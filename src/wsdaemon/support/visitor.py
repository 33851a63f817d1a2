"""
The C{operator} strategy on conversations: a visitor's side of its
conversation (docs/conversations.md, section 7), on the conversation
driver.

Two kinds of client, chosen at the handshake (L{IHandshakeHook}: a client
offering the subprotocol C{wsdaemon.chat.v1} gets it):

- C{plain} (no subprotocol; the seed's page and any client today): each
  text message is a L{VisitorMessage}; replies and the daemon's notices
  (the acknowledgement and the offline notice, once per episode: the core
  decides) come as text frames. Messages written while the visitor had no
  connection are sent when it connects again (from its conversation's
  C{delivered_upto}). A binary message, one too long, or one the daemon
  could not store gets a text answer saying so, as before conversations.
- C{structured} (JSON, L{wsdaemon.support.visitor_protocol}): C{hello}
  with resume (C{welcome} with every message after the one the client has,
  once and in order: L{VisitorSessions} holds live deliveries while the
  page is read), C{message}/C{ack} with the client's ids (a resend is
  acknowledged with the first C{seq}, stored once), receipts, typing,
  contact, history, refusals; bad requests get C{error}; protocol abuse
  closes the connection (1003 binary, 1009 a frame over
  L{MAX_FRAME_BYTES}, 1008 L{MAX_BAD_REQUESTS} bad requests in a row).

A visitor's message is confirmed only once committed: if the store fails
the plain client is told to send it again, the structured client gets an
C{error} with its id (it resends with the same id: stored once).

Constructors (the support component builds them):
C{ConversationStrategy(driver, visitors, route, clock)}: the running
L{ConversationDriver}, the L{VisitorSessions} that is its visitor port,
the route's path, the clock; C{ConversationStrategyFactory(support)}:
C{support} has C{.driver} and C{.visitors} (L{support_of} is the one place
that finds them for a route).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from wsdaemon.conversations.effects import ConfirmVisitorMessage, RefuseVisitor
from wsdaemon.conversations.errors import InvalidMove
from wsdaemon.conversations.events import (
    LeaveContact,
    VisitorDelivered,
    VisitorMessage,
    VisitorRead,
    VisitorTyping,
)
from wsdaemon.conversations.model import Conversation, conversation_id_for
from wsdaemon.conversations.transition import Transition
from wsdaemon.interfaces import (
    IHandshakeHook,
    IOptionCheck,
    IReplyStrategy,
    ISession,
    IStrategyFactory,
)
from wsdaemon.records import HandshakeAnswer, HandshakeRequest
from wsdaemon.strategies.api import (
    OptionContext,
    OptionError,
    StrategyContext,
    reject_unknown_options,
)
from wsdaemon.support.driver import ConversationDriver
from wsdaemon.support.lanes import LaneFull
from wsdaemon.support.visitor_protocol import (
    MAX_FRAME_BYTES,
    MAX_TEXT_BYTES,
    PAGE_MESSAGES,
    SUBPROTOCOL,
    BadRequest,
    Contact,
    Hello,
    History,
    Read,
    Received,
    SendMessage,
    Typing,
    ack_frame,
    error_frame,
    history_frame,
    ok_frame,
    page,
    parse,
    refused_frame,
    welcome_frame,
)
from wsdaemon.support.visitors import Mode, VisitorConnection, VisitorSessions

__all__ = ["MAX_BAD_REQUESTS", "NOT_STORED", "REFUSED", "TEXT_ONLY", "ConversationStrategy",
           "ConversationStrategyFactory", "SupportHandle", "support_of"]

_log = Logger(namespace="wsdaemon.support.visitor")

#: What a plain client is told when its message was not stored.
NOT_STORED = "Sorry, your message could not be queued. Please send it again."
#: A plain client's binary message.
TEXT_ONLY = "Only text messages reach an operator."
TOO_LONG = "Sorry, your message is too long for an operator (at most {limit} bytes)."
#: Over a cap (nothing stored; the connection stays open), by the core's reason.
REFUSED = {
    "unanswered": "You already have {limit} messages waiting for an answer; please wait for "
                  "a reply before sending more.",
    "route_full": "Sorry, the queue is full right now. Please try again later.",
    "inbox_full": "Sorry, the queue is full right now. Please try again later.",
    "busy": "Sorry, too many messages at once. Please wait a moment and send it again.",
}
#: Bad requests in a row before a structured connection is closed (1008).
MAX_BAD_REQUESTS = 10

_NEEDS_OPERATOR = ("the operator strategy needs an [operator] section (tokens, store) in "
                   "the config")
_ACK_MOVED = ("the acknowledgement is one setting for all conversations now, sent once "
              "per conversation: set ack_message in [operator] instead (without "
              "{position})")


@dataclass(eq=False)
class _Structured:
    """What a structured connection's requests have established."""

    hello: bool = False
    reading: bool = False
    bad: int = 0
    typing: bool = False
    typing_at: float | None = None
    received: int = 0
    read: int = 0


@implementer(IReplyStrategy, IHandshakeHook)
class ConversationStrategy:
    """
    One route's visitors, on the conversation driver.

    @param driver: the running driver (its store is read for pages).
    @param visitors: the driver's visitor port: connections are added to
        it here and removed when they close.
    @param route: the route's path (the route part of conversation ids).
    @param clock: for typing renewals.
    """

    def __init__(self, driver: ConversationDriver, visitors: VisitorSessions, route: str,
                 clock: IReactorTime) -> None:
        self.driver = driver
        self.visitors = visitors
        self.route = route
        self.clock = clock
        #: Sessions that chose the subprotocol, between the handshake and
        #: their opening (as many as the route lets handshake at once).
        self._chosen: set[str] = set()
        self._structured: dict[str, _Structured] = {}

    # -- handshake -----------------------------------------------------------

    def connecting(self, request: HandshakeRequest) -> Deferred[HandshakeAnswer]:
        if SUBPROTOCOL in request.subprotocols:
            self._chosen.add(request.session_id)
            return succeed(HandshakeAnswer(subprotocol=SUBPROTOCOL))
        return succeed(HandshakeAnswer())

    def abandoned(self, session_id: str) -> None:
        self._chosen.discard(session_id)

    # -- connections ---------------------------------------------------------

    def connection_opened(self, session: ISession) -> None:
        structured = session.session_id in self._chosen
        self._chosen.discard(session.session_id)
        connection = self.visitors.add(session, Mode.STRUCTURED if structured else Mode.PLAIN)
        if connection is None:
            session.close(1008, "too many connections for this visitor")
            return
        if structured:
            self._structured[session.session_id] = _Structured()
        else:
            self._catch_up(connection)

    def connection_closed(self, session: ISession, code: int | None, reason: str) -> None:
        self._chosen.discard(session.session_id)
        self.visitors.remove(session)
        state = self._structured.pop(session.session_id, None)
        if state is not None and state.typing:
            self._quietly(VisitorTyping(self.route, session.client_id, False))

    def message_received(self, session: ISession, message: str | bytes) -> object:
        connection = self.visitors.connection(session)
        if connection is None:
            return None
        state = self._structured.get(session.session_id)
        if state is None:
            return self._plain(session, message)
        if isinstance(message, bytes):
            session.close(1003, "wsdaemon.chat.v1 takes text frames only")
            return None
        if len(message) > MAX_FRAME_BYTES // 4 and \
                len(message.encode("utf-8")) > MAX_FRAME_BYTES:
            session.close(1009, f"frames of at most {MAX_FRAME_BYTES} bytes")
            return None
        request = parse(message)
        if isinstance(request, BadRequest):
            self._bad(session, state, request)
            return None
        state.bad = 0
        self._request(connection, state, request)
        return None

    # -- plain text ----------------------------------------------------------

    def _plain(self, session: ISession, message: str | bytes) -> str | None:
        if isinstance(message, bytes):
            return TEXT_ONLY
        if len(message) > MAX_TEXT_BYTES // 4 and len(message.encode("utf-8")) > MAX_TEXT_BYTES:
            return TOO_LONG.format(limit=MAX_TEXT_BYTES)
        d = self.driver.submit(VisitorMessage(self.route, session.client_id, message))

        def taken(transition: Transition) -> None:
            refusal = _refusal(transition)
            if refusal is not None:
                session.send(REFUSED[refusal.reason].format(limit=refusal.limit))

        def failed(failure: Failure) -> None:
            if failure.check(LaneFull):
                session.send(REFUSED["busy"])
                return
            self._log_failure(failure, session)
            session.send(NOT_STORED)

        d.addCallbacks(taken, failed)
        return None

    def _catch_up(self, connection: VisitorConnection) -> None:
        """Messages written while the visitor was away, then live ones."""
        d = Deferred.fromCoroutine(self._plain_pages(connection))

        def failed(failure: Failure) -> None:
            _log.failure("conversations: could not send {client_id} on {route} what was "
                         "written while it was away", failure, client_id=connection.visitor,
                         route=self.route)
            self.visitors.synced(connection, connection.sent, connection.sent, False)

        d.addErrback(failed)

    async def _plain_pages(self, connection: VisitorConnection) -> None:
        conversation = await self._conversation(connection.visitor)
        start = conversation.delivered_upto if conversation is not None else 0
        connection.sent = after = start
        key = self._key(connection.visitor)
        while True:
            messages = await self.driver.store.messages(key, after=after, limit=PAGE_MESSAGES)
            if not connection.session.is_open:
                return
            for message in messages:
                if message.to_visitor:
                    connection.session.send(message.body)
            if messages:
                after = messages[-1].seq
            if len(messages) == PAGE_MESSAGES:
                continue
            if self.visitors.synced(connection, start, after, False):
                break
            after = connection.sent
        if connection.sent > start:
            self._quietly(VisitorDelivered(self.route, connection.visitor, connection.sent))

    # -- structured ----------------------------------------------------------

    def _bad(self, session: ISession, state: _Structured, bad: BadRequest) -> None:
        state.bad += 1
        if state.bad >= MAX_BAD_REQUESTS:
            session.close(1008, f"{MAX_BAD_REQUESTS} bad requests in a row")
            return
        session.send(error_frame(bad.error, bad.request, bad.id))

    def _request(self, connection: VisitorConnection, state: _Structured,
                 request: Any) -> None:
        session = connection.session
        if isinstance(request, Hello):
            if state.hello or state.reading:
                session.send(error_frame("hello was said already", "hello"))
                return
            self._read(connection, state, "hello", self._hello(connection, state, request))
            return
        if not state.hello:
            session.send(error_frame("say hello first (and wait for welcome)"))
            return
        if isinstance(request, SendMessage):
            self._message(session, request)
        elif isinstance(request, Received | Read):
            self._receipt(session, state, request)
        elif isinstance(request, Typing):
            self._typing(session, state, request.on)
        elif isinstance(request, Contact):
            self._contact(session, request.email)
        elif isinstance(request, History):
            if state.reading:
                session.send(error_frame("one page at a time: wait for the last one",
                                         "history"))
                return
            self._read(connection, state, "history", self._history(connection, request))

    def _read(self, connection: VisitorConnection, state: _Structured, request: str,
              work: Any) -> None:
        """A page read: one at a time per connection; a failure is an error frame."""
        state.reading = True
        d: Deferred[None] = Deferred.fromCoroutine(work)

        def done(result: object) -> object:
            state.reading = False
            return result

        def failed(failure: Failure) -> None:
            _log.failure("conversations: reading a page for {client_id} on {route} failed",
                         failure, client_id=connection.visitor, route=self.route)
            connection.session.send(error_frame("the messages could not be read: ask again",
                                                request))

        d.addBoth(done)
        d.addErrback(failed)

    async def _hello(self, connection: VisitorConnection, state: _Structured,
                     hello: Hello) -> None:
        self.visitors.resync(connection)
        conversation = await self._conversation(connection.visitor)
        last = conversation.last_seq if conversation is not None else 0
        after = min(hello.after, last)
        rows = await self.driver.store.messages(self._key(connection.visitor), after=after,
                                                limit=PAGE_MESSAGES + 1)
        entries, more = page(rows, limit=PAGE_MESSAGES)
        end = entries[-1]["seq"] if entries else after
        available = self.driver.inbox.team.available > 0
        status = str(conversation.status) if conversation is not None else None
        connection.session.send(welcome_frame(status, available, entries, more))
        connection.told_available = available
        state.hello = True
        self.visitors.synced(connection, after, end, more)

    async def _history(self, connection: VisitorConnection, request: History) -> None:
        key = self._key(connection.visitor)
        if request.before is not None:
            rows = await self.driver.store.history(key, before=request.before,
                                                   limit=request.limit + 1)
            entries, more = page(rows, newest=True, limit=request.limit)
            connection.session.send(history_frame(entries, more))
            return
        after = request.after or 0
        catching_up = connection.behind
        if catching_up:
            self.visitors.resync(connection)
        rows = await self.driver.store.messages(key, after=after, limit=request.limit + 1)
        entries, more = page(rows, limit=request.limit)
        connection.session.send(history_frame(entries, more))
        if catching_up:
            end = entries[-1]["seq"] if entries else after
            self.visitors.synced(connection, after, end, more)

    def _message(self, session: ISession, request: SendMessage) -> None:
        client_id = request.id
        if not self.visitors.expect(session, client_id, request.text):
            session.send(refused_frame(client_id, "busy", REFUSED["busy"]))
            return
        d = self.driver.submit(VisitorMessage(self.route, session.client_id, request.text,
                                              client_id))

        def taken(transition: Transition) -> None:
            self.visitors.settle(session, client_id)
            refusal = _refusal(transition)
            if refusal is not None:
                session.send(refused_frame(client_id, refusal.reason,
                                           REFUSED[refusal.reason].format(
                                               limit=refusal.limit)))
                return
            for effect in transition.effects:
                if isinstance(effect, ConfirmVisitorMessage) and effect.duplicate:
                    self._acknowledge_again(session, client_id, effect.seq)

        def failed(failure: Failure) -> None:
            self.visitors.settle(session, client_id)
            if failure.check(LaneFull):
                session.send(refused_frame(client_id, "busy", REFUSED["busy"]))
                return
            self._log_failure(failure, session)
            session.send(error_frame("your message could not be stored: send it again with "
                                     "the same id", "message", client_id))

        d.addCallbacks(taken, failed)

    def _acknowledge_again(self, session: ISession, client_id: str, seq: int) -> None:
        """A resend: acknowledged with the first send's seq and stored time."""
        d = self.driver.store.messages(self._key(session.client_id), after=seq - 1, limit=1)

        def found(rows: list[Any]) -> None:
            at = rows[0].at if rows and rows[0].seq == seq else None
            session.send(ack_frame(client_id, seq, at, duplicate=True))

        def failed(failure: Failure) -> None:
            _log.failure("conversations: reading message {seq} failed", failure, seq=seq)
            session.send(ack_frame(client_id, seq, None, duplicate=True))

        d.addCallbacks(found, failed)

    def _receipt(self, session: ISession, state: _Structured, receipt: Received | Read) -> None:
        """Watermarks only move forward: a receipt already sent is not submitted again."""
        if isinstance(receipt, Read):
            if receipt.upto <= state.read:
                return
            state.read = receipt.upto
            state.received = max(state.received, receipt.upto)
            self._quietly(VisitorRead(self.route, session.client_id, receipt.upto))
        else:
            if receipt.upto <= state.received:
                return
            state.received = receipt.upto
            self._quietly(VisitorDelivered(self.route, session.client_id, receipt.upto))

    def _typing(self, session: ISession, state: _Structured, on: bool) -> None:
        """
        Renewed at most every third of the core's typing timeout (it turns
        the indicator off after the timeout unless renewed).
        """
        now = self.clock.seconds()
        if on and state.typing and state.typing_at is not None and \
                now - state.typing_at < self.driver.settings.typing_timeout / 3:
            return
        if not on and not state.typing:
            return
        state.typing, state.typing_at = on, (now if on else None)
        self._quietly(VisitorTyping(self.route, session.client_id, on))

    def _contact(self, session: ISession, email: str) -> None:
        d = self.driver.submit(LeaveContact(self.route, session.client_id, email))

        def taken(_: Transition) -> None:
            session.send(ok_frame("contact"))

        def failed(failure: Failure) -> None:
            if failure.check(InvalidMove):
                move: Any = failure.value
                session.send(error_frame(move.why or "not now", "contact"))
                return
            if not failure.check(LaneFull):
                self._log_failure(failure, session)
            session.send(error_frame("your address could not be stored: send it again",
                                     "contact"))

        d.addCallbacks(taken, failed)

    # -- helpers -------------------------------------------------------------

    def _key(self, visitor: str) -> str:
        return conversation_id_for(self.route, visitor)

    async def _conversation(self, visitor: str) -> Conversation | None:
        key = self._key(visitor)
        found = self.driver.inbox.conversation(key)
        if found is not None:
            return found
        return await self.driver.store.load(key)

    def _quietly(self, event: VisitorDelivered | VisitorRead | VisitorTyping) -> None:
        """An event nobody answers: a failure is logged (a full lane only at debug)."""

        def failed(failure: Failure) -> None:
            if failure.check(LaneFull):
                _log.debug("conversations: {event} dropped: {why}",
                           event=type(event).__name__, why=failure.getErrorMessage())
                return
            _log.failure("conversations: {event} failed", failure,
                         event=type(event).__name__)

        self.driver.submit(event).addErrback(failed)

    def _log_failure(self, failure: Failure, session: ISession) -> None:
        _log.failure("conversations: a message from {client_id} on {route} was not stored",
                     failure, client_id=session.client_id, route=self.route)


def _refusal(transition: Transition) -> RefuseVisitor | None:
    for effect in transition.effects:
        if isinstance(effect, RefuseVisitor):
            return effect
    return None


class SupportHandle(Protocol):
    """What the factory needs of the running support component."""

    @property
    def driver(self) -> ConversationDriver: ...

    @property
    def visitors(self) -> VisitorSessions: ...


def support_of(bound: SupportHandle | None, context: StrategyContext) -> SupportHandle:
    """
    The running support component a route's strategy is built on: the one
    the factory was made for (the component contributes its factory bound
    to itself). The one place that finds it.

    @raise OptionError: there is none (no C{[operator]} section).
    """
    if bound is None:
        raise OptionError(None, _NEEDS_OPERATOR)
    return bound


@implementer(IStrategyFactory, IOptionCheck)
class ConversationStrategyFactory:
    """
    @param support: the running support component (C{.driver},
        C{.visitors}), or None for a factory that only checks options.
    """

    name = "operator"
    description = ("conversations with human operators (terminal or web console); plain "
                   "text or wsdaemon.chat.v1")

    def __init__(self, support: SupportHandle | None = None) -> None:
        self.support = support

    def check(self, options: Mapping[str, str], context: OptionContext) -> None:
        """
        No route options: the acknowledgement and every other notice are
        conversation settings of C{[operator]} (one per daemon, sent once per
        conversation), so a route's C{ack_message} is refused saying so.
        """
        if "ack_message" in options:
            raise OptionError("ack_message", _ACK_MOVED)
        reject_unknown_options(options, ())
        if self.support is None and not context.has_operator_queue:
            raise OptionError(None, _NEEDS_OPERATOR)

    def create(self, options: Mapping[str, str],
               context: StrategyContext) -> ConversationStrategy:
        self.check(options, OptionContext(context.config_dir, context.route, True))
        support = support_of(self.support, context)
        return ConversationStrategy(support.driver, support.visitors, context.route,
                                    context.clock)
