"""
The team's own backend as a route's bot (issue 24, item 3): route option
C{bot_url} (L{wsdaemon.support.hook_bot_settings}) instead of a rules file.
L{wsdaemon.support.bots} gives it the visitor messages of its episodes, as
it gives a bot of rules (L{wsdaemon.support.bot.RouteBot}).

For each committed visitor message of an episode the bot has:

1. a handoff phrase in it ("I want a human"): L{Handoff} at once, the
   backend not asked;
2. else it is POSTed to the backend as a C{message} event (signed with the
   Standard Webhooks scheme, delivered and retried as the C{webhook}
   strategy does: L{wsdaemon.strategies.webhook.delivery}), with the
   episode's earlier messages (at most C{bot_context}) as context. One
   request per conversation is in flight; later messages wait in order
   (at most C{bot_max_queue}; one more hands the conversation over). A
   request waits at most C{bot_timeout} for one of the route's
   C{bot_max_requests} slots, else it is never sent and the conversation
   is handed over (L{BUSY}; L{wsdaemon.support.hook_bot_request});
3. the answer (L{wsdaemon.support.hook_bot_answer}): each message a
   L{BotReply} (stored, then delivered, in the thread operators read,
   named C{bot_name}); a handoff a L{Handoff} with its reason (the note
   by "bot").

The backend down or slow (never reached after its retries, a timeout, an
error status, an answer too big or not understood): the conversation is
handed to the operators ("the bot's backend did not answer: timeout"),
logged once per outage (and once when it answers again), counted by kind.
While a request is out the visitor sees the bot typing.

Each request is stored as an answer owed (L{BotPending}, until its
attempts are surely over); the answer's last message, or an empty answer,
settles it. A daemon that crashes with a request out leaves it owed: the
restarted one hands the conversation over once it is overdue, and never
asks the backend again.

The context is what this daemon saw of the episode (its visitor messages
and the bot's replies): after a restart it starts again from the next
message. Bounded: at most C{max_episodes} episodes (least recently
active dropped first; one whose request is out is cancelled and handed
over).
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, DeferredSemaphore
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from wsdaemon.conversations.aliases import alias_for
from wsdaemon.conversations.events import BotPending, BotReply
from wsdaemon.conversations.model import Author, Conversation, Message
from wsdaemon.escaping import visible
from wsdaemon.strategies.webhook.client import Poster, Reply
from wsdaemon.strategies.webhook.delivery import DeliveryError
from wsdaemon.strategies.webhook.stats import HookStats
from wsdaemon.support.bot_episodes import DEFAULT_MAX_EPISODES, Count, Episodes, Signal, Submit
from wsdaemon.support.bot_settings import BotSettings
from wsdaemon.support.hook_bot_answer import BotAnswerError, parse_bot_answer
from wsdaemon.support.hook_bot_request import BUSY_KIND, owed_for, request

__all__ = ["BUSY", "CHANGED", "CROWDED", "DOWN", "INVALID", "STOPPED", "TOO_FAST", "HookBot",
           "event_of"]

_log = Logger(namespace="wsdaemon.support.bot")

#: The reasons operators read in the handoff's note.
DOWN = "the bot's backend did not answer: {kind}"
INVALID = "the bot's backend answered something it cannot do: {why}"
BUSY = "the bot's backend is busy: {why}"
TOO_FAST = "the visitor wrote faster than the bot's backend answers ({count} messages waiting)"
STOPPED = "the daemon stopped before the bot's backend answered"
CHANGED = "the route's bot changed before its backend answered"
CROWDED = ("the bot keeps at most {count} conversations (max_episodes); this one was "
           "the least recently active")


class _Episode:
    """One conversation's episode with the backend bot."""

    __slots__ = ("conversation_id", "history", "in_flight", "last_seq", "opened_at",
                 "typing", "visitor", "waiting")

    def __init__(self, conversation: Conversation, keep: int) -> None:
        self.conversation_id = conversation.conversation_id
        self.opened_at = conversation.opened_at
        self.visitor = conversation.visitor
        #: The episode's newest messages seen here, as the events carry
        #: them (the context and the messages waiting).
        self.history: deque[dict[str, Any]] = deque(maxlen=keep)
        self.waiting: deque[tuple[Conversation, Message]] = deque()
        self.in_flight: Deferred[Reply] | None = None
        self.last_seq = 0
        self.typing = False


def _entry(message: Message) -> dict[str, Any]:
    entry: dict[str, Any] = {"author": str(message.author), "text": message.body,
                             "seq": message.seq, "time": message.at}
    if message.author is Author.BOT:
        entry["name"] = message.display_name
    return entry


