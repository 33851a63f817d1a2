"""
Combining the workers' admin answers into the daemon's.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

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
    """Counters and per-process gauges: same name and labels, one series, the
    sum; HELP/TYPE once each."""
    merged = merge_metrics({0: METRICS % (2, 10), 1: METRICS % (3, 5)})
    assert 'wsdaemon_connections{route="/echo"} 5.0' in merged
    assert 'wsdaemon_messages_received_total{route="/echo"} 15.0' in merged
    assert 'wsdaemon_messages_received_total{route="/bot"} 2.0' in merged
    assert merged.count("# TYPE wsdaemon_messages_received_total counter") == 1


WORKER = """# HELP wsdaemon_connections Open client connections
# TYPE wsdaemon_connections gauge
wsdaemon_connections{{route="/echo"}} {open}.0
# HELP wsdaemon_messages_received_total Messages received from clients
# TYPE wsdaemon_messages_received_total counter
wsdaemon_messages_received_total{{route="/echo"}} {received}.0
# HELP wsdaemon_conversations Live conversations by state
# TYPE wsdaemon_conversations gauge
wsdaemon_conversations{{state="unassigned"}} {unassigned}.0
wsdaemon_conversations{{state="assigned"}} 1.0
# HELP wsdaemon_conversation_oldest_wait_seconds How long the longest-waiting visitor has waited
# TYPE wsdaemon_conversation_oldest_wait_seconds gauge
wsdaemon_conversation_oldest_wait_seconds {age}
# HELP wsdaemon_conversation_operators Operators by availability
# TYPE wsdaemon_conversation_operators gauge
wsdaemon_conversation_operators{{availability="online"}} 2.0
# HELP wsdaemon_ready 1 once every listener is bound and the store is open
# TYPE wsdaemon_ready gauge
wsdaemon_ready {ready}.0
# HELP wsdaemon_broker_up 1 while Redis answers, 0 during an outage
# TYPE wsdaemon_broker_up gauge
wsdaemon_broker_up 1.0
# HELP wsdaemon_broker_outages_total Times Redis became unreachable
# TYPE wsdaemon_broker_outages_total counter
wsdaemon_broker_outages_total 1.0
"""


def worker(open: int = 2, received: int = 10, unassigned: int = 3, age: float = 4.5,
           ready: int = 1) -> str:
    return WORKER.format(open=open, received=received, unassigned=unassigned, age=age,
                         ready=ready)


def series(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition (which must parse), by name and labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in found, key
            found[key] = sample.value
    return found


def test_metrics_of_shared_state_are_taken_once() -> None:
    """Three workers each reporting the conversations they share: the
    conversations' gauges and the operators by availability once (the
    lowest-numbered worker's family, one snapshot); open connections and
    counters summed; ready and the broker link 1 since every worker's is;
    the workers expected and answering."""
    merged = series(merge_metrics({0: worker(open=1, received=5, age=4.25),
                                   1: worker(open=2, received=6, age=4.5, unassigned=4),
                                   2: worker(open=4, received=7, age=4.0)}, expected=3))
    assert merged == {
        ("wsdaemon_connections", (("route", "/echo"),)): 7.0,
        ("wsdaemon_messages_received_total", (("route", "/echo"),)): 18.0,
        ("wsdaemon_conversations", (("state", "unassigned"),)): 3.0,
        ("wsdaemon_conversations", (("state", "assigned"),)): 1.0,
        ("wsdaemon_conversation_oldest_wait_seconds", ()): 4.25,
        ("wsdaemon_conversation_operators", (("availability", "online"),)): 2.0,
        ("wsdaemon_ready", ()): 1.0,
        ("wsdaemon_broker_up", ()): 1.0,
        ("wsdaemon_broker_outages_total", ()): 3.0,
        ("wsdaemon_workers", ()): 3.0,
        ("wsdaemon_workers_answering", ()): 3.0,
    }


def test_ready_is_1_only_when_every_worker_is_ready_and_answering() -> None:
    """One worker not ready, or one of three not answering: wsdaemon_ready 0;
    the shared conversations then come from the lowest-numbered worker answering."""
    one_not_ready = series(merge_metrics({0: worker(), 1: worker(ready=0), 2: worker()},
                                         expected=3))
    assert one_not_ready[("wsdaemon_ready", ())] == 0.0
    one_missing = series(merge_metrics({1: worker(unassigned=5), 2: worker()}, expected=3))
    assert one_missing[("wsdaemon_ready", ())] == 0.0
    assert one_missing[("wsdaemon_broker_up", ())] == 0.0
    assert one_missing[("wsdaemon_conversations", (("state", "unassigned"),))] == 5.0
    assert one_missing[("wsdaemon_workers_answering", ())] == 2.0


def test_a_gauge_without_a_declared_merge_is_labelled_by_worker() -> None:
    """A gauge metrics.py does not declare is neither summed nor dropped:
    each worker's series with a worker label (prometheus_client's
    multiprocess default for gauges)."""
    text = ("# HELP wsdaemon_new A new gauge\n# TYPE wsdaemon_new gauge\n"
            'wsdaemon_new{{a="x"}} {}\n')
    merged = series(merge_metrics({0: text.format(1.5), 2: text.format(2.5)}))
    assert merged == {("wsdaemon_new", (("a", "x"), ("worker", "0"))): 1.5,
                      ("wsdaemon_new", (("a", "x"), ("worker", "2"))): 2.5}


def test_every_family_of_the_collector_declares_how_workers_merge() -> None:
    """Each family a daemon's collector yields (with a webhook route and
    Redis) has a declared merge; a counter's is the sum."""
    from wsdaemon.connections.stats import RouteStats
    from wsdaemon.server.admin import PushCounters
    from wsdaemon.server.metrics import WORKER_MERGE, DaemonCollector, Merge
    from wsdaemon.strategies.webhook.stats import HookStats

    class Factory:
        stats = RouteStats()

    class Index:
        def count_by_route(self) -> dict[str, int]:
            return {"/echo": 1}

    class Hook:
        stats = RouteStats()

        class route:  # noqa: N801 - the attribute's name
            class strategy:  # noqa: N801
                hook_stats = HookStats()

    Hook.route.strategy.hook_stats.observe(0.2)
    Hook.route.strategy.hook_stats.errors["timeout"] += 1

    class Source:
        factories: dict[str, Any] = {"/echo": Factory(), "/hook": Hook()}
        operator_channel = None
        index = Index()
        ready = True

        def broker_status(self) -> dict[str, Any]:
            return {"backend": "redis", "up": True, "outages": 0, "calls_failed": 0}

    families = list(DaemonCollector(Source(), PushCounters()).collect())
    assert "wsdaemon_webhook_latency_seconds" in {f.name for f in families}
    assert {f.name for f in families} <= set(WORKER_MERGE)
    for family in families:
        if family.type == "counter":
            assert WORKER_MERGE[family.name] is Merge.SUM, family.name


