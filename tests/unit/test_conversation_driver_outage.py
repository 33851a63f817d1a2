"""
The driver's own events (timers, deliveries) while Redis is away: tried
again as ever, but without a traceback each time (the link logs the outage
once); any other failure keeps its traceback.
"""

from __future__ import annotations

from twisted.logger import LogEvent

from tests.driver_bench import cid
from tests.unit.test_conversation_driver import desk
from wsdaemon.conversations import DeliverMessage, OperatorReply, Timer, TimerKind
from wsdaemon.errors import BrokerUnavailable
from wsdaemon.support.driver import TIMER_RETRY


def test_a_timer_due_while_redis_is_away_is_tried_again_quietly(
        failures: list[LogEvent]) -> None:
    """
    Redis away when the fallback comes due, for three retries: each is set
    again TIMER_RETRY later with no traceback; once Redis answers it goes.
    """
    bench = desk(fallback_after=20)
    bench.store.error = BrokerUnavailable("Redis did not answer EVALSHA within 1 s")
    bench.clock.advance(20)
    for _ in range(3):
        bench.clock.advance(TIMER_RETRY)
    assert bench.ports.of(DeliverMessage) == []
    assert bench.driver.timers.pending() == {
        Timer(TimerKind.FALLBACK, cid(v)): 20 + 4 * TIMER_RETRY for v in ("v1", "v2")}
    assert failures == []
    bench.store.error = None
    bench.clock.advance(TIMER_RETRY)
    assert len(bench.ports.of(DeliverMessage)) == 2


def test_other_failures_keep_their_traceback(failures: list[LogEvent]) -> None:
    """A store failure that is not an outage (a disk error) is still logged with it."""
    bench = desk(fallback_after=20)
    bench.store.error = OSError("disk I/O error")
    bench.clock.advance(20)
    assert [e["log_failure"].type for e in failures] == [OSError, OSError]


def test_a_plain_delivery_not_recorded_in_an_outage_is_recorded_later(
        failures: list[LogEvent]) -> None:
    """
    A reply a plain connection took, whose delivery could not be recorded
    because Redis went away just then, is recorded once Redis answers (tried
    again every TIMER_RETRY): else the visitor's next connection would be
    written it a second time (its catch-up starts at what was recorded).
    """
    bench = desk()
    bench.ports.plain = True
    bench.store.gated = True
    reply = bench.driver.submit(OperatorReply(cid("v1"), "alice", "Hi!"))
    bench.store.land(0)
    assert reply.called
    bench.store.refuse(0, BrokerUnavailable("Redis did not answer EVALSHA within 1 s"))
    assert bench.stored("v1").delivered_upto < bench.stored("v1").last_seq
    bench.clock.advance(TIMER_RETRY)
    bench.store.refuse(0, BrokerUnavailable("Redis cannot take EVALSHA now: LOADING"))
    bench.store.gated = False
    bench.clock.advance(TIMER_RETRY)
    assert bench.stored("v1").delivered_upto == bench.stored("v1").last_seq
    assert failures == []
