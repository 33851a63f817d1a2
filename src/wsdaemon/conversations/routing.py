"""
The team as routing sees it: each operator's availability, capacity and
load, and whom the next conversation goes to (round robin over the online
operators with room, in name order, starting after the last one chosen).

C{load} counts the operator's open conversations (not snoozed, not
resolved); the core keeps it equal to that count on every transition.
"""

from __future__ import annotations

from dataclasses import dataclass

from wsdaemon.conversations.model import Availability, Conversation, evolve

__all__ = ["OperatorState", "Team"]


@dataclass(frozen=True)
class OperatorState:
    """
    @ivar capacity: open conversations it takes by routing (0: no cap).
    @ivar load: its open conversations now.
    """

    name: str
    availability: Availability = Availability.OFFLINE
    capacity: int = 0
    load: int = 0

    @property
    def online(self) -> bool:
        return self.availability is Availability.ONLINE

    @property
    def has_room(self) -> bool:
        """Online, and under its capacity: routing may give it one more."""
        return self.online and (self.capacity == 0 or self.load < self.capacity)


@dataclass(frozen=True)
class Team:
    """
    @ivar operators: by name.
    @ivar last_chosen: the operator routing chose last (the round's place).
    """

    operators: tuple[OperatorState, ...] = ()
    last_chosen: str | None = None

    def get(self, name: str) -> OperatorState | None:
        for operator in self.operators:
            if operator.name == name:
                return operator
        return None

    def is_online(self, name: str | None) -> bool:
        operator = None if name is None else self.get(name)
        return operator is not None and operator.online

    @property
    def available(self) -> int:
        """Operators online."""
        return sum(1 for operator in self.operators if operator.online)

    @property
    def has_room(self) -> bool:
        return any(operator.has_room for operator in self.operators)

    def with_operator(self, operator: OperatorState) -> Team:
        """This team with C{operator} added or replaced (kept in name order)."""
        others = [o for o in self.operators if o.name != operator.name]
        return evolve(self, operators=tuple(sorted([*others, operator], key=lambda o: o.name)))

    def with_load(self, name: str, delta: int) -> Team:
        operator = self.get(name)
        if operator is None:
            # Assigned by hand to someone the team does not know (any more):
            # nothing to count against.
            return self
        return self.with_operator(evolve(operator, load=operator.load + delta))

    def accounted(self, before: Conversation | None, after: Conversation) -> Team:
        """This team with the loads moved from C{before} to C{after}."""
        team = self
        if before is not None and before.holds_assignee_load:
            assert before.assignee is not None
            team = team.with_load(before.assignee, -1)
        if after.holds_assignee_load:
            assert after.assignee is not None
            team = team.with_load(after.assignee, +1)
        return team

    def choose(self, exclude: frozenset[str] = frozenset()) -> str | None:
        """
        The next online operator with room after C{last_chosen}, in name
        order, other than C{exclude}; None when nobody has room.
        """
        candidates = [o.name for o in self.operators if o.has_room and o.name not in exclude]
        if not candidates:
            return None
        if self.last_chosen is not None:
            for name in candidates:
                if name > self.last_chosen:
                    return name
        return candidates[0]
