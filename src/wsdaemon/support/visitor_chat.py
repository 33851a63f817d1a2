"""
One structured visitor connection (C{wsdaemon.chat.v1}): its requests
turned into conversation events and pages, and what the daemon answers
(docs/conversations.md, section 7). The frames themselves are
L{wsdaemon.support.visitor_protocol}'s; what the driver sends the
visitor goes through L{VisitorSessions}.

- C{hello} (first, once): a C{welcome} with the conversation's status,
  whether an operator is available and the messages after the client's
  C{after}, one page; deliveries meanwhile are held and follow it.
- C{message}: submitted with the client's id; the acknowledgement (C{ack}
  with C{seq} and time) comes from the driver's confirmation, in effect
  order; a resend's from here, with the first send's time; refusals over a
  cap (or a full lane: C{busy}) as C{refused}; a store failure as an
  C{error} with the id (nothing was stored: send it again).
- C{received}/C{read}: watermarks, each submitted only when it moves.
- C{typing}: renewed at most every third of C{typing_timeout} (the core
  turns it off after the timeout unless renewed; closing turns it off).
- C{contact}, C{history} (one page read at a time), errors for the rest;
- C{identify}: L{ConnectionProfile}'s (kept only with the HMAC of the
  visitor's id); the connection's profile goes with each of its messages;
  L{MAX_BAD_REQUESTS} bad requests in a row close with 1008, a binary frame
  with 1003, a frame over L{MAX_FRAME_BYTES} with 1009.

Also what the plain side shares: the texts of refusals, and submitting an
event nobody answers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from wsdaemon.conversations.effects import ConfirmVisitorMessage, RefuseVisitor
from wsdaemon.conversations.errors import InvalidMove
from wsdaemon.conversations.events import (
    Identify,
    LeaveContact,
    VisitorDelivered,
    VisitorMessage,
    VisitorRead,
    VisitorTyping,
)
from wsdaemon.conversations.model import Conversation, conversation_id_for
from wsdaemon.conversations.transition import Transition
from wsdaemon.errors import BrokerOutcomeUnknown, BrokerUnavailable
from wsdaemon.interfaces import ISession
from wsdaemon.support.bots import Bots
from wsdaemon.support.driver import ConversationDriver
from wsdaemon.support.lanes import LaneFull
from wsdaemon.support.profiles import ConnectionProfile
from wsdaemon.support.visitor_protocol import (
    MAX_FRAME_BYTES,
    PAGE_MESSAGES,
    BadRequest,
    Contact,
    Hello,
    History,
    Identification,
    Read,
    Received,
    Request,
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
from wsdaemon.support.visitors import VisitorConnection, VisitorSessions

__all__ = ["MAX_BAD_REQUESTS", "MAX_EARLY", "REFUSED", "ChatConnection", "conversation_of",
           "log_not_stored", "log_unless_outage", "refusal_in", "submit_quietly"]

_log = Logger(namespace="wsdaemon.support.visitor")

#: Over a cap (nothing stored; the connection stays open), by the core's
#: reason, or C{busy}: too many of the visitor's events wait already.
REFUSED = {
    "unanswered": "You already have {limit} messages waiting for an answer; please wait for "
                  "a reply before sending more.",
    "route_full": "Sorry, the queue is full right now. Please try again later.",
    "inbox_full": "Sorry, the queue is full right now. Please try again later.",
    "busy": "Sorry, too many messages at once. Please wait a moment and send it again.",
}
#: Bad requests in a row before a structured connection is closed (1008).
MAX_BAD_REQUESTS = 10
#: Requests sent after C{hello} that wait for its C{welcome} (a client may
#: send its first message without waiting); more are answered with an error.
MAX_EARLY = 32
#: Seconds between reads of a welcome while Redis is away.
WELCOME_RETRY = 1.0


class ChatConnection:
    """
    @param driver: the running driver (its store is read for pages).
    @param visitors: the driver's visitor port, which holds C{connection}.
    @param connection: this connection's state in C{visitors}.
    @param clock: for typing renewals.
    @param profile: who the visitor is, as the connection proved it.
    @param bot: the route's bot answers first: each message says so.
    @param bots: the bots, given each stored message's transition (they
        answer those of a bot's episode).
    """

    def __init__(self, driver: ConversationDriver, visitors: VisitorSessions,
                 connection: VisitorConnection, clock: IReactorTime,
                 profile: ConnectionProfile | None = None, *, bot: bool = False,
                 bots: Bots | None = None) -> None:
        self._bot = bot
        self._bots = bots
        self._driver = driver
        self._visitors = visitors
        self._connection = connection
        self._session: ISession = connection.session
        self._route = connection.route
        self._visitor = connection.visitor
        self._key = conversation_id_for(connection.route, connection.visitor)
        self._clock = clock
        self.hello = False
        self.reading = False
        self._bad = 0
        self._typing_at: float | None = None
        self._received = 0
        self._read_upto = 0
        self.profile = profile or ConnectionProfile(driver, connection.route,
                                                    connection.visitor)
        self._early: deque[Request] = deque()

    # -- frames --------------------------------------------------------------

    def frame_received(self, message: str | bytes) -> None:
        session = self._session
        if isinstance(message, bytes):
            session.close(1003, "wsdaemon.chat.v1 takes text frames only")
            return
        if len(message) > MAX_FRAME_BYTES // 4 and \
                len(message.encode("utf-8")) > MAX_FRAME_BYTES:
            session.close(1009, f"frames of at most {MAX_FRAME_BYTES} bytes")
            return
        request = parse(message)
        if isinstance(request, BadRequest):
            self._bad += 1
            if self._bad >= MAX_BAD_REQUESTS:
                session.close(1008, f"{MAX_BAD_REQUESTS} bad requests in a row")
                return
            session.send(error_frame(request.error, request.request, request.id))
            return
        self._bad = 0
        self._request(request)

    def closed(self) -> None:
        """The connection closed: a visitor typing there stops typing."""
        if self._typing_at is not None:
            self._typing_at = None
            submit_quietly(self._driver, VisitorTyping(self._route, self._visitor, False))

    def _request(self, request: Request) -> None:
        session = self._session
        if isinstance(request, Hello):
            if self.hello or self.reading:
                session.send(error_frame("hello was said already", "hello"))
                return
            self._read("hello", lambda: self._hello(request))
            return
        if not self.hello:
            if not self.reading:
                session.send(error_frame("say hello first", _kind(request),
                                         getattr(request, "id", None)))
            elif len(self._early) < MAX_EARLY:
                self._early.append(request)  # taken once the welcome is sent
            else:
                session.send(error_frame(f"at most {MAX_EARLY} requests may wait for the "
                                         "welcome: send this one again after it",
                                         _kind(request), getattr(request, "id", None)))
            return
        if isinstance(request, SendMessage):
            self._message(request)
        elif isinstance(request, Received | Read):
            self._receipt(request)
        elif isinstance(request, Typing):
            self._typing(request.on)
        elif isinstance(request, Contact):
            self._contact(request.email)
        elif isinstance(request, Identification):
            self.profile.identify(session, request)
        elif self.reading:
            session.send(error_frame("one page at a time: wait for the last one", "history"))
        else:
            self._read("history", lambda: self._history(request))

    # -- pages ---------------------------------------------------------------

    def _read(self, request: str, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """
        A page read: one at a time; a failure is an error frame (ask
        again). A welcome that cannot be read because Redis is away is read
        again every C{WELCOME_RETRY} seconds while the connection is open
        (clients wait for their welcome; requests sent meanwhile wait too,
        up to C{MAX_EARLY}).
        """
        self.reading = True
        d: Deferred[None] = Deferred.fromCoroutine(work())

        def failed(failure: Failure) -> None:
            if request == "hello" and failure.check(BrokerUnavailable) \
                    and self._session.is_open:
                _log.debug("conversations: the welcome of {client_id} on {route} cannot be "
                           "read yet: {why}", client_id=self._visitor, route=self._route,
                           why=failure.getErrorMessage())
                self._clock.callLater(WELCOME_RETRY, self._read_again, work)
                return  # still reading
            self.reading = False
            log_unless_outage(failure, "conversations: reading a page for {client_id} on "
                              "{route} failed", client_id=self._visitor, route=self._route)
            self._session.send(error_frame("the messages could not be read: ask again",
                                           request))

        def done(result: object) -> object:
            self.reading = False
            return result

        def early(_: object) -> None:
            # What was sent after the hello, in order, now that the welcome
            # is out (or, the hello failed, refused: nothing was taken).
            if self.reading:
                return  # read again later: they wait
            held, self._early = self._early, deque()
            for waiting in held:
                if self.hello:
                    self._request(waiting)
                else:
                    self._session.send(error_frame("say hello again first",
                                                   _kind(waiting),
                                                   getattr(waiting, "id", None)))

        d.addCallbacks(done, failed)
        if request == "hello":
            d.addCallback(early)

    def _read_again(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        if self._session.is_open:
            self._read("hello", work)

    async def _hello(self, hello: Hello) -> None:
        connection = self._connection
        self._visitors.resync(connection)
        conversation = await conversation_of(self._driver, self._key)
        last = conversation.last_seq if conversation is not None else 0
        after = min(hello.after, last)
        rows = await self._driver.store.messages(self._key, after=after,
                                                 limit=PAGE_MESSAGES + 1)
        entries, more = page(rows, limit=PAGE_MESSAGES, max_bytes=connection.max_bytes)
        end = entries[-1]["seq"] if entries else after
        available = self._driver.inbox.team.available > 0
        status = str(conversation.status) if conversation is not None else None
        read_upto, typing = 0, []
        if conversation is not None:
            read_upto = max((seq for _, seq in conversation.read_marks), default=0)
            names = self._visitors.display_names
            typing = [names.get(name, name) for name in conversation.operators_typing()]
        self._visitors.send(connection, welcome_frame(
            status, available, entries, more, self._visitor,
            reply_within=self._visitors.reply_within(self._route), read_upto=read_upto,
            typing=typing, email_known=self._email_known(conversation)))
        connection.told_available = available
        self.hello = True
        self._visitors.synced(connection, after, end, more)

    def _email_known(self, conversation: Conversation | None) -> bool:
        """An address proven on this connection or earlier, or one the visitor left."""
        mine = self.profile.profile
        if mine is not None and mine.email is not None:
            return True
        if conversation is None:
            return False
        known = conversation.profile
        return conversation.contact is not None or (known is not None and known.email is not None)

    async def _history(self, request: History) -> None:
        """
        Scrolling back (C{before}) reads; paging on (C{after}) a connection
        that is behind also brings it back to live messages at the end.
        """
        connection = self._connection
        if request.before is not None:
            rows = await self._driver.store.history(self._key, before=request.before,
                                                    limit=request.limit + 1)
            entries, more = page(rows, newest=True, limit=request.limit,
                                 max_bytes=connection.max_bytes)
            self._visitors.send(connection, history_frame(entries, more))
            return
        after = request.after or 0
        catching_up = connection.behind
        if catching_up:
            self._visitors.resync(connection)
        rows = await self._driver.store.messages(self._key, after=after,
                                                 limit=request.limit + 1)
        entries, more = page(rows, limit=request.limit, max_bytes=connection.max_bytes)
        self._visitors.send(connection, history_frame(entries, more))
        if catching_up:
            end = entries[-1]["seq"] if entries else after
            self._visitors.synced(connection, after, end, more)

    # -- events --------------------------------------------------------------

    def _message(self, request: SendMessage) -> None:
        session, client_id = self._session, request.id
        if not self._visitors.expect(session, client_id, request.text):
            session.send(refused_frame(client_id, "busy", REFUSED["busy"]))
            return
        d = self._driver.submit(VisitorMessage(self._route, self._visitor, request.text,
                                               client_id, profile=self.profile.profile,
                                               bot=self._bot))

        def taken(transition: Transition) -> None:
            self._visitors.settle(session, client_id)
            refusal = refusal_in(transition)
            if refusal is not None:
                text = REFUSED[refusal.reason].format(limit=refusal.limit)
                session.send(refused_frame(client_id, refusal.reason, text))
                return
            for effect in transition.effects:
                if isinstance(effect, ConfirmVisitorMessage) and effect.duplicate:
                    self._acknowledge_again(client_id, effect.seq)
            if self._bots is not None:
                self._bots.answer(transition)

        def failed(failure: Failure) -> None:
            self._visitors.settle(session, client_id)
            if failure.check(LaneFull):
                session.send(refused_frame(client_id, "busy", REFUSED["busy"]))
                return
            log_not_stored(failure, session, self._route)
            error = ("your message could not be confirmed: send it again with the same id "
                     "(it is not stored twice)" if failure.check(BrokerOutcomeUnknown) else
                     "your message could not be stored: send it again with the same id")
            session.send(error_frame(error, "message", client_id))

        d.addCallbacks(taken, failed)

    def _acknowledge_again(self, client_id: str, seq: int) -> None:
        """A resend: acknowledged with the first send's seq and stored time."""
        session = self._session
        d = self._driver.store.messages(self._key, after=seq - 1, limit=1)

        def found(rows: list[Any]) -> None:
            at = rows[0].at if rows and rows[0].seq == seq else None
            session.send(ack_frame(client_id, seq, at, duplicate=True))

        def failed(failure: Failure) -> None:
            log_unless_outage(failure, "conversations: reading message {seq} failed", seq=seq)
            session.send(ack_frame(client_id, seq, None, duplicate=True))

        d.addCallbacks(found, failed)

    def _receipt(self, receipt: Received | Read) -> None:
        """Watermarks only move forward: a receipt already sent is not submitted again."""
        if isinstance(receipt, Read):
            if receipt.upto <= self._read_upto:
                return
            self._read_upto = receipt.upto
            self._received = max(self._received, receipt.upto)
            submit_quietly(self._driver, VisitorRead(self._route, self._visitor, receipt.upto))
            return
        if receipt.upto <= self._received:
            return
        self._received = receipt.upto
        submit_quietly(self._driver, VisitorDelivered(self._route, self._visitor, receipt.upto))

    def _typing(self, on: bool) -> None:
        """
        Renewed at most every third of the core's typing timeout (it turns
        the indicator off after the timeout unless renewed).
        """
        now = self._clock.seconds()
        if on and self._typing_at is not None and \
                now - self._typing_at < self._driver.settings.typing_timeout / 3:
            return
        if not on and self._typing_at is None:
            return
        self._typing_at = now if on else None
        submit_quietly(self._driver, VisitorTyping(self._route, self._visitor, on))

    def _contact(self, email: str) -> None:
        session = self._session
        d = self._driver.submit(LeaveContact(self._route, self._visitor, email))

        def taken(_: Transition) -> None:
            session.send(ok_frame("contact"))

        def failed(failure: Failure) -> None:
            if failure.check(InvalidMove):
                move: Any = failure.value
                session.send(error_frame(move.why or "not now", "contact"))
                return
            if not failure.check(LaneFull):
                log_not_stored(failure, session, self._route)
            session.send(error_frame("your address could not be stored: send it again",
                                     "contact"))

        d.addCallbacks(taken, failed)