def test_health_is_ready_only_when_every_worker_is() -> None:
    """All ready and all answering: ready; one missing or not ready: degraded."""
    health = _COMBINERS[b"/healthz"]
    one = {"status": "ok", "ready": True, "connections": 2, "version": "x"}
    assert health([one, one], 2)["ready"] is True
    assert health([one], 2)["ready"] is False and health([one], 2)["status"] == "degraded"
    assert health([one, {**one, "ready": False}], 2)["ready"] is False
    assert health([one, one], 2)["connections"] == 4


def test_health_carries_the_operator_component_once() -> None:
    """What the operator component says (of the conversations the workers
    share) is in the combined answer once, the first answer's, not summed;
    what a worker says of itself (its timers) is not."""
    health = _COMBINERS[b"/healthz"]
    one = {"status": "ok", "ready": True, "connections": 1, "version": "x",
           "pending_timers": 3, "reload": {"last": None}}
    talk = {**one, "conversations": {"started": True, "open": 7}}
    later = {**one, "conversations": {"started": True, "open": 8}}
    assert health([talk, later], 2)["conversations"] == {"started": True, "open": 7}
    assert "pending_timers" not in health([talk, later], 2)


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


def test_listed_clients_and_connections_name_their_worker() -> None:
    """/clients and /routes/connections entries, and each /healthz, say
    which worker answered; other answers are left as they are."""
    from wsdaemon.server.aggregate import Reply, _named

    def reply(worker: int, body: str) -> Reply:
        return Reply(worker, 200, b"application/json", body.encode())

    clients = _named(reply(2, '{"count": 1, "clients": [{"session_id": "s"}]}'), b"/clients")
    assert clients["clients"] == [{"session_id": "s", "worker": 2}]
    listed = _named(reply(1, '{"route": "/e", "connections": [{"session_id": "t"}]}'),
                    b"/routes/connections")
    assert listed["connections"] == [{"session_id": "t", "worker": 1}]
    assert _named(reply(0, '{"ready": true}'), b"/healthz") == {"ready": True, "worker": 0}
    assert _named(reply(0, '{"routes": []}'), b"/routes") == {"routes": []}
    combined = _COMBINERS[b"/clients"]([clients, _named(reply(0, '{"clients": [{}]}'),
                                                         b"/clients")], 2)
    assert sorted(c["worker"] for c in combined["clients"]) == [0, 2]


