"""
A reload's outcome, where monitoring looks: /metrics (Prometheus' own
convention: ..._config_last_reload_successful and
..._config_last_reload_success_timestamp_seconds) and /healthz, for one
process and for a supervisor with workers.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import Daemon, free_port
from tests.integration.test_service_daemon import KEY, Admin, config_text

pytestmark = pytest.mark.slow

SUCCESSFUL = "wsdaemon_config_last_reload_successful"
SUCCESS_AT = "wsdaemon_config_last_reload_success_timestamp_seconds"


def reload_metrics(admin: Admin) -> tuple[float, float]:
    """(last reload successful, time of the last success) from /metrics; each
    family exactly once."""
    status, text = admin.call("/metrics", key=None)
    assert status == 200
    values = []
    for name in (SUCCESSFUL, SUCCESS_AT):
        assert text.count(f"# TYPE {name} gauge") == 1, text
        found = re.findall(rf"^{name} (\S+)$", text, re.M)
        assert len(found) == 1, text
        values.append(float(found[0]))
    return values[0], values[1]


def health_reload(admin: Admin) -> dict[str, Any]:
    status, health = admin.call("/healthz", key=None)
    # A refused reload leaves the daemon serving: still ready.
    assert status == 200 and health["ready"] is True, health
    reload: dict[str, Any] = health["reload"]
    return reload


def sighup(daemon: Daemon, wait_for: str, count: int) -> str:
    """Send SIGHUP and wait until C{wait_for} has been logged C{count} times."""
    daemon.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        log = daemon.log()
        if log.count(wait_for) >= count:
            return log
        time.sleep(0.05)
    raise AssertionError(f"{wait_for!r} not logged {count} times:\n{daemon.log()}")


def test_reload_outcome_in_metrics_and_health(
    write_config: Callable[..., Path], start_daemon: Callable[..., Daemon]
) -> None:
    """At start the config counts as loaded; a good reload moves the success
    time on; a refused one sets ..._successful to 0 and /healthz says where
    the mistake is, keeping the time of the last success; fixed, 1 again."""
    port = free_port()
    path = write_config(config_text(port))
    started = time.time()
    daemon = start_daemon(path)
    daemon.wait_for_log("#info] ready")
    admin = Admin(port)
    successful, at_start = reload_metrics(admin)
    assert successful == 1 and started - 1 <= at_start <= time.time()
    reload = health_reload(admin)
    assert reload["successful"] is True and reload["last_success_at"] == at_start
    assert reload["last_attempt_at"] is None and reload["refused"] is None

    time.sleep(0.05)
    good = path.read_text() + "\n[route:/more]\nstrategy = echo\n"
    path.write_text(good)
    sighup(daemon, "reloaded", 1)
    successful, at_good = reload_metrics(admin)
    assert successful == 1 and at_good > at_start
    assert health_reload(admin)["last_attempt_at"] == at_good

    path.write_text(good.replace("[route:/more]\nstrategy = echo",
                                 "[route:/more]\nstrategy = ecco"))
    sighup(daemon, "reload refused", 1)
    successful, at = reload_metrics(admin)
    assert (successful, at) == (0, at_good)
    reload = health_reload(admin)
    line = path.read_text().splitlines().index("strategy = ecco") + 1
    assert reload["successful"] is False and reload["last_success_at"] == at_good
    assert reload["last_attempt_at"] > at_good
    assert reload["refused"] == {"file": str(path), "line": line, "section": "route:/more",
                                 "key": "strategy"}

    path.write_text(good)
    sighup(daemon, "reloaded", 2)
    successful, at_fixed = reload_metrics(admin)
    assert successful == 1 and at_fixed > at_good
    assert health_reload(admin)["refused"] is None


def test_reload_refused_by_the_supervisor_shows_with_workers(
    write_config: Callable[..., Path], start_daemon: Callable[..., Daemon]
) -> None:
    """With workers, the supervisor decides (it reads and checks the config
    first): a reload it refuses (here: the number of workers changed, which
    no worker checks) shows in the daemon's /metrics, once, and /healthz."""
    port = free_port()
    path = write_config(f"""
        [wsdaemon]
        listen = tcp:0:interface=127.0.0.1
        workers = 2

        [admin]
        listen = tcp:{port}:interface=127.0.0.1
        api_keys = ops:{KEY}

        [route:/echo]
        strategy = echo
    """)
    daemon = start_daemon(path)
    daemon.wait_for_log("ready: 2 workers listening", timeout=20)
    admin = Admin(port)
    assert reload_metrics(admin)[0] == 1

    path.write_text(path.read_text() + "\n[route:/more]\nstrategy = echo\n")
    sighup(daemon, "reload passed on to 2 workers", 1)
    daemon.wait_for_log("reloaded", timeout=10)
    successful, at_good = reload_metrics(admin)
    assert successful == 1

    path.write_text(path.read_text().replace("workers = 2", "workers = 3"))
    sighup(daemon, "reload refused", 1)
    successful, at = reload_metrics(admin)
    assert (successful, at) == (0, at_good)
    reload = health_reload(admin)
    assert reload["successful"] is False and reload["last_success_at"] == at_good
    assert reload["refused"]["key"] == "workers"
