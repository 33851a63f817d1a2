"""
Combining the workers' admin answers into the daemon's.
"""

from __future__ import annotations

from wsdaemon.server.aggregate import _COMBINERS, _cleared, merge_metrics

METRICS = """# HELP wsdaemon_connections Open connections.
# TYPE wsdaemon_connections gauge
wsdaemon_connections{route="/echo"} %d.0
# HELP wsdaemon_messages_received_total Messages received.
# TYPE wsdaemon_messages_received_total counter
wsdaemon_messages_received_total{route="/echo"} %d.0
wsdaemon_messages_received_total{route="/bot"} 1.0
"""


def test_metrics_are_summed_series_by_series() -> None:
    """Same name and labels: one series, the sum; HELP/TYPE once each."""
    merged = merge_metrics([METRICS % (2, 10), METRICS % (3, 5)])
    assert 'wsdaemon_connections{route="/echo"} 5.0' in merged
    assert 'wsdaemon_messages_received_total{route="/echo"} 15.0' in merged
    assert 'wsdaemon_messages_received_total{route="/bot"} 2.0' in merged
    assert merged.count("# TYPE wsdaemon_messages_received_total counter") == 1


def test_health_is_ready_only_when_every_worker_is() -> None:
    """All ready and all answering: ready; one missing or not ready: degraded."""
    health = _COMBINERS[b"/healthz"]
    one = {"status": "ok", "ready": True, "connections": 2, "version": "x"}
    assert health([one, one], 2)["ready"] is True
    assert health([one], 2)["ready"] is False and health([one], 2)["status"] == "degraded"
    assert health([one, {**one, "ready": False}], 2)["ready"] is False
    assert health([one, one], 2)["connections"] == 4


def test_journals_merge_in_time_order_and_counts_add_up() -> None:
    """Entries of both workers by their (time-based) numbers; next is the
    earliest place a cut answer stopped."""
    journal = _COMBINERS[b"/journal"]
    a = {"count": 2, "last": 50, "entries": [{"seq": 10}, {"seq": 30}]}
    b = {"count": 3, "last": 60, "entries": [{"seq": 20}, {"seq": 40}], "next": 40}
    merged = journal([a, b], 2)
    assert [e["seq"] for e in merged["entries"]] == [10, 20, 30, 40]
    assert (merged["count"], merged["last"], merged["next"]) == (5, 60, 40)


def test_routes_and_clears_add_up() -> None:
    """Per route: connections and journal sizes summed; clears summed."""
    routes = _COMBINERS[b"/routes"]
    one = {"routes": [{"route": "/e", "connections": 2, "journal": {"entries": 5, "bytes": 9,
                                                                    "dropped": 0}}]}
    merged = routes([one, one], 2)["routes"][0]
    assert merged["connections"] == 4 and merged["journal"]["entries"] == 10
    assert _cleared([{"cleared": 3}, {"cleared": 4}], 2) == {"cleared": 7}
