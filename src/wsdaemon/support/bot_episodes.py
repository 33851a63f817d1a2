"""
What both kinds of a route's bot keep of their episodes (issue 22, item
5): the bot of rules (L{wsdaemon.support.bot.RouteBot}) and the team's
backend (L{wsdaemon.support.hook_bot.HookBot}) differ in how they answer,
not in how an episode is opened, bounded, handed over or shown typing.

L{Episodes} does that part for one route's bot:

- L{Episodes.admit} takes a visitor's committed message: an episode of an
  earlier opening of the conversation (it was resolved and opened again)
  is forgotten; a message told twice is ignored; the episode's first
  message is counted (C{episode}); a handoff phrase hands over at once
  (C{asked}), the bot not asked; else it is the message's episode (a new
  one made by the bot, the least recently active dropped past
  C{max_episodes}, logged once), the most recently active from now;
- L{Episodes.hand_off} submits the L{Handoff} (the note's reason) and
  counts it; a refusal because the operators took it meanwhile is quiet;
- L{Episodes.typing} shows the visitor the bot typing, or not.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from wsdaemon.conversations.effects import SignalVisitor
from wsdaemon.conversations.errors import InvalidMove
from wsdaemon.conversations.events import Event, Handoff
from wsdaemon.conversations.model import Conversation, Message
from wsdaemon.escaping import visible
from wsdaemon.support.bot_settings import BotSettings

__all__ = ["ASKED", "DEFAULT_MAX_EPISODES", "Admitted", "Count", "Episode", "Episodes",
           "Signal", "Submit"]

_log = Logger(namespace="wsdaemon.support.bot")

#: Episodes each route's bot remembers (its rules' counters, delayed
#: replies, a backend's requests and context).
DEFAULT_MAX_EPISODES = 10_000
#: The reason operators read when the visitor asked for a person.
ASKED = "the visitor asked for a person ({phrase})"

Submit = Callable[[Event], "Deferred[Any]"]
Count = Callable[[str, str], None]
Signal = Callable[[SignalVisitor], None]


class Episode(Protocol):
    """What L{Episodes} reads and writes of a bot's episode."""

    conversation_id: str
    #: When the conversation's episode opened (another value: a later one).
    opened_at: float
    #: The last visitor message the bot was told of.
    last_seq: int


E = TypeVar("E", bound=Episode)


class Admitted(NamedTuple, Generic[E]):
    """A visitor message's episode, as L{Episodes.admit} found it."""

    episode: E
    #: Made for this message (the bot remembered none).
    new: bool
    #: The message opens the conversation's episode (the greeting goes first).
    first: bool


class Episodes(Generic[E]):
    """
    One route's bot's episodes, least recently active first.

    @param make: a new episode of a conversation (not yet kept).
    @param dropped: told of an episode dropped for the bound (after it left:
        cancel what it waits for, hand over what it owed).
    @param count: told (route, outcome) of each episode and handoff.
    @param signal: shows the visitor the bot typing (the visitor port's C{tell}).
    """

    def __init__(self, route: str, settings: BotSettings, submit: Submit,
                 make: Callable[[Conversation], E], dropped: Callable[[E], None],
                 max_episodes: int = DEFAULT_MAX_EPISODES, count: Count | None = None,
                 signal: Signal | None = None) -> None:
        self.route = route
        self.settings = settings
        self._submit = submit
        self._make = make
        self._dropped = dropped
        self._max = max_episodes
        self._count = count or (lambda route, outcome: None)
        self._signal = signal
        self._kept: OrderedDict[str, E] = OrderedDict()
        self._full = False

    def __len__(self) -> int:
        return len(self._kept)

    def __contains__(self, conversation_id: object) -> bool:
        return conversation_id in self._kept

    def __iter__(self) -> Iterator[E]:
        """The episodes, least recently active first (a copy: they may leave meanwhile)."""
        return iter(list(self._kept.values()))

    def count(self, outcome: str) -> None:
        self._count(self.route, outcome)

    def admit(self, conversation: Conversation, message: Message,
              forget: Callable[[str], object]) -> Admitted[E] | None:
        """
        The episode C{message} (a visitor's, committed) belongs to, or None
        when the bot has nothing to do: told twice, or handed over at once
        (a handoff phrase).

        @param forget: the bot's own C{forget} (an episode of an earlier
            opening of the conversation leaves through it).
        """
        key = conversation.conversation_id
        episode = self._kept.get(key)
        if episode is not None and episode.opened_at != conversation.opened_at:
            forget(key)
            episode = None
        if episode is not None and message.seq <= episode.last_seq:
            return None  # told twice
        first = message.seq == conversation.unread_floor + 1
        if first:
            self.count("episode")
        phrase = self.settings.asked_for_person(message.body)
        if phrase is not None:
            self.hand_off(conversation.visitor, ASKED.format(phrase=phrase), "asked")
            return None
        new = episode is None
        if episode is None:
            episode = self._keep(self._make(conversation))
        else:
            self._kept.move_to_end(key)
        episode.last_seq = message.seq
        return Admitted(episode, new, first)

    def _keep(self, episode: E) -> E:
        self._kept[episode.conversation_id] = episode
        while len(self._kept) > self._max:
            if not self._full:  # once: at the bound, every new episode drops one
                self._full = True
                _log.info("bot on {route}: {count} episodes remembered, the least recently "
                          "active are forgotten from now on", route=self.route, count=self._max)
            _, oldest = self._kept.popitem(last=False)
            self._dropped(oldest)
        return episode

    def get(self, conversation_id: str) -> E | None:
        """The conversation's episode, or None: none kept."""
        return self._kept.get(conversation_id)

    def pop(self, conversation_id: str) -> E | None:
        """The episode leaves (the bot cancels what it waited for), or None: none kept."""
        return self._kept.pop(conversation_id, None)

    def hand_off(self, visitor: str, reason: str, outcome: str) -> None:
        """The conversation goes to the operators, C{reason} the note they read."""
        d = self._submit(Handoff(self.route, visitor, reason))
        d.addErrback(self.refused, "handoff", visitor)
        self.count(outcome)

    def refused(self, failure: Failure, what: str, visitor: str) -> None:
        """The errback of the bot's submits: the operators' taking it is no error."""
        if failure.check(InvalidMove):
            # The operators took it meanwhile: the bot stays quiet.
            _log.debug("bot on {route}: {what} refused: {why}", route=self.route, what=what,
                       why=str(failure.value))
            return
        _log.failure("bot on {route}: its {what} for {visitor} was not stored", failure,
                     route=self.route, what=what, visitor=visible(visitor))

    def typing(self, visitor: str, on: bool) -> None:
        """The visitor sees the bot typing (C{on}), or not."""
        if self._signal is not None:
            self._signal(SignalVisitor(self.route, visitor, "typing", on=on,
                                       name=self.settings.name))
