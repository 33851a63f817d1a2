"""
One conversation's events at a time, different conversations side by side:
the driver's serial queues ("lanes"), bounded.

Each key (a conversation id) has its own FIFO lane; a job starts when its
lane has nothing running. The team's lane (key None) waits for every job
running before it and holds every job queued after it: a team event moves
conversations anywhere. A job that finds it reaches beyond its own
conversation asks for its turn alone (L{Turn.alone}): no job starts after
that, and it resumes once the others running have finished or are
waiting to run alone themselves (they then run alone in turn, in the order
they asked).

Bounded: at most C{max_per_conversation} jobs queued or running for one
key, C{max_total} in all; past either the job is refused with
L{LaneFull}, at once, and nothing of it runs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.python.failure import Failure

__all__ = ["DEFAULT_MAX_PER_CONVERSATION", "DEFAULT_MAX_TOTAL", "LaneFull", "Lanes", "Turn"]

#: Events one conversation may have waiting or running (a visitor typing
#: fast, an operator clicking): more is a client misbehaving.
DEFAULT_MAX_PER_CONVERSATION = 100
#: Events waiting or running in all.
DEFAULT_MAX_TOTAL = 10_000


class LaneFull(Exception):  # noqa: N818 - says what happened
    """An event was refused: too many wait already. Nothing of it ran."""

    def __init__(self, key: str | None, limit: int, setting: str) -> None:
        subject = "the team" if key is None else f"conversation {key}"
        where = subject if setting == "max_per_conversation" else "the inbox"
        super().__init__(f"{where} already has {limit} events waiting ({setting}): refused")
        self.key = key
        self.limit = limit
        self.setting = setting


@dataclass(eq=False)
class Turn:
    """A running job's hold on its lane."""

    key: str | None
    lanes: Lanes
    alone: bool = False

    def wait_alone(self) -> Deferred[None]:
        """
        @return: a Deferred firing with None once no other job runs; none
            starts from now until this job ends.
        """
        return self.lanes._wait_alone(self)


@dataclass(eq=False)
class _Job:
    key: str | None
    number: int
    work: Callable[[Turn], Deferred[Any]]
    done: Deferred[Any] = field(default_factory=Deferred)


class Lanes:
    def __init__(self, max_per_conversation: int = DEFAULT_MAX_PER_CONVERSATION,
                 max_total: int = DEFAULT_MAX_TOTAL) -> None:
        if max_per_conversation < 1 or max_total < 1:
            raise ValueError("lane bounds are 1 or more")
        self.max_per_conversation = max_per_conversation
        self.max_total = max_total
        self._pending: dict[str | None, deque[_Job]] = {}
        self._running: dict[str | None, Turn] = {}
        self._counts: dict[str | None, int] = {}
        self._total = 0
        self._numbers = 0
        self._alone: Turn | None = None
        self._alone_waiting: deque[tuple[Turn, Deferred[None]]] = deque()
        self._pumping = False
        self._again = False
        self._idle: list[Deferred[None]] = []

    def submit(self, key: str | None, work: Callable[[Turn], Deferred[Any]]) -> Deferred[Any]:
        """
        Run C{work(turn)} in C{key}'s lane.

        @return: a Deferred firing with what C{work}'s Deferred fires with
            (or failing as it fails), or failing with L{LaneFull} at once.
        """
        if self._counts.get(key, 0) >= self.max_per_conversation:
            return fail(LaneFull(key, self.max_per_conversation, "max_per_conversation"))
        if self._total >= self.max_total:
            return fail(LaneFull(key, self.max_total, "max_total"))
        self._numbers += 1
        job = _Job(key, self._numbers, work)
        self._counts[key] = self._counts.get(key, 0) + 1
        self._total += 1
        self._pending.setdefault(key, deque()).append(job)
        self._pump()
        return job.done

    def waiting(self, key: str | None) -> int:
        """Jobs of C{key} queued or running."""
        return self._counts.get(key, 0)

    @property
    def total(self) -> int:
        return self._total

    def idle(self) -> Deferred[None]:
        """@return: a Deferred firing with None once no job waits or runs."""
        if not self._total:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._idle.append(waiter)
        return waiter

    # -- scheduling ----------------------------------------------------------

    def _pump(self) -> None:
        """Start every job that may start (looping, not recursing, when jobs end at once)."""
        if self._pumping:
            self._again = True
            return
        self._pumping = True
        try:
            self._again = True
            while self._again:
                self._again = False
                self._start_ready()
        finally:
            self._pumping = False

    def _start_ready(self) -> None:
        if self._alone is not None or self._alone_waiting:
            return
        team = self._pending.get(None)
        team_first = team[0].number if team else None
        for key, lane in list(self._pending.items()):
            if key is None or key in self._running:
                continue
            if team_first is not None and lane[0].number > team_first:
                continue
            self._start(lane.popleft())
            if self._alone is not None or self._alone_waiting:
                return
        if team and not self._running:
            self._start(team.popleft(), alone=True)

    def _start(self, job: _Job, alone: bool = False) -> None:
        lane = self._pending[job.key]
        if not lane:
            del self._pending[job.key]
        turn = Turn(job.key, self, alone)
        self._running[job.key] = turn
        if alone:
            self._alone = turn
        result = maybeDeferred(job.work, turn)
        result.addBoth(self._finished, job)

    def _finished(self, result: Any, job: _Job) -> None:
        turn = self._running.pop(job.key)
        if self._alone is turn:
            self._alone = None
        self._counts[job.key] -= 1
        if not self._counts[job.key]:
            del self._counts[job.key]
        self._total -= 1
        if isinstance(result, Failure):
            job.done.errback(result)
        else:
            job.done.callback(result)
        self._check_alone()
        if not self._total:
            idle, self._idle = self._idle, []
            for waiter in idle:
                waiter.callback(None)
        self._pump()

    def _wait_alone(self, turn: Turn) -> Deferred[None]:
        if turn.alone:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._alone_waiting.append((turn, waiter))
        self._check_alone()
        return waiter

    def _check_alone(self) -> None:
        """Let the first job waiting to run alone go, once the others have stopped or wait too."""
        if self._alone is not None or not self._alone_waiting:
            return
        parked = {waiting.key for waiting, _ in self._alone_waiting}
        if not set(self._running) <= parked:
            return
        turn, waiter = self._alone_waiting.popleft()
        turn.alone = True
        self._alone = turn
        waiter.callback(None)
