"""
The cyclic garbage collector, set for a process holding thousands of
connections (issue #26).

Each open connection keeps about 38 objects the collector tracks (the
transport, the HTTP channel, Autobahn's protocol and its state, timers,
Deferreds, the session). With Python's default thresholds (700, 10, 10) a
full collection runs every 70,000 allocations or so, as soon as the tracked
objects grew by a quarter, and walks every one of them: in a reconnect
storm of 10,000 clients, held open, that was 0.81 s of the 2.19 s the
handshakes cost in memory (37%), with single pauses of up to 280 ms, which
every open client waits through too.

L{tune} raises the first and last thresholds to L{THRESHOLDS}: young
collections a little rarer (2,000 allocations) and still short, full ones
after 1,000 middle ones (20 million allocations or so) instead of 10. The
same storm then spends 0.15 s collecting (175 µs a handshake instead of
219), with pauses of 13 ms at most. What it costs: garbage in cycles that
outlived two young collections waits longer to be freed (most of a closed
connection is freed by reference counting at once, not by the collector).
Thresholds someone already changed from Python's defaults are left as they
are.
"""

from __future__ import annotations

import gc

__all__ = ["PYTHON_DEFAULTS", "THRESHOLDS", "describe", "tune"]

#: Python's own thresholds (generation 0, 1, 2).
PYTHON_DEFAULTS = (700, 10, 10)
#: The daemon's.
THRESHOLDS = (2000, 10, 1000)


def tune() -> tuple[int, ...]:
    """
    Set L{THRESHOLDS} if the collector still has Python's defaults.

    @return: the thresholds in use.
    """
    if gc.get_threshold() == PYTHON_DEFAULTS:
        gc.set_threshold(*THRESHOLDS)
    return gc.get_threshold()


def describe() -> str:
    """
    @return: for the start-up line, the collector's thresholds.
    """
    return "GC thresholds " + "/".join(str(n) for n in gc.get_threshold())
