"""
The operators' list order kept as conversations change (L{WaitingOrder}):
always what sorting every live conversation would give, healing a change
it was not told of, bounded; the greeting's page at 100,000 conversations
in milliseconds.
"""

from __future__ import annotations

import random
import time
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support_channel_kit import Desk
from wsdaemon.conversations import Conversation, Status, conversation_id_for
from wsdaemon.support.ordering import WaitingOrder
from wsdaemon.support.summaries import sort_key


def _conversation(n: int, waiting: float | None, activity: float) -> Conversation:
    return Conversation(conversation_id_for("/r", f"v{n}"), "/r", f"v{n}", 0.0, 0.0, activity,
                        waiting_since=waiting, version=1)


_CHANGES = st.lists(st.tuples(st.integers(0, 30), st.one_of(st.none(), st.floats(0, 100)),
                              st.floats(0, 100), st.booleans(), st.booleans()), max_size=80)


@settings(max_examples=200, deadline=None)
@given(changes=_CHANGES, limit=st.integers(1, 40))
def test_order_is_what_a_full_sort_gives(changes: list[tuple[int, float | None, float, bool,
                                                               bool]], limit: int) -> None:
    """After any changes, some (resolving, or moving later) not told, the first page is the
    full sort's."""
    held: dict[str, Conversation] = {}
    order = WaitingOrder(held.get)
    for n, waiting, activity, resolved, told in changes:
        conversation = _conversation(n, waiting, activity)
        if resolved:
            conversation = replace(conversation, status=Status.RESOLVED, waiting_since=None)
        before = held.get(conversation.conversation_id)
        held[conversation.conversation_id] = conversation
        untold = not told and before is not None and before.status is not Status.RESOLVED \
            and (resolved or sort_key(conversation) > sort_key(before))
        if not untold:
            # Left or moved later untold: put right as it comes up; else told.
            order.see(conversation)
    live = sorted((c for c in held.values() if c.status is not Status.RESOLVED), key=sort_key)
    assert order.first(limit) == live[:limit]
    if live:
        after = sort_key(live[0])
        assert order.first(limit, after) == live[1:limit + 1]
    assert order.first(limit) == live[:limit]  # reading leaves it as it was


def test_the_heap_stays_bounded() -> None:
    """However often conversations change, stale entries are dropped: at most twice plus 1024."""
    held: dict[str, Conversation] = {}
    order = WaitingOrder(held.get)
    for step in range(20_000):
        conversation = _conversation(step % 10, float(step), float(step))
        held[conversation.conversation_id] = conversation
        order.see(conversation)
    assert len(order) == 10 and len(order._heap) <= 2 * 10 + 1024


def test_greeting_at_100000_conversations_in_milliseconds() -> None:
    """With 100,000 live conversations an operator's greeting (handshake included) and a
    first page take milliseconds, not a sort of everything."""
    desk = Desk()
    now = desk.clock.seconds()
    desk.inbox.load([replace(_conversation(n, now - random.random() * 1000, now),
                             recent_visitor_seqs=(1,), last_seq=1) for n in range(100_000)])
    desk.connect("b" * 20)  # the first one fills the indexes
    started = time.perf_counter()
    alice = desk.connect("a" * 20)
    greeting = time.perf_counter() - started
    hello = alice.got[0]
    assert hello["total"] == 100_000 and len(hello["conversations"]) == 50
    waits = [c["waiting_since"] for c in hello["conversations"]]
    assert waits == sorted(waits)
    assert greeting < 0.05, greeting
    started = time.perf_counter()
    page = desk.ask(alice, {"type": "conversations", "after": hello["next"]})
    assert time.perf_counter() - started < 0.05
    assert page["conversations"][0]["waiting_since"] >= waits[-1]