def event_of(route: str, conversation: Conversation, message: Message,
             context: list[dict[str, Any]], now: float) -> dict[str, Any]:
    """@return: the C{message} event POSTed for C{message} (documented in the README)."""
    profile = conversation.profile
    return {
        "type": "message", "id": f"bot_{conversation.conversation_id}_{message.seq}",
        "route": route, "conversation_id": conversation.conversation_id,
        "visitor": conversation.visitor, "alias": alias_for(conversation.visitor),
        "profile": None if profile is None or profile.empty else {
            "name": profile.name, "email": profile.email,
            "attributes": dict(profile.attributes), "source": str(profile.source)},
        "message": {"text": message.body, "seq": message.seq, "time": message.at},
        "context": context, "time": now,
    }


class HookBot:
    """
    One route's backend bot.

    @param poster: POSTs one request (a L{TreqPoster} in the daemon).
    @param count: told (route, outcome) of each reply and handoff.
    @param signal: shows the visitor the bot typing.
    @ivar hook_stats: the route's requests (latency, errors, in flight).
    """

    def __init__(self, route: str, settings: BotSettings, clock: IReactorTime, submit: Submit,
                 poster: Poster, max_episodes: int = DEFAULT_MAX_EPISODES,
                 count: Count | None = None, signal: Signal | None = None) -> None:
        if settings.backend is None:
            raise ValueError("a backend bot needs bot_url")
        self.route = route
        self.settings = settings
        self.backend = settings.backend
        self._clock = clock
        self._submit = submit
        self.poster = poster
        self._max_episodes = max_episodes
        self._slots = DeferredSemaphore(self.backend.webhook.max_requests)
        self._episodes: Episodes[_Episode] = Episodes(
            route, settings, submit, self._make, self._dropped, max_episodes, count, signal)
        self.hook_stats = HookStats()
        #: The backend failed and has not answered since (logged once).
        self.down = False

    def __len__(self) -> int:
        return len(self._episodes)

    # -- what Bots tells it ---------------------------------------------------

    def heard(self, conversation: Conversation, message: Message) -> None:
        """A visitor's committed message on a conversation the bot has."""
        admitted = self._episodes.admit(conversation, message, self.forget)
        if admitted is None:
            return
        episode = admitted.episode
        if episode.in_flight is None:
            self._post(episode, conversation, message)
            episode.history.append(_entry(message))
        elif len(episode.waiting) >= self.backend.max_queue:
            self.hook_stats.errors["queue"] += 1
            self._episodes.hand_off(episode.visitor,
                                    TOO_FAST.format(count=len(episode.waiting) + 1),
                                    "backend_failed")
        else:
            episode.waiting.append((conversation, message))
            episode.history.append(_entry(message))

    def seen(self, conversation: Conversation, message: Message) -> None:
        """A message of the bot committed (any daemon's): context for the next events."""
        episode = self._episodes.get(conversation.conversation_id)
        if episode is not None and message.author is Author.BOT:
            episode.history.append(_entry(message))

    def forget(self, conversation_id: str) -> None:
        """The episode left the bot: its request (and what waits) cancelled."""
        episode = self._episodes.pop(conversation_id)
        if episode is not None:
            self._let_go(episode)

    def _let_go(self, episode: _Episode) -> None:
        episode.waiting.clear()
        in_flight, episode.in_flight = episode.in_flight, None
        if in_flight is not None:
            in_flight.cancel()
        self._typing(episode, False)

    def close(self) -> None:
        """
        The route's bot is replaced or gone (a reload): a conversation whose
        message the backend has not answered is handed over; every episode
        forgotten, the idle connections closed.
        """
        self._release(CHANGED)

    def stop(self) -> None:
        """
        The daemon stops: a conversation whose message the backend has not
        answered yet is handed over, so no visitor is left waiting for it.
        """
        self._release(STOPPED)

    def _release(self, reason: str) -> None:
        for episode in self._episodes:
            if episode.in_flight is not None:
                self._episodes.hand_off(episode.visitor, reason, "backend_failed")
        for episode in self._episodes:
            self.forget(episode.conversation_id)
        closing = getattr(self.poster, "close", None)
        if closing is not None:
            closing()

    # -- the backend ----------------------------------------------------------

    def _make(self, conversation: Conversation) -> _Episode:
        backend = self.backend
        return _Episode(conversation, backend.context + backend.max_queue + 1)

    def _dropped(self, oldest: _Episode) -> None:
        """Dropped for the bound: one whose request is out is handed over."""
        if oldest.in_flight is not None:  # never a visitor left without an answer
            self._episodes.hand_off(oldest.visitor, CROWDED.format(count=self._max_episodes),
                                    "backend_failed")
        self._let_go(oldest)

    def _post(self, episode: _Episode, conversation: Conversation, message: Message) -> None:
        now = self._clock.seconds()
        size = self.backend.context
        # What this daemon saw of the episode, but the visitor's messages
        # written after this one (waiting); the bot's replies all count.
        context = sorted((entry for entry in episode.history
                          if entry["seq"] < message.seq or entry["author"] != "visitor"),
                         key=lambda entry: int(entry["seq"]))
        context = context[len(context) - size:] if size else []
        event = event_of(self.route, conversation, message, context, now)
        body = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        self._owe(episode, now + owed_for(self.backend.webhook, self._slots.tokens > 0))
        stats = self.hook_stats
        sent_at: list[float] = []

        def sent() -> None:  # in flight (and timed) from when it has its slot
            stats.in_flight += 1
            sent_at.append(self._clock.seconds())

        d = request(self.poster, self.backend.webhook, self._clock, self.backend.url,
                    event["id"], body, self._slots, sent)

        def done(result: object) -> object:
            if sent_at:
                stats.in_flight -= 1
                stats.observe(self._clock.seconds() - sent_at[0])
            return result

        d.addBoth(done)
        episode.in_flight = d
        if not episode.typing:
            self._typing(episode, True)
        d.addCallbacks(self._answered, self._not_answered, callbackArgs=(episode,),
                       errbackArgs=(episode,))
        d.addErrback(lambda f: _log.failure("bot on {route}: the backend's answer could not "
                                            "be carried out", f, route=self.route))

    def _owe(self, episode: _Episode, until: float) -> None:
        """
        Stored with the conversation: an answer is owed until the request's
        attempts are surely over (after its wait for a slot, when every one
        is taken: L{owed_for}). Should this daemon be gone before it is
        answered (a crash: a stop hands over itself), the conversation is
        handed over then rather than left with the bot.
        """
        d = self._submit(BotPending(self.route, episode.visitor, until))
        d.addErrback(self._episodes.refused, "pending", episode.visitor)

    def _answered(self, reply: Reply, episode: _Episode) -> None:
        episode.in_flight = None
        if not 200 <= reply.status < 300:
            status = f"status {reply.status}"
            self._failed(episode, "status", status, DOWN.format(kind=status))
            return
        try:
            answer = parse_bot_answer(reply.status, reply.content_type, reply.body)
        except BotAnswerError as e:
            self._failed(episode, "invalid", str(e), INVALID.format(why=e))
            return
        if self.down:
            self.down = False
            _log.info("bot on {route}: the backend answers again", route=self.route)
        # The answer's last message says the bot owes nothing more (unless
        # a handoff or the next request follows: they say it themselves).
        settles = answer.handoff is None and not episode.waiting
        last: Deferred[Any] | None = None
        for n, text in enumerate(answer.messages, 1):
            last = self._submit(BotReply(self.route, episode.visitor, text, self.settings.name,
                                         settles=settles and n == len(answer.messages)))
            last.addErrback(self._episodes.refused, "reply", episode.visitor)
            self._episodes.count("reply")
        if settles and not answer.messages:
            self._submit(BotPending(self.route, episode.visitor, None)).addErrback(
                self._episodes.refused, "pending", episode.visitor)
        if answer.handoff is not None:
            self._episodes.hand_off(episode.visitor, answer.handoff, "backend")
            self.forget(episode.conversation_id)
            return
        if episode.waiting:
            self._post(episode, *episode.waiting.popleft())
        elif last is not None:
            last.addBoth(lambda _: None if episode.in_flight else self._typing(episode, False))
        else:
            self._typing(episode, False)

    def _not_answered(self, failure: Failure, episode: _Episode) -> None:
        if failure.check(CancelledError):
            return  # forgotten: the operators have it
        failure.trap(DeliveryError)
        episode.in_flight = None
        error: Any = failure.value
        reason = BUSY.format(why=error.why) if error.kind == BUSY_KIND else \
            DOWN.format(kind=error.kind)
        self._failed(episode, error.kind, error.why, reason)

    def _failed(self, episode: _Episode, kind: str, why: str, reason: str) -> None:
        self.hook_stats.errors[kind] += 1
        if not self.down:
            self.down = True
            _log.warn("bot on {route}: the backend failed ({kind}): {why}; its conversations "
                      "go to the operators until it answers again", route=self.route,
                      kind=kind, why=visible(why))
        else:
            _log.debug("bot on {route}: the backend failed again ({kind})", route=self.route,
                       kind=kind)
        self._episodes.hand_off(episode.visitor, reason, "backend_failed")
        self.forget(episode.conversation_id)

    # -- the conversation -----------------------------------------------------

    def _typing(self, episode: _Episode, on: bool) -> None:
        if episode.typing == on:
            return
        episode.typing = on
        self._episodes.typing(episode.visitor, on)
