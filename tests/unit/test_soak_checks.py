"""
The soak's (bench/soak.py) one allowance: an answer written twice to a
plain visitor passes only as the documented price of recording a plain
delivery before writing it (a record that fails while Redis is away still
writes, and the visitor's next connection, through either daemon, gets it
again). Any other double must fail the soak.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from tests.daemon import REPO


def soak() -> ModuleType:
    bench = str(REPO / "bench")
    sys.path.insert(0, bench)
    try:
        spec = importlib.util.spec_from_file_location("soak", REPO / "bench" / "soak.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        # (soak.py puts its folder on the path too, for its clients' module.)
        sys.path[:] = [entry for entry in sys.path if entry != bench]


class Restarted:
    """A Redis stopped at 100 and answering again at 103."""

    down = (100.0, 103.0)


def test_a_second_copy_after_a_record_failed_in_the_outage_is_the_known_limit() -> None:
    """Two copies on two connections (through either daemon), the first
    while Redis was away (or 1 s before: a call's timeout), are the known
    limit."""
    check = soak().around_the_outage
    assert check([("visit 14 to 35817", 101.0), ("visit 16 to 41743", 104.0)], Restarted())
    assert check([("visit 16 to 35817", 104.0), ("visit 14 to 35817", 101.0)], Restarted())
    assert check([("visit 14 to 35817", 99.5), ("last visit to 41743", 110.0)], Restarted())


def test_any_other_double_is_not() -> None:
    """Both copies on one connection, a first copy long before or after the
    outage, three copies, no Redis or no restart, a single copy: not the
    limit."""
    check = soak().around_the_outage
    assert not check([("visit 14 to 35817", 101.0), ("visit 14 to 35817", 101.5)], Restarted())
    assert not check([("visit 14 to 35817", 90.0), ("visit 16 to 41743", 104.0)], Restarted())
    assert not check([("visit 14 to 35817", 106.0), ("visit 16 to 41743", 107.0)], Restarted())
    assert not check([("visit 14 to 35817", 101.0), ("visit 16 to 41743", 104.0),
                      ("visit 17 to 41743", 105.0)], Restarted())
    assert not check([("visit 14 to 35817", 101.0), ("visit 16 to 41743", 104.0)], None)

    class NeverRestarted:
        down = None

    assert not check([("visit 14 to 35817", 101.0), ("visit 16 to 41743", 104.0)],
                     NeverRestarted())
    assert not check([("visit 14 to 35817", 101.0)], Restarted())
