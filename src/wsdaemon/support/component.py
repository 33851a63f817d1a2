"""
The support component: conversations running in a daemon.

Built by the assembly from the C{[operator]} section's values when it
chooses C{model = conversations}: the SQLite conversation store (the same
file as the queue's, whose items and messages it takes over on its first
start), or with C{[broker] backend = redis} the Redis store on the
broker's link and the feed that follows the other daemons' commits
(L{wsdaemon.support.redis_feed}), the driver with its ports (the visitors' sessions, the operators'
hub), the operator channel, the C{operator} strategy bound to the driver,
and the metrics collector. The service starts it before it listens and
stops it after the last connection closed; a reload keeps it (the store,
the driver and every conversation) and hands it the new settings.

What the assembly and the service see of it is L{IComponent}: what it
mounts (L{SupportComponent.contribute}: the C{operator} strategy's factory,
the channel, the web inbox, the collector), C{start}/C{stop}, C{update} on
a reload, and C{health}.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Protocol

from autobahn.twisted.resource import WebSocketResource
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from wsdaemon.config import ASSETS_PATH, ConfigError, DaemonConfig, ProtocolSettings
from wsdaemon.conversations.inbox import Inbox
from wsdaemon.credentials import example_names
from wsdaemon.errors import BrokerOutcomeUnknown, BrokerUnavailable
from wsdaemon.interfaces import Contribution, IComponent, IStrategyFactory
from wsdaemon.pages import StaticPage, inbox_assets, render_page, widget_assets
from wsdaemon.support.bots import Bots
from wsdaemon.support.canned import CannedReplies, read_canned
from wsdaemon.support.channel import OperatorChannelFactory
from wsdaemon.support.driver import ConversationDriver
from wsdaemon.support.hub import OperatorHub
from wsdaemon.support.metrics import ConversationCollector, ConversationMeasures
from wsdaemon.support.ports import IConversationStore
from wsdaemon.support.redis_feed import EVENTS_KEPT, ConversationFeed, FeedLink
from wsdaemon.support.redis_store import RedisConversationStore
from wsdaemon.support.redis_team import TeamLink, TeamPresence
from wsdaemon.support.reply_times import ReplyTimes
from wsdaemon.support.roster import Roster
from wsdaemon.support.settings import OPERATOR_SECTION, OperatorSettings, operator_settings
from wsdaemon.support.store import SQLiteConversationStore
from wsdaemon.support.visitor import ConversationStrategyFactory
from wsdaemon.support.visitors import VisitorSessions

__all__ = ["START_RETRY", "StoreUnavailableError", "SupportComponent"]

#: Seconds between tries to load the conversations while Redis cannot be
#: used at start.
START_RETRY = 1.0

_log = Logger(namespace="wsdaemon.conversations")


class StoreUnavailableError(Exception):
    """The conversations' SQLite file cannot be opened: C{str()} names it and why."""


def _channel_limits(protocol: ProtocolSettings, operator: OperatorSettings) -> ProtocolSettings:
    """The channel's limits: the section's, with the daemon's origin checks."""
    return replace(protocol, max_message_size=operator.max_message_size,
                   max_frame_size=operator.max_message_size,
                   max_outbound_buffer=operator.max_outbound_buffer)


def _canned(settings: OperatorSettings) -> CannedReplies:
    if settings.canned_path is None:
        return CannedReplies(())
    return read_canned(settings.canned_path)


class SharedLink(FeedLink, TeamLink, Protocol):
    """The broker's link as the component uses it (L{wsdaemon.broker.link.RedisLink})."""


