"""
What the last reload did, for monitoring: a refused reload leaves the daemon
running the previous config, which only a log line said until now.

Prometheus' own convention (its C{prometheus_config_last_reload_successful}
and C{..._success_timestamp_seconds}): the config loaded at start counts as
the first success; a refused reload sets the flag to 0 and leaves the time of
the last success where it was.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from twisted.internet.interfaces import IReactorTime

from wsdaemon.config import ConfigError

__all__ = ["ReloadCollector", "ReloadStatus", "with_reload_status"]


@dataclass(frozen=True)
class _Refusal:
    """
    Where a refused config was wrong (its message is in the log, not here:
    /healthz answers without a key).
    """

    file: str | None
    line: int | None
    section: str | None
    key: str | None


class ReloadStatus:
    """
    The outcome of the last reload, on C{clock}; made when the config has
    been loaded at start.

    @ivar successful: whether the last reload (or the start) took effect.
    @ivar last_success_at: when the running config was loaded (start or
        reload), in seconds since the epoch.
    @ivar last_attempt_at: when the last reload was asked for (None: never).
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self.successful = True
        self.last_success_at = clock.seconds()
        self.last_attempt_at: float | None = None
        self._refusal: _Refusal | None = None

    def succeeded(self) -> None:
        self.successful = True
        self.last_success_at = self.last_attempt_at = self._clock.seconds()
        self._refusal = None

    def refused(self, error: Exception) -> None:
        """
        @param error: why: a L{ConfigError} says where; anything else is a
            failure while building (logged with its traceback).
        """
        self.successful = False
        self.last_attempt_at = self._clock.seconds()
        if isinstance(error, ConfigError):
            self._refusal = _Refusal(error.path, error.line, error.section, error.key)
        else:
            self._refusal = _Refusal(None, None, None, None)

    def describe(self) -> dict[str, Any]:
        """
        @return: the C{"reload"} object of /healthz.
        """
        refusal = self._refusal
        return {
            "successful": self.successful, "last_success_at": self.last_success_at,
            "last_attempt_at": self.last_attempt_at,
            "refused": None if refusal is None else {
                "file": refusal.file, "line": refusal.line, "section": refusal.section,
                "key": refusal.key},
        }


class ReloadCollector:
    """
    The two reload gauges for /metrics.
    """

    def __init__(self, status: ReloadStatus) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "wsdaemon_config_last_reload_successful",
            "1 if the last reload (or the start) loaded the config, 0 if it was refused "
            "(the previous config still runs)", value=1 if self.status.successful else 0)
        yield GaugeMetricFamily(
            "wsdaemon_config_last_reload_success_timestamp_seconds",
            "When the running config was loaded (start or reload), in seconds since the "
            "epoch", value=self.status.last_success_at)


def with_reload_status(route: bytes, status: int, content_type: bytes, body: bytes,
                       reloads: ReloadStatus) -> tuple[int, bytes, bytes]:
    """
    A supervisor's admin answer (its workers' combined) with what only the
    supervisor knows: the outcome of its last reload (it reads and checks
    the config, and passes SIGHUP on only if it is good). Its workers do not
    report theirs in /metrics; each one's is in /healthz's C{each}.

    @param route: the request's path, without the query.
    @return: the answer, with C{reloads} in /metrics and /healthz.
    """
    if route == b"/metrics" and status == 200:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(ReloadCollector(reloads))
        return status, content_type, body.rstrip(b"\n") + b"\n" + generate_latest(registry)
    if route == b"/healthz" and status in (200, 503):
        try:
            health = json.loads(body)
        except ValueError:
            return status, content_type, body
        if isinstance(health, dict):
            health["reload"] = reloads.describe()
            body = (json.dumps(health) + "\n").encode("utf-8")
    return status, content_type, body
