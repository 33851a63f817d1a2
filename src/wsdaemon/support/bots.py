"""
The routes' bots (issue 22, item 5), as the support component holds them:
which route has which bot (L{wsdaemon.support.bot.RouteBot} for rules,
L{wsdaemon.support.hook_bot.HookBot} for the team's backend), what they
did (counts for /metrics), and the two ways they hear of conversations.

- The visitor's strategy hands each committed transition of a visitor
  message to L{Bots.answer}: a visitor message of a conversation the bot
  has (C{with_bot}) goes to its route's bot. Whatever the visitor's client
  (plain or C{wsdaemon.chat.v1}), the bot answers only what is stored, and
  only on the daemon the visitor wrote to (with daemons sharing Redis, the
  others adopt the commit but do not answer it).
- L{Bots} is the driver's operator port (L{IOperatorPort}): it passes every
  notice on to the operators' hub, and makes a route's bot forget an
  episode the operators have taken (whichever daemon's commit it was); a
  backend bot also hears of its own committed replies (its context).

A bot's episode on a route that has no bot any more (the option removed,
then a restart or reload) is handed over at the visitor's next message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import fail
from twisted.internet.interfaces import IReactorTCP, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from wsdaemon.conversations.effects import NotifyOperators, NotifyTeam
from wsdaemon.conversations.events import Handoff
from wsdaemon.conversations.model import Author, Status
from wsdaemon.conversations.transition import Transition
from wsdaemon.strategies.webhook.client import Poster, TreqPoster
from wsdaemon.strategies.webhook.delivery import DeliveryError
from wsdaemon.strategies.webhook.options import WebhookSettings, trust_root
from wsdaemon.strategies.webhook.stats import HookStats
from wsdaemon.support.bot import DEFAULT_MAX_EPISODES, RouteBot, Submit
from wsdaemon.support.bot_settings import BotSettings
from wsdaemon.support.hook_bot import HookBot
from wsdaemon.support.ports import IOperatorPort, IVisitorPort

__all__ = ["GONE", "MAX_COUNTED_ROUTES", "Bots", "Posters"]

_log = Logger(namespace="wsdaemon.support.bot")

#: The reason operators read when a route has no bot any more.
GONE = "the route has no bot any more"
#: Routes counted apart; more are counted as "(other)" (routes come from the
#: config: a guard).
MAX_COUNTED_ROUTES = 100

#: Makes the poster a backend bot's requests go through.
Posters = Callable[[WebhookSettings], Poster]


def _unreachable(url: str, headers: object, body: bytes) -> Any:
    return fail(DeliveryError("unreachable", "this reactor cannot make HTTP connections"))


@implementer(IOperatorPort)
class Bots:
    """
    The routes' bots, as the driver's operator port: every notice goes to
    C{operators} first, then to the bots.

    @param operators: the operators' port (the hub).
    @param visitors: the visitors' port, shown the bot typing.
    @param submit: the driver's C{submit} (set by L{attach} when the
        driver is built after this).
    @param posters: makes a backend bot's poster (default: Twisted's HTTP
        client on C{clock}, when it is a reactor that connects).
    """

    def __init__(self, operators: IOperatorPort, clock: IReactorTime,
                 submit: Submit | None = None,
                 max_episodes: int = DEFAULT_MAX_EPISODES,
                 visitors: IVisitorPort | None = None,
                 posters: Posters | None = None) -> None:
        self._operators = operators
        self._posters = posters or self._poster
        self._visitors = visitors
        self._clock = clock
        self._submit = submit
        self._max_episodes = max_episodes
        self.routes: dict[str, RouteBot | HookBot] = {}
        #: (route, outcome) -> how many (L{OUTCOMES}), across reloads.
        self.counts: dict[tuple[str, str], int] = {}
        self._counted: set[str] = set()

    def count(self, route: str, outcome: str) -> None:
        """One more C{outcome} (of L{OUTCOMES}) on C{route}."""
        if route not in self._counted:
            if len(self._counted) >= MAX_COUNTED_ROUTES:
                route = "(other)"
            self._counted.add(route)
        self.counts[(route, outcome)] = self.counts.get((route, outcome), 0) + 1

    def attach(self, submit: Submit) -> None:
        self._submit = submit

    def _poster(self, settings: WebhookSettings) -> Poster:
        clock: Any = self._clock
        if not IReactorTCP.providedBy(clock):
            return _unreachable
        trust = trust_root(settings.ca_pem) if settings.ca_pem is not None else None
        return TreqPoster(clock, settings.max_response, settings.connect_timeout,
                          settings.max_requests, trust)

    def hooks(self) -> list[tuple[str, HookStats]]:
        """@return: the backend bots' requests, by route (for /metrics)."""
        return [(route, bot.hook_stats) for route, bot in sorted(self.routes.items())
                if isinstance(bot, HookBot)]

    def serve(self, route: str, settings: BotSettings) -> RouteBot | HookBot:
        """
        The route's bot from now (one it had is replaced: its episodes
        forgotten; a backend bot's unanswered ones handed over). Each
        route's strategy, built or rebuilt by a reload, serves its bot or
        drops the one it had; a backend bot whose options did not change is
        kept.
        """
        if self._submit is None:
            raise RuntimeError("Bots.attach(driver.submit) first")
        old = self.routes.get(route)
        if isinstance(old, HookBot) and old.settings == settings:
            return old  # a reload that left it as it was: its requests go on
        self.drop(route)
        signal = self._visitors.tell if self._visitors is not None else None
        bot: RouteBot | HookBot
        if settings.backend is not None:
            poster = self._posters(settings.backend.webhook)
            bot = HookBot(route, settings, self._clock, self._submit, poster,
                          self._max_episodes, self.count, signal)
        else:
            bot = RouteBot(route, settings, self._clock, self._submit, self._max_episodes,
                           self.count, signal)
        self.routes[route] = bot
        return bot

    def stop(self) -> None:
        """The daemon stops: each route's bot makes the handoffs it still owes."""
        for bot in self.routes.values():
            bot.stop()

    def drop(self, route: str) -> None:
        """The route has no bot from now (a reload removed it): its episodes forgotten."""
        old = self.routes.pop(route, None)
        if old is not None:
            old.close()

    # -- IOperatorPort -------------------------------------------------------

    def notify(self, effect: NotifyOperators) -> None:
        self._operators.notify(effect)
        conversation = effect.conversation
        bot = self.routes.get(conversation.route)
        if bot is None:
            return
        if not (conversation.with_bot and conversation.status is Status.OPEN):
            bot.forget(conversation.conversation_id)
        elif isinstance(bot, HookBot) and effect.message is not None:
            bot.seen(conversation, effect.message)

    def team_changed(self, effect: NotifyTeam) -> None:
        self._operators.team_changed(effect)

    # -- the visitor's messages ----------------------------------------------

    def answer(self, transition: Transition) -> None:
        """
        A visitor message's transition, committed on this daemon: the bot
        answers it if the conversation is the bot's (never raises).
        """
        for effect in transition.effects:
            if isinstance(effect, NotifyOperators):
                try:
                    self._heard(effect)
                except Exception:
                    _log.failure("bot on {route}: a visitor message could not be answered",
                                 route=effect.conversation.route)

    def _heard(self, effect: NotifyOperators) -> None:
        conversation = effect.conversation
        message = effect.message
        if message is None or message.author is not Author.VISITOR or effect.operator is not None:
            return
        if not (conversation.with_bot and conversation.status is Status.OPEN):
            return
        bot = self.routes.get(conversation.route)
        if bot is not None:
            bot.heard(conversation, message)
        elif self._submit is not None:
            self.count(conversation.route, "gone")
            d = self._submit(Handoff(conversation.route, conversation.visitor, GONE))
            d.addErrback(lambda f: _log.failure("conversations: handing over {route}'s bot "
                                                "episode failed", f, route=conversation.route))
