"""
The push API's Idempotency-Key cache: it answers a retry without sending
again, and stays small whatever the pushes carried (a digest of each body,
never the body; bounded in keys and in bytes).
"""

from __future__ import annotations

import gc
import sys
import tracemalloc

import pytest
from twisted.internet.task import Clock

from wsdaemon.server.admin import PushesDone
from wsdaemon.server.api import RequestError

MIB = 1024 * 1024


def _traced(build: object) -> int:
    """
    @return: the bytes still allocated after C{build()} ran, its
        temporaries collected.
    """
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        build()  # type: ignore[operator]
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_no_body_is_kept() -> None:
    """50 one-MiB pushes with distinct keys leave well under one MiB behind
    (each body used to be kept whole: 50 MiB here, 10 GiB at the key cap)."""
    done = PushesDone(Clock())

    def push_fifty() -> None:
        for number in range(50):
            body = bytes([number]) * MIB
            done.put(f"key-{number}", body, {"delivered": 1, "failed": 0})

    assert _traced(push_fifty) < MIB // 4
    assert len(done) == 50


def test_its_byte_count_is_what_it_holds() -> None:
    """The cache's own count of its bytes covers what its entries really
    take (measured by tracemalloc), and never passes max_bytes."""
    done = PushesDone(Clock(), max_bytes=250_000)
    keys = [f"{number:0200d}" for number in range(2_000)]  # the longest keys: 200 characters
    bodies = [b"x%d" % number for number in range(2_000)]
    held = _traced(lambda: [done.put(key, body, {"delivered": 3, "failed": 1})
                            for key, body in zip(keys[:300], bodies, strict=False)])
    assert len(done) == 300 and done.bytes >= held
    for key, body in zip(keys, bodies, strict=True):
        done.put(key, body, {"delivered": 3, "failed": 1})
        assert done.bytes <= 250_000
    assert 300 < len(done) < 2_000
    assert done.get(keys[-1], bodies[-1]) == {"delivered": 3, "failed": 1}
    assert done.get(keys[0], bodies[0]) is None  # the oldest went first


def test_keys_are_bounded_too() -> None:
    """At most `limit` keys, whatever their size; the oldest go first."""
    done = PushesDone(Clock(), limit=3)
    for number in range(5):
        done.put(f"k{number}", b"body", {"delivered": number, "failed": 0})
    assert len(done) == 3
    assert done.get("k0", b"body") is None and done.get("k1", b"body") is None
    assert done.get("k4", b"body") == {"delivered": 4, "failed": 0}


def test_a_retry_gets_the_same_answer_and_another_body_409() -> None:
    """The same key with the same body answers what the first push did;
    with another body (however alike) it is refused with 409; after `keep`
    seconds the key is forgotten."""
    clock = Clock()
    done = PushesDone(clock, keep=600)
    body = b'{"client": "c", "text": "' + b"a" * MIB + b'"}'
    assert done.get("order-17", body) is None
    done.put("order-17", body, {"delivered": 2, "failed": 1})
    assert done.get("order-17", bytes(body)) == {"delivered": 2, "failed": 1}
    with pytest.raises(RequestError) as conflict:
        done.get("order-17", body[:-3] + b'b"}')
    assert conflict.value.code == 409
    clock.advance(601)
    assert done.get("order-17", body) is None


def test_a_retry_while_the_first_is_under_way_is_409() -> None:
    """A retry that arrives before the first push has its answer (waiting
    for Redis) is refused, not sent a second time; if the first fails, the
    key is free again."""
    done = PushesDone(Clock())
    done.begin("k", b"body")
    with pytest.raises(RequestError) as busy:
        done.get("k", b"body")
    assert busy.value.code == 409 and "under way" in busy.value.message
    done.abandon("k")
    assert done.get("k", b"body") is None
    done.begin("k", b"body")
    done.put("k", b"body", {"delivered": 1, "failed": 0})
    assert done.get("k", b"body") == {"delivered": 1, "failed": 0}


def test_the_entry_size_does_not_depend_on_the_body() -> None:
    """An entry's accounted size is the same for an empty and a 1 MiB body."""
    small, big = PushesDone(Clock()), PushesDone(Clock())
    small.put("k", b"", {"delivered": 1, "failed": 0})
    big.put("k", b"x" * MIB, {"delivered": 1, "failed": 0})
    assert small.bytes == big.bytes < 1024
    assert sys.getsizeof(b"x" * MIB) > 1000 * big.bytes
