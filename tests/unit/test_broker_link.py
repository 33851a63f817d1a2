"""
The Redis link when Redis is not there: calls fail after the timeout with a
clear error instead of waiting forever, and the outage shows in its status.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor

from tests.daemon import free_port
from wsdaemon.broker.link import BrokerSettings, BrokerUnavailable, RedisLink


@pytest_twisted.inlineCallbacks
def test_calls_fail_after_the_timeout_when_redis_is_unreachable() -> Iterator[Any]:
    """Nothing listens: a call fails with BrokerUnavailable; status says down."""
    port = free_port()  # nothing listens there
    link = RedisLink(BrokerSettings(url=f"redis://127.0.0.1:{port}", port=port, timeout=0.3,
                                    heartbeat=10, daemon_id="lonely"), reactor)
    link.start()
    try:
        started = reactor.seconds()
        with pytest.raises(BrokerUnavailable, match="did not answer PING within 0.3 s"):
            yield link.call("PING")
        assert reactor.seconds() - started < 2.0
        status = link.status()
        assert (status["up"], status["outages"], status["daemon_id"]) == (False, 1, "lonely")
        assert status["calls_failed"] >= 1 and status["down_for"] is not None
        with pytest.raises(BrokerUnavailable):
            yield link.script("heartbeat", "lonely", 0, 0, 1)
        assert link.status()["outages"] == 1  # one outage, however many calls fail
    finally:
        yield link.stop()
