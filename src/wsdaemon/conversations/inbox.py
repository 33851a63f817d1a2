"""
The conversations as they stand, in memory, with the indexes the core reads
(L{InboxView}): the queue of open unassigned conversations (in the order
they joined it), each operator's open conversations, and open counts per
route. It changes only by L{Inbox.commit} of a transition, which its caller
does once the transition's L{Commit} is stored.

No I/O: a driver fills it from the store at start (L{Inbox.load}) and drops
resolved conversations it no longer needs (L{Inbox.forget}); tests use it as
it is.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from itertools import islice

from wsdaemon.conversations.core import decide
from wsdaemon.conversations.events import Event
from wsdaemon.conversations.model import Conversation, Status, evolve
from wsdaemon.conversations.routing import OperatorState, Team
from wsdaemon.conversations.settings import ConversationSettings
from wsdaemon.conversations.transition import Transition

__all__ = ["Inbox"]


class Inbox:
    """
    @ivar team: the team as the last committed transition left it.
    @ivar configured: the operators this daemon's configuration names (set
        by its roster): another daemon's word that one left the team does
        not take it out here.
    """

    def __init__(self, settings: ConversationSettings, team: Team | None = None) -> None:
        self.settings = settings
        self.team = team if team is not None else Team()
        self.configured: frozenset[str] = frozenset()
        self._conversations: dict[str, Conversation] = {}
        self._waiting: OrderedDict[str, None] = OrderedDict()
        self._assigned: dict[str, OrderedDict[str, None]] = {}
        self._open_per_route: Counter[str] = Counter()
        self._with_bot: set[str] = set()
        self._open = 0

    # -- the view the core reads ---------------------------------------------

    def conversation(self, conversation_id: str) -> Conversation | None:
        return self._conversations.get(conversation_id)

    def open_count(self, route: str | None = None) -> int:
        return self._open if route is None else self._open_per_route[route]

    def waiting(self, limit: int) -> Sequence[Conversation]:
        return [self._conversations[key] for key in islice(self._waiting, limit)]

    def open_assigned_to(self, operator: str, limit: int) -> Sequence[Conversation]:
        keys = self._assigned.get(operator, ())
        return [self._conversations[key] for key in islice(keys, limit)]

    def load_of(self, operator: str) -> int:
        return len(self._assigned.get(operator, ()))

    def status_counts(self) -> dict[str, int]:
        """
        Live conversations by state, from the indexes (no walk over the
        conversations; one step per operator).

        @return: C{bot} (open, the bot's), C{unassigned}, C{assigned} (open,
            the operators') and C{snoozed} counts.
        """
        unassigned = len(self._waiting)
        assigned = sum(len(held) for held in self._assigned.values())
        bot = len(self._with_bot)
        return {"bot": bot, "unassigned": unassigned, "assigned": assigned,
                "snoozed": self._open - unassigned - assigned - bot}

    # -- changing ------------------------------------------------------------

    def decide(self, event: Event, now: float) -> Transition:
        """What C{event} would do; nothing changes until L{commit}."""
        return decide(self, event, now, self.settings)

    def commit(self, transition: Transition) -> None:
        """Move to the transition's records (once its store writes are committed)."""
        for conversation in transition.conversations:
            self._put(conversation)
        self.team = transition.team

    def load(self, conversations: Iterable[Conversation]) -> None:
        """Take conversations read from the store (queued ones in the order given)."""
        for conversation in conversations:
            self._put(conversation)

    def enrol(self, names: Iterable[str]) -> None:
        """
        Make the configured operators members of the team: offline, with the
        default capacity and the load their conversations held give them,
        so that they can be listed and assigned before they first connect.
        Names the team knows stay as they are; at most
        C{Bounds.max_operators} members in all.
        """
        team = self.team
        bound = self.settings.bounds.max_operators
        for name in sorted(set(names)):
            if len(team.operators) >= bound:
                break
            if team.get(name) is None:
                team = team.with_operator(OperatorState(
                    name, capacity=self.settings.default_capacity, load=self.load_of(name)))
        self.team = team

    def recount(self) -> None:
        """Every member's load from the conversations held (once loaded from the store)."""
        self.team = evolve(self.team, operators=tuple(
            evolve(operator, load=self.load_of(operator.name))
            for operator in self.team.operators))

    def forget(self, conversation_id: str) -> None:
        """Drop a resolved conversation from memory (it stays in the store)."""
        found = self._conversations.get(conversation_id)
        if found is not None and found.status is Status.RESOLVED:
            del self._conversations[conversation_id]

    def __len__(self) -> int:
        return len(self._conversations)

    def conversations(self) -> list[Conversation]:
        return list(self._conversations.values())

    def _put(self, conversation: Conversation) -> None:
        """Replace a record; one that stays queued keeps its place in the queue."""
        key = conversation.conversation_id
        before = self._conversations.get(key)
        self._conversations[key] = conversation
        if before is not None and before.status is not Status.RESOLVED:
            self._open -= 1
            self._open_per_route[before.route] -= 1
            if not self._open_per_route[before.route]:
                del self._open_per_route[before.route]
        if conversation.status is not Status.RESOLVED:
            self._open += 1
            self._open_per_route[conversation.route] += 1
        if conversation.with_bot and conversation.status is Status.OPEN:
            self._with_bot.add(key)
        else:
            self._with_bot.discard(key)
        if before is not None and before.awaits_operator and not conversation.awaits_operator:
            del self._waiting[key]
        elif conversation.awaits_operator and (before is None or not before.awaits_operator):
            self._waiting[key] = None
        if before is not None and before.holds_assignee_load and (
                before.assignee != conversation.assignee
                or not conversation.holds_assignee_load):
            self._unassign(key, before.assignee)
        if conversation.holds_assignee_load and conversation.assignee is not None:
            self._assigned.setdefault(conversation.assignee, OrderedDict())[key] = None

    def _unassign(self, key: str, operator: str | None) -> None:
        held = self._assigned.get(operator or "")
        if held is not None:
            held.pop(key, None)
            if not held:
                del self._assigned[operator or ""]
