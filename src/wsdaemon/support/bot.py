"""
Bot first (issue 22, item 5): a support route's bot answers a new episode
before the operators do, from a scripted rules file (route option
C{bot = FILE}, L{wsdaemon.support.bot_settings}), and hands over to them.

This module is one route's bot (L{RouteBot}); L{wsdaemon.support.bots}
gives it the visitor messages of its episodes and tells it when one
leaves it. A route's bot, for a visitor message:

1. a handoff phrase in it ("I want a human"): L{Handoff} at once, the
   rules not asked;
2. else the rules answer it, through the scripted engine itself
   (L{ScriptedStrategy.answer}, one engine per route; each episode is one
   of its "connections", so C{nth}, C{once}, C{cycle} and C{{counter}}
   count in the episode; its C{[[greeting]]} go first, when the episode's
   first message opens it). Each message the rule sends, now or after its
   C{delay}, is a L{BotReply} (stored, then delivered, and in the thread
   operators read), named C{bot_name};
3. a rule with C{handoff} hands over after its messages; a message no rule
   answers hands over too (C{bot_unmatched = handoff}, the default) or
   waits for an operator (C{silent}).

While a reply waits for its C{delay}, the visitor's structured connections
see the bot typing (C{{"type": "typing", "on": true, "name": bot_name}},
off once the last waiting reply went or the episode left the bot): the
signal goes straight to this daemon's visitor port, as it is nothing the
thread keeps.

An episode leaves the bot when the operators have the conversation (the
handoff, an operator's reply, assignment or snooze) or it is resolved: its
delayed replies are cancelled, and one already on its way is refused by
the core (the bot stays quiet). Faults cannot be in a bot's rules (its
loader refuses them).

What waits for a delay (and a rule's handoff after it) is stored as owed
(L{BotPending}) before anything of the answer is sent; a silent answer
says it owes nothing. So a bot that is gone before it is done (the daemon
stopped or crashed, a reload rebuilt it, the bound dropped the episode)
leaves no conversation with the bot: the core hands it over once it is
overdue (L{wsdaemon.conversations.bot_events}); a handoff owed is made at
once when this bot is closed or drops the episode.

Bounded: each route's bot remembers at most C{max_episodes} episodes
(L{DEFAULT_MAX_EPISODES}), least recently active dropped first (its
delayed replies cancelled; the next message starts its counters again,
without a second greeting). The counters are not stored: a restart
starts them again too.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from wsdaemon.conversations.events import BotPending, BotReply
from wsdaemon.conversations.model import Conversation, Message
from wsdaemon.interfaces import ISession
from wsdaemon.strategies.scripted.rules import Rule
from wsdaemon.strategies.scripted.strategy import ScriptedStrategy
from wsdaemon.support.bot_episodes import (
    ASKED,
    DEFAULT_MAX_EPISODES,
    Count,
    Episodes,
    Signal,
    Submit,
)
from wsdaemon.support.bot_settings import BotSettings, Unmatched

__all__ = ["ASKED", "DEFAULT_MAX_EPISODES", "OUTCOMES", "UNMATCHED", "Count", "RouteBot",
           "Signal", "Submit"]

#: The reason operators read when no rule answered.
UNMATCHED = "no rule of the bot answered the visitor's message"

#: What the bots count per route (for /metrics): an episode the bot opened
#: with, a reply sent, and each kind of handoff (a phrase, a rule's
#: handoff, nothing answered, no bot).
OUTCOMES = ("episode", "reply", "asked", "rule", "unmatched", "gone")


@implementer(ISession)
class _Episode:
    """
    One episode of one conversation, as the scripted engine sees it: a
    "connection" whose messages become the bot's replies.

    @ivar handoff: (why, messages still to send first, when the last is
        due) once a rule hands over after delayed messages.
    @ivar waiting: the rules' messages still waiting for their delay (the
        visitor sees the bot typing meanwhile).
    """

    __slots__ = ("_bot", "answering", "client_id", "connected_at", "conversation_id", "handoff",
                 "is_open", "last_seq", "opened_at", "peer", "route", "said", "sent", "session_id",
                 "waiting")

    def __init__(self, bot: RouteBot, conversation: Conversation, now: float) -> None:
        self._bot = bot
        self.conversation_id = conversation.conversation_id
        self.opened_at = conversation.opened_at
        self.session_id = f"bot:{conversation.conversation_id}:{conversation.opened_at!r}"
        self.client_id = conversation.visitor
        self.route = conversation.route
        self.peer = "bot"
        self.connected_at = now
        self.is_open = True
        self.last_seq = 0
        self.sent = 0
        self.waiting = 0
        #: The engine is answering now: what it sends is not a delayed message.
        self.answering = False
        #: What it sent while answering, sent once what waits is stored as owed.
        self.said: list[str | bytes] = []
        self.handoff: tuple[str, int, float] | None = None

    def send(self, message: str | bytes) -> bool:
        if not self.is_open:
            return False
        self._bot.say(self, message)
        return True

    def close(self, code: int = 1000, reason: str = "") -> None:
        """A bot's rules cannot close (the loader refuses close)."""


