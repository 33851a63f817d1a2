"""
What the inbox's side panel shows as "previous conversations": a
conversation's past episodes (resolved, then reopened: where each began),
kept with it (bounded) in every store, and the visitor's conversations on
the daemon's other routes; both in the answer to C{open}.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest_twisted

from tests.conversation_desk import ROUTE, Desk, cid
from tests.support_channel_kit import Desk as ChannelDesk
from tests.unit.test_conversation_store import commits, make_store  # noqa: F401 (fixture)
from wsdaemon.conversations import Availability, OperatorAvailability, Resolve, VisitorMessage
from wsdaemon.conversations.codec import conversation_from_row, conversation_row
from wsdaemon.conversations.model import EPISODES_KEPT, conversation_id_for
from wsdaemon.support.memory import stored_form
from wsdaemon.support.operator_reading import MAX_PREVIOUS

ALICE = "a" * 20

Make = Any


def reopened(desk: Desk, times: int) -> None:
    """v1 writes, is resolved and writes again, C{times} times over."""
    for _ in range(times):
        desk.step(VisitorMessage(ROUTE, "v1", "hello again"), at=desk.now + 10)
        desk.step(Resolve(cid("v1"), "alice"), at=desk.now + 10)
    desk.step(VisitorMessage(ROUTE, "v1", "one more thing"), at=desk.now + 10)


def test_a_reopened_conversation_remembers_where_each_episode_began() -> None:
    """Each reopening keeps the ended episode: the seq it started after, when it
    opened and when it was resolved; the current one is unread_floor/opened_at."""
    desk = Desk(fallback_after=0, ack_message="")
    desk.online("alice")
    reopened(desk, 2)
    c = desk.conversation("v1")
    assert c.episodes == ((0, 10.0, 20.0), (1, 30.0, 40.0))
    assert (c.unread_floor, c.opened_at, c.last_seq) == (2, 50.0, 3)


def test_episodes_kept_are_bounded() -> None:
    """At most EPISODES_KEPT past episodes, the newest."""
    desk = Desk(fallback_after=0, ack_message="")
    desk.online("alice")
    reopened(desk, EPISODES_KEPT + 5)
    episodes = desk.conversation("v1").episodes
    assert len(episodes) == EPISODES_KEPT
    assert episodes[-1][0] == EPISODES_KEPT + 4 and episodes[0][0] == 5


def test_episodes_survive_the_codec_and_older_rows_have_none() -> None:
    """The state column keeps them; a row written before episodes reads as none."""
    desk = Desk(fallback_after=0, ack_message="")
    desk.online("alice")
    reopened(desk, 2)
    c = desk.conversation("v1")
    assert conversation_from_row(conversation_row(c)).episodes == c.episodes
    row = conversation_row(c)
    row["state"] = row["state"].replace(',"episodes":[[0,10.0,20.0],[1,30.0,40.0]]', "")
    assert "episodes" not in row["state"]
    assert conversation_from_row(row).episodes == ()


@pytest_twisted.inlineCallbacks
def test_every_store_keeps_the_episodes(make_store: Make) -> Generator[Any, Any, None]:  # noqa: F811
    """SQLite, memory and Redis: a reopened conversation comes back with them."""
    desk = Desk(fallback_after=0, ack_message="")
    made = commits(desk, OperatorAvailability("alice", Availability.ONLINE),
                   VisitorMessage(ROUTE, "v1", "hi"), Resolve(cid("v1"), "alice"),
                   VisitorMessage(ROUTE, "v1", "back again"))
    store = make_store()
    yield store.open()
    for commit in made:
        yield store.commit(commit)
    yield store.close()
    store = make_store()
    yield store.open()
    loaded = yield store.load(cid("v1"))
    assert loaded == stored_form(desk.conversation("v1"))
    assert len(loaded.episodes) == 1 and loaded.episodes[0][0] == 0
    yield store.close()


def test_open_answers_episodes_and_the_visitors_other_conversations() -> None:
    """open: the episodes (from_seq, times, the current last) and the visitor's
    conversations on the other routes served, most recent first; not its own,
    not another visitor's, none on a route not served."""
    desk = ChannelDesk()
    desk.driver.routes.update({ROUTE, "/sales", "/billing", "/empty"})
    desk.visitor("ann", "first")
    desk.clock.advance(5)
    desk.driver.submit(Resolve(conversation_id_for(ROUTE, "ann"), "alice"))
    desk.clock.advance(5)
    desk.visitor("ann", "back again")
    for route in ("/sales", "/billing", "/unserved"):
        desk.clock.advance(5)
        desk.driver.submit(VisitorMessage(route, "ann", f"on {route}"))
    desk.driver.submit(VisitorMessage("/sales", "bob", "someone else"))
    desk.flush()
    alice = desk.connect(ALICE)
    answer = desk.ask(alice, {"type": "open", "conversation": conversation_id_for(ROUTE, "ann")})
    assert answer["type"] == "ok", answer
    episodes = answer["episodes"]
    back = next(e["seq"] for e in answer["entries"] if e.get("text") == "back again")
    assert [(e["from_seq"], e["current"]) for e in episodes] == [(1, False), (back, True)]
    assert episodes[0]["resolved_at"] is not None and episodes[1]["resolved_at"] is None
    assert [(c["route"], c["visitor"]) for c in answer["previous"]] == [
        ("/billing", "ann"), ("/sales", "ann")]


def test_previous_conversations_are_bounded() -> None:
    """A visitor on more routes than MAX_PREVIOUS: that many are listed."""
    desk = ChannelDesk()
    routes = [f"/r{n:02d}" for n in range(MAX_PREVIOUS + 3)]
    desk.driver.routes.update({ROUTE, *routes})
    desk.visitor("ann")
    for route in routes:
        desk.driver.submit(VisitorMessage(route, "ann", "hi"))
    desk.flush()
    alice = desk.connect(ALICE)
    answer = desk.ask(alice, {"type": "open", "conversation": conversation_id_for(ROUTE, "ann")})
    assert len(answer["previous"]) == MAX_PREVIOUS
