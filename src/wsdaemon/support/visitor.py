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
  One L{ChatConnection} per structured connection handles its requests.

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

import base64
from collections.abc import Mapping
from json import dumps
from typing import Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from wsdaemon.conversations.events import Identify, VisitorDelivered, VisitorMessage
from wsdaemon.conversations.model import conversation_id_for
from wsdaemon.conversations.profile import Profile, profile_from_claims
from wsdaemon.conversations.transition import Transition
from wsdaemon.errors import BrokerOutcomeUnknown, BrokerUnavailable
from wsdaemon.interfaces import (
    IHandshakeHook,
    IOptionCheck,
    IPushFraming,
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
from wsdaemon.support.bot_settings import BOT_OPTIONS, BotSettings, bot_settings
from wsdaemon.support.bots import Bots
from wsdaemon.support.driver import ConversationDriver
from wsdaemon.support.lanes import LaneFull
from wsdaemon.support.profiles import OPTIONS, ConnectionProfile, VisitorIdentity, visitor_identity
from wsdaemon.support.visitor_chat import (
    MAX_BAD_REQUESTS,
    REFUSED,
    ChatConnection,
    conversation_of,
    log_not_stored,
    log_unless_outage,
    refusal_in,
    submit_quietly,
)
from wsdaemon.support.visitor_delivery import record_page
from wsdaemon.support.visitor_protocol import (
    MAX_TEXT_BYTES,
    PAGE_MESSAGES,
    SUBPROTOCOL,
)
from wsdaemon.support.visitors import Mode, VisitorConnection, VisitorSessions

__all__ = ["MAX_BAD_REQUESTS", "NOT_STORED", "REFUSED", "TEXT_ONLY", "UNCONFIRMED",
           "ConversationStrategy", "ConversationStrategyFactory", "SupportHandle", "support_of"]

_log = Logger(namespace="wsdaemon.support.visitor")

#: What a plain client is told when its message was not stored.
NOT_STORED = "Sorry, your message could not be queued. Please send it again."
#: The store (Redis) stopped answering after the message was sent: it may
#: be stored, and a plain message has no id to recognise a resend by.
UNCONFIRMED = ("Sorry, we could not confirm that your message reached us; it may have. "
               "Please wait for an answer before sending it again.")
#: A plain client's binary message.
TEXT_ONLY = "Only text messages reach an operator."
#: Seconds between reads of what a plain client missed while Redis is away.
CATCH_UP_RETRY = 1.0
TOO_LONG = "Sorry, your message is too long for an operator (at most {limit} bytes)."
_NEEDS_OPERATOR = ("the operator strategy needs an [operator] section (tokens, store) in "
                   "the config")
_ACK_MOVED = ("the acknowledgement is one setting for all conversations now, sent once "
              "per conversation: set ack_message in [operator] instead (without "
              "{position})")


@implementer(IReplyStrategy, IHandshakeHook, IPushFraming)
class ConversationStrategy:
    """
    One route's visitors, on the conversation driver.

    @param driver: the running driver (its store is read for pages).
    @param visitors: the driver's visitor port: connections are added to
        it here and removed when they close.
    @param route: the route's path (the route part of conversation ids).
    @param clock: for typing renewals.
    @param identity: how the route proves who visitors are (C{identify},
        the token's attributes claim).
    @param bot: the route's bot answers first (L{wsdaemon.support.bot}):
        each visitor message says so, and a new episode is the bot's.
    @param bots: the bots, given each stored visitor message's transition
        (they answer those of a bot's episode, and hand over one left with
        the bot on a route that has none any more).
    """

    def __init__(self, driver: ConversationDriver, visitors: VisitorSessions, route: str,
                 clock: IReactorTime, identity: VisitorIdentity | None = None, *,
                 bot: bool = False, bots: Bots | None = None) -> None:
        self.bot = bot
        self.bots = bots
        self.driver = driver
        self.visitors = visitors
        self.route = route
        self.clock = clock
        self.identity = identity or VisitorIdentity()
        self._chats: dict[str, ChatConnection] = {}
        #: Each open connection's profile (its token's claims, kept by
        #: L{VisitorSessions} from the handshake, then what it proved).
        self._profiles: dict[str, ConnectionProfile] = {}

    # -- pushes --------------------------------------------------------------

    def frame_push(self, session_id: str, message: str | bytes) -> str | bytes:
        """
        A push (the admin API's, another daemon's) to a structured visitor
        is a C{{"type": "push", "text"}} frame (C{"base64"} for a binary
        push), not part of the thread; a plain visitor gets it as it is.
        """
        if session_id not in self._chats:
            return message
        if isinstance(message, bytes):
            return dumps({"type": "push", "base64": base64.b64encode(message).decode("ascii")})
        return dumps({"type": "push", "text": message})

    # -- handshake -----------------------------------------------------------

    def connecting(self, request: HandshakeRequest) -> Deferred[HandshakeAnswer]:
        limit = request.limits.max_message_size
        token = self._token_profile(request) if request.claims else None
        if SUBPROTOCOL in request.subprotocols:
            self.visitors.handshake(request.session_id, Mode.STRUCTURED, limit, token)
            return succeed(HandshakeAnswer(subprotocol=SUBPROTOCOL))
        self.visitors.handshake(request.session_id, Mode.PLAIN, limit, token)
        return succeed(HandshakeAnswer())

    def abandoned(self, session_id: str) -> None:
        self.visitors.take_handshake(session_id)

    def _token_profile(self, request: HandshakeRequest) -> Profile | None:
        """The token's name, email (and attributes claim); a bad claim is left out, logged."""
        profile, problems = profile_from_claims(request.claims, self.identity.attributes_claim)
        if problems:
            _log.warn("conversations: the token of {client_id} on {route}: claims left out of "
                      "its profile: {problems}", client_id=request.client_id, route=self.route,
                      problems="; ".join(problems))
        return profile

    # -- connections ---------------------------------------------------------

    def connection_opened(self, session: ISession) -> None:
        token = self.visitors.token_profile(session.session_id)
        mode, max_bytes = self.visitors.take_handshake(session.session_id)
        connection = self.visitors.add(session, mode, max_bytes)
        if connection is None:
            session.close(1008, "too many connections for this visitor")
            return
        profile = self._profiles[session.session_id] = ConnectionProfile(
            self.driver, self.route, session.client_id, self.identity, token)
        if profile.profile is not None and \
                self.driver.inbox.conversation(self._key(session.client_id)) is not None:
            # A live conversation learns a token's change now; any other
            # with the next message (no store read per connect for it).
            submit_quietly(self.driver, Identify(self.route, session.client_id, profile.profile))
        if mode is Mode.STRUCTURED:
            self._chats[session.session_id] = ChatConnection(self.driver, self.visitors,
                                                             connection, self.clock, profile,
                                                             bot=self.bot, bots=self.bots)
        else:
            self._catch_up(connection)

    def connection_closed(self, session: ISession, code: int | None, reason: str) -> None:
        self.visitors.take_handshake(session.session_id)
        self.visitors.remove(session)
        self._profiles.pop(session.session_id, None)
        chat = self._chats.pop(session.session_id, None)
        if chat is not None:
            chat.closed()

    def message_received(self, session: ISession, message: str | bytes) -> object:
        connection = self.visitors.connection(session)
        if connection is None:
            return None
        chat = self._chats.get(session.session_id)
        if chat is None:
            return self._plain(session, message)
        chat.frame_received(message)
        return None

    # -- plain text ----------------------------------------------------------

    def _plain(self, session: ISession, message: str | bytes) -> str | None:
        if isinstance(message, bytes):
            return TEXT_ONLY
        if len(message) > MAX_TEXT_BYTES // 4 and len(message.encode("utf-8")) > MAX_TEXT_BYTES:
            return TOO_LONG.format(limit=MAX_TEXT_BYTES)
        profile = self._profiles.get(session.session_id)
        d = self.driver.submit(VisitorMessage(self.route, session.client_id, message,
                                              profile=None if profile is None
                                              else profile.profile, bot=self.bot))

        def taken(transition: Transition) -> None:
            refusal = refusal_in(transition)
            if refusal is not None:
                session.send(REFUSED[refusal.reason].format(limit=refusal.limit))
            elif self.bots is not None:
                self.bots.answer(transition)

        def failed(failure: Failure) -> None:
            if failure.check(LaneFull):
                session.send(REFUSED["busy"])
                return
            self._log_failure(failure, session)
            session.send(UNCONFIRMED if failure.check(BrokerOutcomeUnknown) else NOT_STORED)

        d.addCallbacks(taken, failed)
        return None

    def _catch_up(self, connection: VisitorConnection) -> None:
        """
        Messages written while the visitor was away, then live ones. Read
        again every C{CATCH_UP_RETRY} seconds while Redis is away and the
        connection open (a plain client has no way to ask again).
        """
        d = Deferred.fromCoroutine(self._plain_pages(connection))

        def failed(failure: Failure) -> None:
            if failure.check(BrokerUnavailable) and connection.session.is_open:
                _log.debug("conversations: what was written while {client_id} on {route} "
                           "was away cannot be read yet: {why}", client_id=connection.visitor,
                           route=self.route, why=failure.getErrorMessage())
                self.clock.callLater(CATCH_UP_RETRY, self._catch_up_again, connection)
                return
            log_unless_outage(failure, "conversations: could not send {client_id} on {route} "
                              "what was written while it was away",
                              client_id=connection.visitor, route=self.route)
            # Live messages flow again (what was held past the bound is dropped).
            while not self.visitors.synced(connection, connection.sent, connection.sent,
                                           False):
                pass

        d.addErrback(failed)

    def _catch_up_again(self, connection: VisitorConnection) -> None:
        if connection.session.is_open:
            self._catch_up(connection)

    async def _plain_pages(self, connection: VisitorConnection) -> None:
        key = self._key(connection.visitor)
        conversation = await conversation_of(self.driver, key)
        # What a plain connection here took counts, recorded or not yet.
        start = max(conversation.delivered_upto if conversation is not None else 0,
                    self.driver.taken.get(key, 0))
        recorded = self.visitors.recorded
        if recorded is not None:
            # Daemons share the store: what another one recorded (before
            # writing it) may not be in this view yet.
            stored = await self.driver.store.load(key)
            if stored is not None:
                start = max(start, stored.delivered_upto)
            connection.had = start  # the visitor has it, maybe through another daemon
        connection.sent = after = start
        while True:
            messages = await self.driver.store.messages(key, after=after, limit=PAGE_MESSAGES)
            if not connection.session.is_open:
                return
            if recorded is not None:
                first = await record_page(recorded.record, self.route, connection, messages)
                if not connection.session.is_open:
                    if first is not None:  # recorded, never written: for the next connection
                        recorded.missed(self.route, connection.visitor, first)
                    return
            for message in messages:
                if message.to_visitor:
                    self.visitors.send(connection, message.body)
            if messages:
                after = messages[-1].seq
            if len(messages) == PAGE_MESSAGES:
                continue
            if self.visitors.synced(connection, start, after, False):
                break
            after = connection.sent
        if connection.sent > start:
            submit_quietly(self.driver,
                           VisitorDelivered(self.route, connection.visitor, connection.sent))

    def _key(self, visitor: str) -> str:
        return conversation_id_for(self.route, visitor)

    def _log_failure(self, failure: Failure, session: ISession) -> None:
        log_not_stored(failure, session, self.route)


class SupportHandle(Protocol):
    """What the factory needs of the running support component."""

    @property
    def driver(self) -> ConversationDriver: ...

    @property
    def visitors(self) -> VisitorSessions: ...

    @property
    def bots(self) -> Bots | None: ...


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

    def check(self, options: Mapping[str, str], context: OptionContext) -> BotSettings | None:
        """
        The route's options say how visitors prove who they are
        (L{wsdaemon.support.profiles}) and whether a bot answers first
        (L{wsdaemon.support.bot_settings}: its rules file is read here).
        The acknowledgement and every other notice are conversation
        settings of C{[operator]} (one per daemon, sent once per
        conversation), so a route's C{ack_message} is refused saying so.

        @return: the route's bot, or None.
        """
        self._identity(options, context)
        return bot_settings(options, context)

    def _identity(self, options: Mapping[str, str], context: OptionContext) -> VisitorIdentity:
        if "ack_message" in options:
            raise OptionError("ack_message", _ACK_MOVED)
        reject_unknown_options(options, (*OPTIONS, *BOT_OPTIONS))
        if self.support is None and "operator" not in context.sections:
            raise OptionError(None, _NEEDS_OPERATOR)
        return visitor_identity(options, context.config_dir)

    def create(self, options: Mapping[str, str],
               context: StrategyContext) -> ConversationStrategy:
        built = OptionContext(context.config_dir, context.route, frozenset({"operator"}))
        identity = self._identity(options, built)
        bot = context.checked if isinstance(context.checked, BotSettings) else \
            bot_settings(options, built)
        support = support_of(self.support, context)
        support.driver.routes.add(context.route)
        bots = support.bots
        if bot is not None:
            if bots is None:
                raise OptionError("bot", "these conversations run no bots")
            bots.serve(context.route, bot)
        elif bots is not None:
            bots.drop(context.route)
        return ConversationStrategy(support.driver, support.visitors, context.route,
                                    context.clock, identity, bot=bot is not None, bots=bots)