class RouteBot:
    """
    One route's bot.

    @param submit: the driver's C{submit}.
    @param count: told (route, outcome) of each reply and handoff submitted.
    @param signal: shows the visitor the bot typing (the visitor port's
        C{tell}).
    """

    def __init__(self, route: str, settings: BotSettings, clock: IReactorTime, submit: Submit,
                 max_episodes: int = DEFAULT_MAX_EPISODES,
                 count: Count | None = None, signal: Signal | None = None) -> None:
        self.route = route
        self.settings = settings
        self._clock = clock
        self._submit = submit
        if settings.rules is None:
            raise ValueError("a bot of rules needs its rules (a backend bot is a HookBot)")
        self._rules = settings.rules
        self._engine = ScriptedStrategy(settings.rules, clock)
        self._episodes: Episodes[_Episode] = Episodes(
            route, settings, submit, self._make, self._dropped, max_episodes, count, signal)

    def __len__(self) -> int:
        return len(self._episodes)

    def _make(self, conversation: Conversation) -> _Episode:
        return _Episode(self, conversation, self._clock.seconds())

    def heard(self, conversation: Conversation, message: Message) -> None:
        """A visitor's committed message on a conversation the bot has."""
        admitted = self._episodes.admit(conversation, message, self.forget)
        if admitted is None:
            return
        episode = admitted.episode
        rule, still, replied = self._answer(episode, message,
                                            greet=admitted.new and admitted.first)
        visitor = conversation.visitor
        if rule is None and self.settings.unmatched is Unmatched.HANDOFF:
            self._episodes.hand_off(visitor, UNMATCHED, "unmatched")
        elif rule is not None and still <= 0 and rule.handoff is not None:
            self._episodes.hand_off(visitor, rule.handoff, "rule")
        elif not replied and episode.waiting == 0:
            # Silence is its answer (bot_unmatched = silent, or a rule with
            # nothing to say): the message is owed nothing more.
            d = self._submit(BotPending(self.route, visitor, None))
            d.addErrback(self._episodes.refused, "pending", visitor)

    def _answer(self, episode: _Episode, message: Message,
                greet: bool) -> tuple[Rule | None, int, bool]:
        """
        The greeting (C{greet}) and the rules' answer: what waits for a
        delay is stored as owed (L{BotPending}) before the messages sent
        now, so a visitor who has seen any of them cannot be left with a
        bot that died owing the rest.

        @return: the rule that answered (None: none), how many of its
            messages wait for their delay, and whether any was sent now.
        """
        now = self._clock.seconds()
        due: float | None = None
        episode.answering = True
        try:
            if greet:
                self._engine.connection_opened(episode)
                still = len(self._rules.greetings) - episode.sent
                if still > 0:
                    self._waiting(episode, still)
                    due = now + sum(g.delay for g in self._rules.greetings)
            before = episode.sent
            rule, reply = self._engine.answer(episode, message.body)
            replies = reply if isinstance(reply, list) else [] if reply is None else [reply]
            for text in replies:
                if isinstance(text, str | bytes):
                    self.say(episode, text)
        finally:
            episode.answering = False
        # The rule's messages that wait for their delay (a plain reply: none).
        still = 0 if rule is None or reply is not None or not rule.messages else \
            (1 if rule.cycle else len(rule.messages)) - (episode.sent - before)
        if rule is not None and still > 0:
            self._waiting(episode, still)
            messages = rule.messages[:1] if rule.cycle else rule.messages
            last = now + sum(m.delay for m in messages)
            due = last if due is None else max(due, last)
            if rule.handoff is not None:
                # Hand over once they have gone: as many, the last one due.
                episode.handoff = (rule.handoff, still, last)
        if due is not None:
            handoff = episode.handoff[0] if episode.handoff is not None else None
            d = self._submit(BotPending(self.route, episode.client_id, due, handoff))
            d.addErrback(self._episodes.refused, "pending", episode.client_id)
        said, episode.said = episode.said, []
        replied = [self._reply(episode, text) for text in said]
        return rule, still, any(d is not None for d in replied)

    def _waiting(self, episode: _Episode, more: int) -> None:
        if episode.waiting == 0:
            self._episodes.typing(episode.client_id, True)
        episode.waiting += more

    def say(self, episode: _Episode, message: str | bytes) -> None:
        """One message of the rules: the bot's reply, stored and delivered."""
        if not episode.is_open:
            return
        episode.sent += 1
        if episode.answering:
            episode.said.append(message)  # sent once what waits is stored as owed
            return
        # A delayed message: the bot stops typing once the last is delivered.
        done_typing = False
        if episode.waiting > 0:
            episode.waiting -= 1
            done_typing = episode.waiting == 0
        visitor = episode.client_id
        d = self._reply(episode, message)
        if done_typing:
            if d is not None:
                d.addBoth(lambda _: self._episodes.typing(visitor, False))
            else:
                self._episodes.typing(visitor, False)
        if episode.handoff is not None:
            # Another rule's delayed message may come first: the handoff
            # waits for as many messages as its rule sends, and its time.
            reason, still, due = episode.handoff
            if still <= 1 and self._clock.seconds() >= due:
                episode.handoff = None
                self._episodes.hand_off(visitor, reason, "rule")
            else:
                episode.handoff = (reason, still - 1, due)

    def _reply(self, episode: _Episode, message: str | bytes) -> Deferred[Any] | None:
        if not (isinstance(message, str) and message.strip()):
            return None
        visitor = episode.client_id
        d = self._submit(BotReply(self.route, visitor, message, self.settings.name))
        d.addErrback(self._episodes.refused, "reply", visitor)
        self._episodes.count("reply")
        return d

    def forget(self, conversation_id: str) -> None:
        """The episode left the bot: its delayed replies are cancelled."""
        episode = self._episodes.pop(conversation_id)
        if episode is not None:
            self._let_go(episode)

    def _let_go(self, episode: _Episode) -> None:
        episode.is_open = False
        self._engine.connection_closed(episode, None, "")
        if episode.waiting > 0:
            episode.waiting = 0
            self._episodes.typing(episode.client_id, False)

    def _dropped(self, episode: _Episode) -> None:
        """Dropped for the bound, or the bot replaced: the handoff it owed is made now."""
        if episode.handoff is not None:
            self._episodes.hand_off(episode.client_id, episode.handoff[0], "rule")
            episode.handoff = None
        self._let_go(episode)

    def close(self) -> None:
        """
        Every episode forgotten (the route's bot is replaced or gone, or the
        daemon stops): a handoff a rule said, still waiting for its delayed
        messages, is made now (those messages are lost with the episodes),
        so no visitor is left with a bot that meant to hand over. Delayed
        messages owed without a handoff are stored as owed: the core hands
        those conversations over once they are overdue.
        """
        for episode in self._episodes:
            if self._episodes.pop(episode.conversation_id) is not None:
                self._dropped(episode)

    def stop(self) -> None:
        """The daemon stops: as L{close}."""
        self.close()
