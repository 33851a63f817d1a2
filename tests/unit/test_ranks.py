"""
Queue positions in O(log n), checked against counting.
"""

from __future__ import annotations

import random

from wsdaemon.strategies.operator.ranks import ArrivalRanks


def test_ranks_match_counting_through_removals_and_compaction() -> None:
    """Ranks equal 1 + the number of earlier keys present, through 20,000
    arrivals, random departures and the compactions they cause."""
    rng = random.Random(7)
    ranks = ArrivalRanks()
    present: list[int] = []
    for n in range(20_000):
        ranks.append(n)
        present.append(n)
        if rng.random() < 0.6:
            gone = present.pop(rng.randrange(len(present)))
            ranks.remove(gone)
        if n % 997 == 0:
            for key in rng.sample(present, min(20, len(present))):
                assert ranks.rank(key) == present.index(key) + 1
    assert len(ranks) == len(present)
    assert [ranks.rank(key) for key in present] == list(range(1, len(present) + 1))
    for key in present[:-1]:
        ranks.remove(key)
    assert ranks.rank(present[-1]) == 1
    assert len(ranks._keys) < 2000  # compacted: memory follows what is present
