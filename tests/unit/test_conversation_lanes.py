"""
The driver's lanes: one job per key at a time, FIFO; the team's lane waits
for all and holds later jobs; jobs that ask to run alone do, one after the
other, without waiting on each other; bounds refuse at once.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred

from wsdaemon.support.lanes import LaneFull, Lanes, Turn


class Jobs:
    """Jobs that start, record it, and end when the test says."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.ends: dict[str, Deferred[Any]] = {}

    def job(self, name: str, ask: Deferred[None] | None = None) -> Any:
        """C{ask}: once it fires, the job asks to run alone."""
        def work(turn: Turn) -> Deferred[Any]:
            self.started.append(name)
            end: Deferred[Any] = Deferred()
            self.ends[name] = end
            if ask is None:
                return end

            async def then() -> Any:
                await ask
                await turn.wait_alone()
                self.started.append(name + " alone")
                return await end
            return Deferred.fromCoroutine(then())
        return work

    def end(self, name: str) -> None:
        self.ends.pop(name).callback(name)


def test_fifo_per_key_and_keys_side_by_side() -> None:
    """A key's second job starts when its first ends; another key's job starts at once."""
    lanes, jobs = Lanes(), Jobs()
    first = lanes.submit("a", jobs.job("a1"))
    lanes.submit("a", jobs.job("a2"))
    lanes.submit("b", jobs.job("b1"))
    assert jobs.started == ["a1", "b1"]
    jobs.end("a1")
    assert first.result == "a1"
    assert jobs.started == ["a1", "b1", "a2"]


def test_team_waits_for_all_and_holds_later_jobs() -> None:
    """The team's job starts once everything before it ended; jobs after it wait for it."""
    lanes, jobs = Lanes(), Jobs()
    lanes.submit("a", jobs.job("a1"))
    lanes.submit(None, jobs.job("team"))
    lanes.submit("b", jobs.job("b1"))
    assert jobs.started == ["a1"]
    jobs.end("a1")
    assert jobs.started == ["a1", "team"]
    jobs.end("team")
    assert jobs.started == ["a1", "team", "b1"]


def test_two_jobs_asking_to_run_alone() -> None:
    """Two running jobs that both ask to run alone go one after the other, in asking order."""
    lanes, jobs = Lanes(), Jobs()
    ask_a: Deferred[None] = Deferred()
    ask_b: Deferred[None] = Deferred()
    lanes.submit("a", jobs.job("a", ask_a))
    lanes.submit("b", jobs.job("b", ask_b))
    ask_a.callback(None)
    assert jobs.started == ["a", "b"]  # a waits for b
    lanes.submit("c", jobs.job("c"))
    ask_b.callback(None)
    assert jobs.started == ["a", "b", "a alone"]  # b waits too: a goes first
    jobs.end("a")
    assert jobs.started == ["a", "b", "a alone", "b alone"]
    jobs.end("b")
    assert jobs.started[-1] == "c"


def test_bounds() -> None:
    """Past a key's bound or the total, a job is refused at once and never runs."""
    lanes, jobs = Lanes(max_per_conversation=1, max_total=2), Jobs()
    lanes.submit("a", jobs.job("a1"))
    refused = lanes.submit("a", jobs.job("a2"))
    refused.addErrback(lambda f: f.trap(LaneFull))
    lanes.submit("b", jobs.job("b1"))
    total: list[Any] = []
    lanes.submit("c", jobs.job("c1")).addErrback(total.append)
    assert total[0].value.setting == "max_total"
    assert jobs.started == ["a1", "b1"]
    with pytest.raises(ValueError):
        Lanes(max_per_conversation=0)
