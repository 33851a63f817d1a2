"""
The driver's side of sharing conversations with other daemons (with
Redis: L{wsdaemon.support.redis_feed}): what it asks of them (L{Peers}),
and the team as another daemon's transition leaves it (L{adopted_team}).

Each daemon keeps its own copy of the team, moved by its own transitions
and by the others' (their records move the loads; their operators'
availability and capacity come as they told them); with Redis, a daemon
starting later reads the operators' entries, and a gone daemon's
operators are let go (L{wsdaemon.support.redis_team}). A commit that
raises an operator's load says how many raises of it the view holds
(L{raised_loads}); with Redis, the commit script refuses it when those
not held could overfill the operator's capacity, so two daemons routing
at the same moment never both fill the same room.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from twisted.internet.defer import Deferred

from wsdaemon.conversations.effects import Effect, NotifyTeam
from wsdaemon.conversations.inbox import Inbox
from wsdaemon.conversations.model import Availability, Conversation, evolve
from wsdaemon.conversations.routing import OperatorState, Team
from wsdaemon.conversations.transition import Transition

__all__ = ["Adopted", "Peers", "adopted_team", "raised_loads"]


@dataclass(frozen=True)
class Adopted:
    """
    Another daemon's transition (or a record read), for the driver to take.

    @ivar durable: it was committed (versions moved), as opposed to news
        of what stored nothing (typing, availability).
    @ivar capacities: operators' capacities as the store holds them (a
        commit refused because one was lowered elsewhere): only the
        capacity changes, whatever the view holds of the rest by then.
    """

    conversations: tuple[Conversation, ...]
    effects: tuple[Effect, ...] = ()
    last_chosen: str | None = None
    durable: bool = True
    capacities: tuple[tuple[str, int], ...] = ()

    @property
    def lane(self) -> str | None:
        """The one conversation it is about, or None (several or none: the team's lane)."""
        keys = {c.conversation_id for c in self.conversations}
        return keys.pop() if len(keys) == 1 else None


class Peers(Protocol):
    """
    The other daemons sharing the store (with Redis:
    L{wsdaemon.support.redis_feed.ConversationFeed}).

    @ivar max_attempts: commits refused as stale before the caller is told.
    @ivar stale_pause: seconds, times the attempts so far, at most, waited
        at random before deciding again.
    """

    max_attempts: int
    stale_pause: float

    def commit(self, transition: Transition) -> Deferred[None]:
        """Commit C{transition} with what the others need to carry it out."""

    def publish(self, transition: Transition) -> None:
        """Tell the others a transition that stored nothing (typing, availability)."""

    def catch_up(self, keys: tuple[str, ...], wait: bool = True) -> Deferred[list[Adopted]]:
        """
        What the others committed to C{keys} up to what the store holds
        now, claimed from their turns (the driver takes them now).

        @param wait: for the stream to bring what the store holds (a stale
            commit: it was committed after this daemon read the record);
            False: only for conversations the stream brought before (one
            read from the store may have been committed long ago).
        @return: a Deferred firing with the transitions in the order they
            were committed, then the stored records themselves (what the
            stream did not bring in time).
        """



def adopted_team(inbox: Inbox, adopted: Adopted) -> Team:
    """
    The team once another daemon's transition is taken: loads moved by the
    records newer than C{inbox}'s, an operator's availability and capacity
    as its daemon told, the round's place.
    """
    team = inbox.team
    conversations = adopted.conversations
    for conversation in conversations:
        before = inbox.conversation(conversation.conversation_id)
        if before is None or before.version < conversation.version:
            team = team.accounted(before, conversation)
    for effect in adopted.effects:
        if isinstance(effect, NotifyTeam) and (effect.joined or effect.left):
            team = _roster_news(inbox, team, effect)
        elif isinstance(effect, NotifyTeam):
            known = team.get(effect.operator) or OperatorState(
                effect.operator, load=inbox.load_of(effect.operator))
            team = team.with_operator(evolve(
                known, availability=Availability(effect.availability),
                capacity=effect.capacity))
    for name, capacity in adopted.capacities:
        member = team.get(name)
        if member is not None and member.capacity != capacity:
            team = team.with_operator(evolve(member, capacity=capacity))
    last_chosen = adopted.last_chosen
    if last_chosen is not None and last_chosen != team.last_chosen:
        team = evolve(team, last_chosen=last_chosen)
    return team


def _roster_news(inbox: Inbox, team: Team, effect: NotifyTeam) -> Team:
    """
    Another daemon's configuration added or removed an operator: one this
    view knows already stays as it knows it (it may be online here); one
    that left goes only if it is offline here and holds nothing, and this
    daemon's configuration does not name it.
    """
    known = team.get(effect.operator)
    if effect.joined:
        if known is not None or len(team.operators) >= inbox.settings.bounds.max_operators:
            return team
        return team.with_operator(OperatorState(
            effect.operator, Availability(effect.availability), effect.capacity,
            load=inbox.load_of(effect.operator)))
    if known is None or known.availability is not Availability.OFFLINE or known.load \
            or inbox.load_of(effect.operator) or effect.operator in inbox.configured:
        return team
    return evolve(team, operators=tuple(o for o in team.operators if o.name != effect.operator))


def raised_loads(before: Team, after: Team,
                 seen: Mapping[str, int]) -> dict[str, list[int]]:
    """
    The operators C{after} gives more open conversations than C{before},
    each with [the raises of its load the view holds (C{seen}), its load
    after, its capacity in the view (0: none)]: what the commit script
    checks (against the capacity the store holds, which another daemon may
    have lowered; the view's if it holds none) and counts. A load taken
    past the view's capacity on purpose (an assignment by hand, a reply
    taking the conversation) is counted, not checked (told as -1): it does
    not rest on room.
    """
    if after is before:
        return {}
    raised: dict[str, list[int]] = {}
    for operator in after.operators:
        known = before.get(operator.name)
        if operator.load > (0 if known is None else known.load):
            past = operator.capacity and operator.load > operator.capacity
            raised[operator.name] = [seen.get(operator.name, 0), operator.load,
                                     -1 if past else operator.capacity]
    return raised
