"""
The reload status: Prometheus' convention for a config's last reload, and
its place in /healthz (and in a supervisor's combined answers).
"""

from __future__ import annotations

import json

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock

from wsdaemon.config import ConfigError
from wsdaemon.server.reloads import ReloadCollector, ReloadStatus, with_reload_status


def gauges(status: ReloadStatus) -> dict[str, float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReloadCollector(status))
    text = generate_latest(registry).decode()
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}


def test_start_counts_as_the_first_success() -> None:
    """Loaded at start: successful, at that time, no attempt yet."""
    clock = Clock()
    clock.advance(1000)
    status = ReloadStatus(clock)
    assert gauges(status) == {"wsdaemon_config_last_reload_successful": 1.0,
                              "wsdaemon_config_last_reload_success_timestamp_seconds": 1000.0}
    assert status.describe() == {"successful": True, "last_success_at": 1000.0,
                                 "last_attempt_at": None, "refused": None}


def test_refused_keeps_the_last_success_and_says_where() -> None:
    """A refused reload sets the flag to 0 and keeps the last success's time;
    /healthz gets where the mistake is (file, line, section, key), never the
    message (/healthz needs no key); the next good reload clears it."""
    clock = Clock()
    status = ReloadStatus(clock)
    clock.advance(5)
    status.succeeded()
    clock.advance(5)
    status.refused(ConfigError("/etc/w.ini", "the token of 'a' is short", section="operator",
                               key="tokens", line=7))
    assert gauges(status) == {"wsdaemon_config_last_reload_successful": 0.0,
                              "wsdaemon_config_last_reload_success_timestamp_seconds": 5.0}
    described = status.describe()
    assert described == {"successful": False, "last_success_at": 5.0, "last_attempt_at": 10.0,
                         "refused": {"file": "/etc/w.ini", "line": 7, "section": "operator",
                                     "key": "tokens"}}
    status.refused(RuntimeError("boom"))
    assert status.describe()["refused"] == {"file": None, "line": None, "section": None,
                                            "key": None}
    clock.advance(1)
    status.succeeded()
    assert status.describe() == {"successful": True, "last_success_at": 11.0,
                                 "last_attempt_at": 11.0, "refused": None}


def test_supervisor_answers_carry_its_reload_status() -> None:
    """The supervisor adds its reload status to the combined /metrics and
    /healthz (ready or not), and leaves other answers alone."""
    status = ReloadStatus(Clock())
    status.refused(ConfigError("/c.ini", "x", section="wsdaemon", key="workers", line=2))
    metrics = b"# HELP wsdaemon_ready r\n# TYPE wsdaemon_ready gauge\nwsdaemon_ready 1.0\n"
    code, kind, body = with_reload_status(b"/metrics", 200, b"text/plain", metrics, status)
    names = [f.name for f in text_string_to_metric_families(body.decode())]
    assert names == ["wsdaemon_ready", "wsdaemon_config_last_reload_successful",
                     "wsdaemon_config_last_reload_success_timestamp_seconds"]
    code, kind, body = with_reload_status(b"/healthz", 503, b"application/json",
                                          b'{"ready": false}', status)
    assert code == 503 and json.loads(body)["reload"]["refused"]["key"] == "workers"
    assert with_reload_status(b"/clients", 200, b"application/json", b"{}", status) == \
        (200, b"application/json", b"{}")
    assert with_reload_status(b"/healthz", 502, b"application/json", b"{}", status)[2] == b"{}"