class _Workers:
    """Three workers that answer every push; records which got each."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    def paths(self) -> dict[int, str]:
        return {0: "w0", 1: "w1", 2: "w2"}

    def all(self, method: bytes, path: bytes, headers: Any, body: bytes | None,
            only: Any = None) -> Any:
        from twisted.internet.defer import succeed

        from wsdaemon.server.aggregate import Reply

        self.asked.extend(only)
        return succeed([Reply(only[0], 200, b"application/json",
                              b'{"delivered": 1, "failed": 0}')])


def test_a_retried_push_reaches_the_worker_that_remembers_its_key() -> None:
    """With Redis each push goes to one worker; the same Idempotency-Key
    always to the same one (which remembers it and answers a retry without
    sending again), other pushes in turn."""
    from twisted.web.http_headers import Headers

    from wsdaemon.server.aggregate import AggregateResource

    workers = _Workers()
    resource = AggregateResource(workers, lambda: 3, shared_push=True)  # type: ignore[arg-type]

    def push(key: str | None) -> int:
        headers = Headers({b"idempotency-key": [key.encode()]} if key else {})
        before = len(workers.asked)
        resource._answer(b"POST", b"/push", headers, b'{"all": true, "text": "x"}')
        assert len(workers.asked) == before + 1
        return workers.asked[-1]

    for key in ("order-17", "order-18", "a" * 200):
        first = push(key)
        assert [push(key) for _ in range(5)] == [first] * 5, key
    assert len({push(None) for _ in range(3)}) == 3


def _worker_page(numbers: list[int], since: int, limit: int, mark: int) -> dict[str, Any]:
    """A worker's answer to /journal: its first `limit` entries above since."""
    above = [n for n in numbers if n > since]
    page: dict[str, Any] = {"count": len(above), "last": mark,
                            "entries": [{"seq": n} for n in above[:limit]]}
    if len(above) > limit:
        page["next"] = above[limit - 1] if limit else since
    return page