@implementer(IComponent)
class SupportComponent:
    """
    @param settings: the C{[operator]} section.
    @param reactor: the reactor (time, threads for the store, the channel).
    @param store: where conversations are kept (default: the SQLite file
        the section names, or Redis with a link).
    @param link: the broker's link, when daemons share Redis: the store is
        Redis (under the link's prefix), the other daemons' commits come in
        through the link's event stream, and the team's entries are kept
        in Redis keys, beating every C{heartbeat} seconds.

    @ivar driver: runs the conversations.
    @ivar started: whether the store is open and the conversations loaded.
    """

    name = "conversations"

    def __init__(self, settings: OperatorSettings, reactor: Any, *,
                 store: IConversationStore | None = None,
                 link: SharedLink | None = None, heartbeat: float = 2.0) -> None:
        self.settings = settings
        self.reactor = reactor
        bounds = settings.conversations.bounds
        #: With Redis: the other daemons' commits in, this one's news out.
        self.feed: ConversationFeed | None = None
        self.team: TeamPresence | None = None
        if link is not None:
            shared = RedisConversationStore(link, link.prefix, reactor, bounds,
                                            events_kept=EVENTS_KEPT)
            self.feed = ConversationFeed(link, shared, reactor)
            self.team = TeamPresence(link, reactor, heartbeat)
            self.feed.on_team = self.team.record
            store = shared
        self.store: IConversationStore = (
            store if store is not None
            else SQLiteConversationStore(settings.store_path, reactor, bounds))
        self.canned = _canned(settings)
        inbox = Inbox(settings.conversations)
        self.visitors = VisitorSessions(inbox, reactor)
        self.visitors.display_names = dict(settings.display_names)
        #: What visitors are told as "we usually reply within".
        self.reply_times = ReplyTimes(reactor)
        self.visitors.reply_within = self.reply_times.reply_within
        self.operators = OperatorHub(inbox, reactor,
                                     display_names=dict(settings.display_names))
        self.operators.presence = self.team
        # Whether a conversation's visitor is connected, in every summary.
        self.visitors.presence.shared = link is not None
        self.operators.visitor_state = self.visitors.presence.state
        self.visitors.presence.on_change = self.operators.visitor_presence_changed
        self.measures = ConversationMeasures()
        self.measures.on_first_response = self.reply_times.observe
        #: The routes' bots (route option bot): the driver's operator port,
        #: passing every notice on to the hub.
        self.bots = Bots(self.operators, reactor, visitors=self.visitors)
        feed = self.feed
        # The configured operators are team members from the start (offline
        # until they connect), on every daemon alike.
        self.driver = ConversationDriver(
            self.store, inbox, reactor, self.visitors, self.bots, self.measures,
            peers=feed, roster=sorted(set(settings.tokens.values())))
        if feed is not None:
            feed.attach(self.driver)
            # An operator still connected here stays available whatever
            # another daemon says of its own connections.
            feed.holds = lambda name: bool(self.operators.links_of(name))
        self.bots.attach(self.driver.submit)
        if link is not None:
            # Daemons share the store: a plain visitor's delivery is
            # recorded before it is written (no reply twice after a hop).
            self.visitors.record_before_writing(self.driver.submit)
        #: The configured operators in the team as a reload changes them.
        self.roster = Roster(self.driver)
        self.operators.on_team = self.roster.check
        self.collector = ConversationCollector(self.measures, lambda: self.driver.inbox,
                                               reactor.seconds, self.bots.counts,
                                               self.bots.hooks)
        self._channel: OperatorChannelFactory | None = None
        self._stopping = False
        self.started = False

    # -- life ----------------------------------------------------------------

    def start(self) -> Deferred[None]:
        """
        Open the store (migrating the queue's records on the first start)
        and load the live conversations.

        With Redis, a start that finds Redis unavailable (down, loading)
        is tried again every L{START_RETRY} seconds until it answers, as
        the broker's link reconnects: the daemon serves other routes
        meanwhile, and visitors are told to try again.

        @return: a Deferred firing with None once conversations are served.
        """
        names = example_names(self.settings.tokens)
        if names:
            _log.warn("{names}: the shipped example operator token(s), known to anyone who "
                      "read the README; fine on loopback for a try, refused on any other "
                      "listener: make your own (openssl rand -hex 24)", names=", ".join(names))
        d = (self.driver.start() if self.feed is None
             else Deferred.fromCoroutine(self._start_on_redis()))

        def ready(_: None) -> None:
            self.started = True
            if self.feed is not None:
                self.feed.ready()
            if self.team is not None:
                self.team.start(self.driver)

        d.addCallback(ready)
        if self.feed is None:
            d.addErrback(self._cannot_open)
        return d

    def _cannot_open(self, failure: Failure) -> None:
        raise StoreUnavailableError(
            f"cannot open the operator store {self.settings.store_path}: "
            f"{failure.getErrorMessage() or failure.value!r}")

    async def _start_on_redis(self) -> None:
        told = False
        while True:
            try:
                await self.driver.start()
                return
            except (BrokerUnavailable, BrokerOutcomeUnknown) as why:
                if self._stopping:
                    return
                if not told:
                    told = True
                    _log.warn("conversations: Redis cannot be used yet ({why}); loading them "
                              "again every {delay:g} s until it answers",
                              why=str(why), delay=START_RETRY)
                await deferLater(self.reactor, START_RETRY, lambda: None)
                if self._stopping:
                    return

    def stop(self) -> Deferred[None]:
        """
        Let the events under way finish and close the store. (The bots
        first make the handoffs they still owe.)

        @return: a Deferred firing with None once everything is written.
        """
        self.bots.stop()
        self._stopping = True
        self.started = False
        if self.feed is not None:
            self.feed.stop()
        if self.team is not None:
            self.team.stop()
        return self.driver.stop()

    def update(self, config: DaemonConfig) -> None:
        """
        C{config} took effect (a reload, or the first build): the new
        routing, notices, caps, canned replies and operators' tokens apply
        to the next event and the next connection; the store, the
        conversations and the team stay. An operator whose token was added
        joins the team at once (offline; told to the other daemons too),
        one whose token was removed leaves it once offline and free
        (L{Roster}). (Each route's bot is served again,
        its rules read again, as its strategy is built.)
        """
        settings = operator_settings(config)
        if settings is None:
            return
        for warning in settings.ignored.values():
            _log.warn("{warning}", warning=warning)
        canned = _canned(settings)
        self.settings = settings
        self.canned = canned
        self.visitors.display_names = dict(settings.display_names)
        self.driver.inbox.settings = settings.conversations
        self.driver.settings = settings.conversations
        if self._channel is not None:
            self._channel.update(dict(settings.tokens), dict(settings.display_names),
                                 canned, _channel_limits(config.protocol, settings))
            self._channel.path = settings.path
        self.roster.update(settings.tokens.values())

    # -- what the daemon mounts ----------------------------------------------

    @property
    def strategies(self) -> dict[str, IStrategyFactory]:
        """
        @return: the strategy factories the component serves, by name
            (C{operator}, bound to this component).
        """
        return {"operator": ConversationStrategyFactory(self)}

    def contribute(self, config: DaemonConfig) -> Contribution:
        """
        @return: the C{operator} strategy, the operator channel at the
            section's C{path}, the web inbox at its C{console_path} (its
            modules under the assets' path), the chat widget's files (under
            the assets' path too), and the conversations' collector.
        @raise ConfigError: C{config} names another store (a reload): only
            a restart opens another.
        """
        settings = operator_settings(config) or self.settings
        if settings.store_path != self.settings.store_path:
            raise ConfigError(config.path, "the operator store changed: restart to apply",
                              section=OPERATOR_SECTION, key="store")
        channel = self.channel(config.protocol)
        channel.requests.route_limits = {
            route.path: route.protocol.max_message_size for route in config.routes
            if route.strategy_name == "operator"}
        inbox = StaticPage(render_page("inbox/inbox.html", {"channel": settings.path}))
        return Contribution(
            strategies=self.strategies,
            resources={settings.path: WebSocketResource(channel),
                       f"{ASSETS_PATH}/inbox": inbox_assets(),
                       **widget_assets(ASSETS_PATH),
                       settings.console_path: inbox},
            collectors=(self.collector,), channel=channel)

    def channel(self, protocol: ProtocolSettings) -> OperatorChannelFactory:
        """
        @param protocol: the daemon's protocol settings, of which the
            channel takes the origin checks; its limits are the section's.
        @return: the operator channel's WebSocket server factory: made
            once, with the section's tokens and limits, and given the new
            ones by L{update}.
        """
        if self._channel is None:
            operator = self.settings
            self._channel = OperatorChannelFactory(self.driver, self.operators,
                                                   dict(operator.tokens),
                                                   dict(operator.display_names),
                                                   self.canned,
                                                   _channel_limits(protocol, operator),
                                                   reactor=self.reactor)
            self._channel.path = operator.path
        return self._channel

    def health(self) -> dict[str, Any]:
        """
        @return: what /healthz says of conversations, under
            C{conversations}; with Redis, what the feed took of the other
            daemons' commits (C{taken}), skipped of its own (C{skipped}),
            found missing in the stream (C{missed}), and the operators of
            gone daemons it let go (C{let_go}).
        """
        counts = self.driver.inbox.status_counts()
        health: dict[str, Any] = {"started": self.started, "live": sum(counts.values()),
                                  **counts}
        if self.feed is not None and self.team is not None:
            health["feed"] = {"taken": self.feed.taken, "skipped": self.feed.skipped,
                              "missed": self.feed.missed, "let_go": self.team.let_go}
        return {"conversations": health}
