"""
A route's bot under random sequences (hypothesis): visitors write (rule
matches, delayed replies, handoff phrases, nothing matching), operators
reply, assign and resolve, the clock moves, the rules are served again.
Whatever the order: the bot never writes (nor tries to: the core would
refuse it) into an episode the operators have; the episodes the bot
remembers stay within its bound and are all episodes it still has; every
delayed reply of a forgotten episode is cancelled.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.logger import LogEvent, globalLogPublisher

from tests.driver_bench import ROUTE, cid
from tests.unit.test_support_bot import BotDesk
from wsdaemon.conversations import Assign, Author, OperatorReply, Resolve

VISITORS = ("v1", "v2", "v3")
TEXTS = ("order 12", "I want a refund", "this is slow", "once", "blah", "get me a human")

actions = st.lists(st.one_of(
    st.tuples(st.just("say"), st.sampled_from(VISITORS), st.sampled_from(TEXTS)),
    st.tuples(st.just("reply"), st.sampled_from(VISITORS), st.just("")),
    st.tuples(st.just("assign"), st.sampled_from(VISITORS), st.just("")),
    st.tuples(st.just("resolve"), st.sampled_from(VISITORS), st.just("")),
    st.tuples(st.just("advance"), st.sampled_from((0.5, 1.0, 3.0, 6.0)), st.just("")),
    st.tuples(st.just("reload"), st.just(""), st.just("")),
), max_size=40)


def quietly(deferred: Any) -> None:
    deferred.addErrback(lambda failure: None)  # an operator's move refused: fine here


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions)
def test_the_bot_never_writes_into_the_operators_part(steps: list[tuple[Any, ...]]) -> None:
    refused: list[LogEvent] = []

    def observe(event: LogEvent) -> None:
        if str(event.get("log_format", "")).startswith("bot on {route}: {what} refused"):
            refused.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        run(steps)
    finally:
        globalLogPublisher.removeObserver(observe)
    # The bot forgets an episode as the operators take it (its delayed
    # replies cancelled): it never even tries to write into their part.
    assert refused == []


def run(steps: list[tuple[Any, ...]]) -> None:
    desk = BotDesk(max_episodes=2)
    #: visitor -> (its episode (the seq it started after), the last seq once the
    #: operators had it).
    taken: dict[str, tuple[int, int]] = {}
    for kind, who, text in steps:
        if kind == "say":
            desk.say(text, who)
        elif kind == "reply":
            quietly(desk.driver.submit(OperatorReply(cid(who), "alice", "Alice here.")))
        elif kind == "assign":
            quietly(desk.driver.submit(Assign(cid(who), "alice", "alice")))
        elif kind == "resolve":
            quietly(desk.driver.submit(Resolve(cid(who), "alice")))
        elif kind == "advance":
            desk.clock.advance(who)
        else:
            desk.bot = desk.bots.serve(ROUTE, desk.settings)
        for visitor in VISITORS:
            conversation = desk.conversation(visitor)
            if conversation is None:
                continue
            log = desk.store.inner.message_log.get(cid(visitor), {})
            with_bot = conversation.with_bot and str(conversation.status) == "open"
            if with_bot:
                taken.pop(visitor, None)
            elif taken.get(visitor, (None, 0))[0] != conversation.unread_floor:
                # Seen out of the bot's hands for the first time in this episode.
                taken[visitor] = (conversation.unread_floor, conversation.last_seq)
            late = [m for seq, m in log.items()
                    if visitor in taken and seq > taken[visitor][1] and m.author is Author.BOT]
            assert not late, f"the bot wrote after the operators took {visitor}: {late}"
            if not with_bot:
                assert cid(visitor) not in desk.bot._episodes, "a forgotten episode"
        assert len(desk.bot) <= 2
    # Whatever remains with the bot, nothing of a forgotten episode fires.
    desk.clock.advance(60)
    for visitor, (_, seq) in taken.items():
        log = desk.store.inner.message_log.get(cid(visitor), {})
        assert not [m for s, m in log.items() if s > seq and m.author is Author.BOT]
