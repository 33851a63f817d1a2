"""
RFC 6455 conformance: the Autobahn|Testsuite cases 1-10 against the echo
route of the real daemon, with zero FAILED cases. (Cases 12-13, with
compression, take ~11 minutes: `make conformance` runs them by hand.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.daemon import REPO

pytestmark = pytest.mark.slow

sys.path.insert(0, str(REPO / "scripts"))
import conformance  # noqa: E402

sys.path.remove(str(REPO / "scripts"))


def test_autobahn_testsuite_cases_1_to_10(tmp_path: Path) -> None:
    """The echo route passes Autobahn|Testsuite cases 1-10 with zero FAILED."""
    require_tool(conformance.WSTEST.exists(), "wstest (scripts/install-wstest.sh)")
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "conformance.py"), "--cases", "1-10",
         "--report", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    print(result.stdout, result.stderr)
    assert result.returncode == 0, result.stdout + result.stderr
    (summary,) = [line for line in result.stdout.splitlines() if line.startswith("/echo:")]
    fields = dict(item.split("=") for item in summary.split()[1:])
    assert int(fields["cases"]) > 290
    assert fields["failed"] == "0"
