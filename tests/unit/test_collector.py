"""
The garbage collector's thresholds (wsdaemon.connections.collector): set
from Python's defaults when the speed paths are installed, left alone when
someone chose their own; cycles are still collected.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from wsdaemon.connections import accel, collector


@pytest.fixture
def thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_python_defaults_become_the_daemons(thresholds: None) -> None:
    """From (700, 10, 10), tune sets (2000, 10, 1000) and says so."""
    gc.set_threshold(*collector.PYTHON_DEFAULTS)
    assert collector.tune() == (2000, 10, 1000)
    assert gc.get_threshold() == collector.THRESHOLDS
    assert collector.describe() == "GC thresholds 2000/10/1000"


def test_thresholds_chosen_by_someone_else_stay(thresholds: None) -> None:
    """A deployment that set its own keeps them."""
    gc.set_threshold(5000, 20, 20)
    assert collector.tune() == (5000, 20, 20)


def test_installing_the_speed_paths_tunes_it(thresholds: None,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """accel.install, which the assembly calls at start-up, sets them, and
    the start-up line names them."""
    gc.set_threshold(*collector.PYTHON_DEFAULTS)
    monkeypatch.setattr(accel, "_installed", [])
    accel.install()
    assert gc.get_threshold() == collector.THRESHOLDS
    assert "GC thresholds 2000/10/1000" in accel.describe()


def test_cycles_are_still_collected(thresholds: None) -> None:
    """Garbage in cycles is freed by a collection, as before."""
    import weakref

    collector.tune()

    class Node:
        other: object = None

    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    gc.collect()
    assert gone() is None
