"""
Redis going away, for what daemons share beside conversations (whose
outages are test_conversations_outages.py's): pushes, the routes that do not
need Redis, and what /healthz and /metrics say, until the daemons recover
by themselves.
"""

from __future__ import annotations

from typing import Any

import pytest
from websockets.sync.client import connect

from tests.integration.test_redis_daemons import Cluster, admin, closing, cluster, no_more
from tests.redis_server import RedisServer

__all__ = ["closing", "cluster"]  # fixtures, shared with test_redis_daemons

pytestmark = pytest.mark.slow


def test_a_push_during_an_outage_is_delivered_here_and_said_so(
        cluster: Cluster, redis_server: RedisServer, closing: list[Any]) -> None:
    """
    Redis stopped: /echo keeps serving; a push through A reaches A's
    clients and answers 503 saying the other daemons did not get it (B's
    client never does, not even once Redis is back); /healthz says
    "degraded" (still 200) and /metrics the outage and the failed push.
    Redis back: both daemons recover by themselves, a push reaches both,
    and /healthz counts one outage.
    """
    a, b = cluster.start("a"), cluster.start("b")
    on_a, on_b = connect(f"{a.url}/echo"), connect(f"{b.url}/echo")
    closing.extend([on_a, on_b])
    redis_server.stop()
    a.wait_for_log("redis: unreachable", timeout=10)
    on_a.send("still here")
    assert on_a.recv(timeout=5) == "still here"
    status, body = admin(a, "/push", {"route": "/echo", "text": "during the outage"})
    assert status == 503, body
    assert body["error"] == ("Redis unavailable: delivered on this daemon only, not to the "
                             "other daemons; try again")
    assert on_a.recv(timeout=5) == "during the outage"
    status, health = admin(a, "/healthz")
    assert (status, health["status"], health["broker"]["up"]) == (200, "degraded", False)
    metrics = admin(a, "/metrics")[1]
    assert "wsdaemon_broker_up 0.0" in metrics
    assert 'wsdaemon_push_calls_total{outcome="error",target="route"} 1.0' in metrics

    redis_server.start()
    a.wait_for_log("redis: reachable again", timeout=15)
    b.wait_for_log("redis: reachable again", timeout=15)
    status, body = admin(a, "/push", {"route": "/echo", "text": "after the outage"})
    assert (status, body["delivered"]) == (200, 1), body
    assert on_a.recv(timeout=5) == "after the outage"
    assert on_b.recv(timeout=5) == "after the outage"  # not "during the outage" first
    no_more(on_a, on_b)
    status, health = admin(a, "/healthz")
    assert (health["status"], health["broker"]["up"], health["broker"]["outages"]) == \
        ("ok", True, 1)