# -- shared with the plain side ------------------------------------------------


async def conversation_of(driver: ConversationDriver, key: str) -> Conversation | None:
    """The conversation as committed: live ones from the inbox, others from the store."""
    found = driver.inbox.conversation(key)
    if found is not None:
        return found
    return await driver.store.load(key)


def refusal_in(transition: Transition) -> RefuseVisitor | None:
    for effect in transition.effects:
        if isinstance(effect, RefuseVisitor):
            return effect
    return None


def submit_quietly(driver: ConversationDriver,
                   event: VisitorDelivered | VisitorRead | VisitorTyping | Identify) -> None:
    """An event nobody answers: a failure is logged (a full lane only at debug)."""

    def failed(failure: Failure) -> None:
        if failure.check(LaneFull):
            _log.debug("conversations: {event} dropped: {why}", event=type(event).__name__,
                       why=failure.getErrorMessage())
            return
        log_unless_outage(failure, "conversations: {event} failed", event=type(event).__name__)

    driver.submit(event).addErrback(failed)


def log_unless_outage(failure: Failure, message: str, **fields: Any) -> None:
    """
    A failure, logged with its traceback; but a Redis outage, which the link
    logs once, only at debug level: not a traceback per visitor or request
    while Redis is away (issue 21).
    """
    if failure.check(BrokerUnavailable):
        _log.debug(message + " (Redis unavailable: {why})", why=failure.getErrorMessage(),
                   **fields)
        return
    _log.failure(message, failure, **fields)


def log_not_stored(failure: Failure, session: ISession, route: str) -> None:
    """
    A visitor's event the store did not take: a traceback, except in a
    Redis outage, which the link logs once (not once per message).
    """
    if failure.check(BrokerUnavailable):
        _log.debug("conversations: a message from {client_id} on {route} was not stored "
                   "or not confirmed: {why}", client_id=session.client_id, route=route,
                   why=failure.getErrorMessage())
        return
    _log.failure("conversations: a message from {client_id} on {route} was not stored",
                 failure, client_id=session.client_id, route=route)


def _kind(request: Request) -> str:
    """The protocol's name of a request (C{message}, C{typing}...)."""
    return {SendMessage: "message", Received: "received", Read: "read", Typing: "typing",
            Contact: "contact", History: "history", Hello: "hello"}.get(type(request),
                                                                         "request")