def test_journal_pages_hold_at_most_limit_and_every_entry_once() -> None:
    """Two workers recording while a client pages with limit=5 (each
    worker answering at a slightly different moment): no page is over 5,
    and the pages list every entry of both exactly once, in order (pages
    used to be the workers' pages joined: 10 entries, and next repeated)."""
    import random

    journal = _COMBINERS[b"/journal"]
    chance = random.Random(21)
    recorded: list[list[int]] = [[], []]
    now = 0

    def record(until: int) -> None:
        nonlocal now
        while now < until:
            now += 1
            for worker in (0, 1):
                if chance.random() < 0.6:  # number = time, in the worker's residue
                    recorded[worker].append(2 * now + worker)

    pages: list[list[int]] = []
    since = 0
    for round_ in range(400):
        traffic = round_ < 200
        if traffic:
            record(now + chance.randint(0, 3))
        answers = []
        for worker in (0, 1):
            if traffic:
                record(now + chance.randint(0, 2))  # the other worker answers later
            answers.append(_worker_page(recorded[worker], since, 5, 2 * now + 2 + worker))
        page = journal(answers, 2, 5, since)
        pages.append([e["seq"] for e in page["entries"]])
        assert page["count"] >= len(page["entries"])
        if "next" in page:
            since = page["next"]
        elif not traffic:
            break
        elif page["entries"]:  # all there is for now: later entries come after it
            since = page["entries"][-1]["seq"]
    listed = [n for page in pages for n in page]
    assert max(len(page) for page in pages) <= 5
    assert listed == sorted(recorded[0] + recorded[1])


def test_journal_page_from_a_lagging_worker_is_cut_where_it_answered() -> None:
    """A worker that answered whole up to its last does not let another
    worker's later entries into the page: they come with the next one."""
    journal = _COMBINERS[b"/journal"]
    a = {"count": 2, "last": 25, "entries": [{"seq": 10}, {"seq": 20}]}
    b = {"count": 2, "last": 41, "entries": [{"seq": 15}, {"seq": 40}]}
    page = journal([a, b], 2, 5, 0)
    assert [e["seq"] for e in page["entries"]] == [10, 15, 20]
    assert (page["count"], page["next"], page["last"]) == (4, 20, 41)
    nothing_yet = journal([{"count": 0, "last": 3, "entries": []}, b], 2, 5, 5)
    assert nothing_yet["entries"] == [] and nothing_yet["next"] == 5


def test_journal_page_limit_and_since_come_from_the_request() -> None:
    """GET takes them from the query, POST from the JSON body; the defaults
    otherwise (the workers refused wrong values already)."""
    from wsdaemon.server.aggregate import _page

    assert _page(b"GET", b"/journal?limit=5&since=42", b"") == (5, 42)
    assert _page(b"POST", b"/journal/find", b'{"limit": 7, "since": "9"}') == (7, 9)
    assert _page(b"GET", b"/journal", b"") == (10_000, 0)
    assert _page(b"POST", b"/journal/count", b"not json") == (10_000, 0)
    assert _page(b"GET", "/journal?since=²&limit=１".encode(), b"") == (10_000, 0)


def test_webhook_histograms_of_workers_add_up() -> None:
    """Each bucket, the sum and the count of the hook latency histogram are
    the workers' together."""
    from prometheus_client.core import HistogramMetricFamily
    from prometheus_client.exposition import generate_latest

    from wsdaemon.server.metrics import merge_metrics

    def exposition(count: int) -> str:
        family = HistogramMetricFamily("wsdaemon_webhook_latency_seconds", "x",
                                       labels=["route"])
        family.add_metric(["/hook"], [("0.1", count), ("+Inf", count)], sum_value=0.05 * count)

        class One:
            def collect(self) -> Any:
                yield family

        from prometheus_client import CollectorRegistry

        registry = CollectorRegistry(auto_describe=False)
        registry.register(One())
        return generate_latest(registry).decode()

    merged = merge_metrics({0: exposition(2), 1: exposition(3)})
    assert 'wsdaemon_webhook_latency_seconds_bucket{le="0.1",route="/hook"} 5.0' in merged
    assert 'wsdaemon_webhook_latency_seconds_count{route="/hook"} 5.0' in merged
    assert "# TYPE wsdaemon_webhook_latency_seconds histogram" in merged
