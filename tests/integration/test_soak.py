"""
A short run of bench/soak.py (the by-hand soak lasts 5 minutes): clients,
bot tickers, plain visitors of a conversations route, two operators coming
and going (routing = auto), reloads; then memory, file descriptors and
timers back to baseline, and every question answered exactly once: stored
once, written to its visitor once.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.daemon import REPO

pytestmark = pytest.mark.slow


def test_short_soak() -> None:
    """A short soak ends with memory, fds and timers at baseline."""
    result = subprocess.run([sys.executable, str(REPO / "bench" / "soak.py"), "--minutes", "0.4"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "soak: OK" in result.stdout


def test_short_soak_on_two_daemons_with_a_redis_restart(redis_server: object) -> None:
    """Two daemons on Redis, visitors and operators on either, Redis restarted
    midway: each question not refused answered once (at most once if its
    storing could not be confirmed)."""
    result = subprocess.run([sys.executable, str(REPO / "bench" / "soak.py"), "--minutes", "0.4",
                             "--redis"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "redis restarted" in result.stdout and "soak: OK" in result.stdout
