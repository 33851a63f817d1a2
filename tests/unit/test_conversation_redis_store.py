"""
What only the Redis conversation store does (its contract runs in
test_conversation_store.py): two daemons committing the same conversation
at once, taking over the retired shared operator queue's keys (written as
its scripts wrote them: tests/legacy_queue.py), load_live in bounded pages at
100,000 conversations, the event stream's bound, and Redis going away.
On a real redis-server, through the broker's real link.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Generator
from dataclasses import replace
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import Clock, deferLater

from tests.conversation_desk import ROUTE, Desk, cid
from tests.driver_bench import GatedStore, RecordingPorts
from tests.legacy_queue import QUEUE_FALLBACK, QueueKeys
from tests.redis_server import RedisServer
from tests.redis_store_link import Links
from wsdaemon.broker.link import RedisLink
from wsdaemon.client_ids import public_id
from wsdaemon.conversations import (
    Author,
    Availability,
    Commit,
    Conversation,
    ConversationSettings,
    Inbox,
    OperatorAvailability,
    OperatorReply,
    Status,
    VisitorMessage,
    conversation_id_for,
)
from wsdaemon.conversations.errors import StaleConversation
from wsdaemon.conversations.model import Bounds
from wsdaemon.errors import BrokerUnavailable
from wsdaemon.support import redis_migration
from wsdaemon.support.driver import ConversationDriver
from wsdaemon.support.redis_migration import QueueTakeOver
from wsdaemon.support.redis_scripts import COMMIT, LIVE_PAGE, ScriptRunner, write_args
from wsdaemon.support.redis_store import LIVE_PAGE_SIZE, RedisConversationStore


def store_on(link: Any, **kwargs: Any) -> RedisConversationStore:
    return RedisConversationStore(link, "t:", reactor, **kwargs)


def first_commit(desk: Desk, visitor: str = "v1") -> Commit:
    transition = desk.step(VisitorMessage(ROUTE, visitor, "hi"), at=desk.now + 1.0)
    assert transition.commit is not None
    return transition.commit


class CountingLink:
    """The link, with every call and reply seen (and a hook after each)."""

    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self.calls: list[tuple[Any, ...]] = []
        self.replies: list[tuple[tuple[Any, ...], Any]] = []
        self.after: Callable[[], Any] | None = None

    def call(self, *args: Any) -> Deferred[Any]:
        self.calls.append(args)
        d = self.link.call(*args)

        def seen(reply: Any) -> Any:
            self.replies.append((args, reply))
            if self.after is not None:
                return_value = self.after()
                if isinstance(return_value, Deferred):
                    return return_value.addCallback(lambda _: reply)
            return reply

        return d.addCallback(seen)

    def page_calls(self) -> int:
        """Pages asked for (EVALSHA: an EVAL after NOSCRIPT is the same page again)."""
        sha = hashlib.sha1(LIVE_PAGE.encode()).hexdigest()  # noqa: S324
        return sum(1 for c in self.calls if c[:2] == ("EVALSHA", sha))

    def pages(self) -> list[Any]:
        """
        The load_live pages Redis answered: (count, last id, last score,
        JSON, the team's version).
        """
        return [reply for args, reply in self.replies
                if args[0] in ("EVALSHA", "EVAL") and len(reply) == 5
                and args[1] in (LIVE_PAGE, hashlib.sha1(LIVE_PAGE.encode()).hexdigest())]


# -- two daemons --------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_racing_commits_one_lands_the_other_is_stale(links: Links
                                                     ) -> Generator[Any, Any, None]:
    """Two daemons decide on the same conversation at once (both on version
    1): one commit lands; the other fails StaleConversation naming it and
    writes nothing (its message absent, no event for it)."""
    a, b = store_on(links()), store_on(links())
    desk = Desk(fallback_after=0)
    yield a.commit(first_commit(desk))
    other = copy.deepcopy(desk)
    mine = desk.step(OperatorReply(cid("v1"), "alice", "from daemon A"), at=5.0).commit
    theirs = other.step(OperatorReply(cid("v1"), "bob", "from daemon B"), at=5.0).commit
    assert mine is not None and theirs is not None
    outcomes = yield DeferredList([a.commit(mine), b.commit(theirs)], consumeErrors=True)
    landed = [ok for ok, _ in outcomes]
    assert sorted(landed) == [False, True]
    refused = next(value for ok, value in outcomes if not ok)
    assert refused.check(StaleConversation)
    assert refused.value.conversation_ids == (cid("v1"),)
    winner = "from daemon A" if landed[0] else "from daemon B"
    thread = yield b.messages(cid("v1"))
    assert [m.body for m in thread if m.author is Author.OPERATOR] == [winner]
    assert (yield a.load(cid("v1"))).version == 2
    events = yield a._link.call("XRANGE", "t:events", "-", "+")
    changes = [json.loads(fields[1]) for _, fields in events]
    assert [(e["type"], e["conversations"][0][1]) for e in changes] == [
        ("conversations", 1), ("conversations", 2)]


# -- taking over the shared operator queue -------------------------------------


SNAPSHOT = r"""
local out = {}
for _, k in ipairs(redis.call('KEYS', ARGV[1] .. '*')) do
  local t = redis.call('TYPE', k).ok
  local v = {t}
  if t == 'hash' then v = redis.call('HGETALL', k)
  elseif t == 'zset' then v = redis.call('ZRANGE', k, 0, -1, 'WITHSCORES')
  elseif t == 'set' then v = redis.call('SMEMBERS', k)
  elseif t == 'string' then v = {redis.call('GET', k)}
  elseif t == 'stream' then v = {tostring(redis.call('XLEN', k))} end
  out[#out + 1] = {k, t, v}
end
return out
"""


@pytest_twisted.inlineCallbacks
def old_keys(link: RedisLink) -> Generator[Any, Any, dict[str, Any]]:
    """Every key of the queue (all but the conversation store's), with its content."""
    reply = yield link.call("EVAL", SNAPSHOT, "0", "t:")
    canonical: dict[str, Callable[[list[Any]], list[Any]]] = {
        "set": sorted, "hash": lambda v: sorted(zip(v[0::2], v[1::2], strict=True))}
    return {k: (t, canonical.get(t, list)(v)) for k, t, v in reply if not k.startswith("t:c:")}


LEGACY = "A" * 22 + "." + "B" * 16


@pytest_twisted.inlineCallbacks
def fill_shared_queue(link: RedisLink) -> Generator[Any, Any, None]:
    """
    The retired shared operator queue's keys, as its scripts wrote them
    (tests/legacy_queue.py), fallback_after 300 and keep_after_fallback on.
    """
    queue = QueueKeys(link.call, "t:")
    # ann: answered once (written by daemon d9), asked again, fallback sent.
    yield queue.ask("i0", ROUTE, "ann", "q a1", 10.0, fallback_after=300)
    seq = yield queue.answer("i0", "alice", "Hi", 12.0)
    yield queue.take("d9", "ann", 12.0)
    yield queue.settle("d9", "ann", seq)
    yield queue.ask("i1", ROUTE, "ann", "q a2", 20.0, fallback_after=300)
    yield queue.fallback("i1", QUEUE_FALLBACK, 320.0)
    # bob: answered, the reply kept for him (not written yet).
    yield queue.ask("i2", ROUTE, "bob", "q b1", 320.0, fallback_after=300)
    yield queue.answer("i2", "carol", "x" * 9, 321.0)
    # eve: answered, the reply taken by daemon d9 and not settled (in flight).
    yield queue.ask("i3", ROUTE, "eve", "q e1", 321.0, fallback_after=300)
    yield queue.answer("i3", "carol", "on its way", 321.0)
    yield queue.take("d9", "eve", 321.0)
    # A client still known by its credential (from before public ids), its
    # item claimed when the queue stopped.
    yield queue.ask("i4", ROUTE, LEGACY, "q c1", 322.0, fallback_after=300)
    yield queue.claim("i4", "dave", 322.0)
    # A push to someone who never wrote, kept for them (the queue stored a
    # push to a client connected nowhere without a route).
    yield queue.push("dan", "", "alice", "Your order shipped", 322.0)


@pytest.mark.parametrize("budget", [redis_migration.THREAD_BUDGET, 3, 1])
@pytest_twisted.inlineCallbacks
def test_takes_over_the_shared_queue_once(links: Links, monkeypatch: pytest.MonkeyPatch,
                                          budget: int) -> Generator[Any, Any, None]:
    """On first open, the shared queue's keys become conversations by the
    SQLite take-over's rules (open where items wait, resolved otherwise;
    renumbered; authors kept; replies not yet written, kept or in flight,
    count as undelivered; credential ids made public); the queue's keys stay
    as they were; a second open changes nothing; a take-over cut short and
    run again leaves alone what was made and committed since. The same
    with threads read a few messages a call (the budget reached within a
    client's thread and at its end)."""
    monkeypatch.setattr(redis_migration, "THREAD_BUDGET", budget)
    link = links()
    clock = Clock()
    yield fill_shared_queue(link)
    before = yield old_keys(link)
    store = store_on(link)
    yield store.open()
    assert (yield old_keys(link)) == before
    ann = yield store.load(conversation_id_for(ROUTE, "ann"))
    assert (ann.status, ann.waiting_since, ann.opened_at, ann.unanswered, ann.fallback_sent,
            ann.ack_sent, ann.assignee, ann.version) == \
        (Status.OPEN, 20.0, 20.0, 1, True, True, None, 1)
    assert (ann.last_seq, ann.delivered_upto, ann.preview) == (4, 3, "q a2")
    thread = yield store.messages(ann.conversation_id)
    assert [(m.seq, m.author, m.operator, m.body) for m in thread] == [
        (1, Author.VISITOR, None, "q a1"), (2, Author.OPERATOR, "alice", "Hi"),
        (3, Author.VISITOR, None, "q a2"), (4, Author.SYSTEM, None, QUEUE_FALLBACK)]
    bob = yield store.load(conversation_id_for(ROUTE, "bob"))
    assert (bob.status, bob.resolved_at, bob.delivered_upto, bob.last_seq) == \
        (Status.RESOLVED, 321.0, 1, 2)
    eve = yield store.load(conversation_id_for(ROUTE, "eve"))
    assert (eve.status, eve.delivered_upto, eve.last_seq) == (Status.RESOLVED, 1, 2)
    legacy = yield store.load(conversation_id_for(ROUTE, public_id(LEGACY)))
    assert (legacy.visitor, legacy.status, legacy.unread_for("alice")) == \
        (public_id(LEGACY), Status.OPEN, 1)
    assert legacy.assignee is None  # claims never survived a restart
    # The shared queue stores a push to a client connected nowhere without a route.
    dan = yield store.load(conversation_id_for("", "dan"))
    assert (dan.status, dan.delivered_upto, dan.last_seq) == (Status.RESOLVED, 0, 1)
    assert [c.visitor for c in (yield store.load_live())] == ["ann", public_id(LEGACY)]
    assert (yield link.call("EXISTS", "t:c:migrating")) == 0

    # Committed since: a reply to ann (version 2). Opening again changes nothing.
    changed = replace(ann, version=2, preview="later")
    yield store.commit(Commit((changed,)))
    made = yield QueueTakeOver(link, ScriptRunner(link), "t:", clock, _bounds()).run()
    assert made == 0
    # A take-over cut short (no marker, dan not written yet) is run again:
    # it makes what is missing and keeps what is there.
    yield link.call("DEL", "t:c:migrated", *(f"t:c:{dan.conversation_id}{suffix}"
                                             for suffix in ("", ":m", ":n")))
    made = yield QueueTakeOver(link, ScriptRunner(link), "t:", clock, _bounds()).run()
    assert made == 1
    assert (yield store.load(dan.conversation_id)) == dan
    assert (yield store.load(ann.conversation_id)) == changed
    assert len((yield store.messages(ann.conversation_id))) == 4
    before["t:events"] = ("stream", [str(int(before["t:events"][1][0]) + 1)])  # the commit's
    assert (yield old_keys(link)) == before


def _bounds() -> Bounds:
    return Bounds()


@pytest_twisted.inlineCallbacks
def test_daemons_starting_together_take_over_once(links: Links, monkeypatch: pytest.MonkeyPatch
                                                  ) -> Generator[Any, Any, None]:
    """Two daemons opening at once: one takes over, the other waits for the
    marker and makes nothing; a lock left by a daemon that died expires."""
    monkeypatch.setattr(redis_migration, "WAIT_STEP", 0.05)
    first, second = links(), links()
    yield fill_shared_queue(first)
    runs = [QueueTakeOver(link, ScriptRunner(link), "t:", reactor, _bounds()).run()
            for link in (first, second)]
    made = yield DeferredList(runs, fireOnOneErrback=True)
    assert sorted(count for _, count in made) == [0, 5]
    # A daemon died taking over (its lock left, nothing written): the next
    # start waits for the lock to expire, then takes over.
    yield first.call("DEL", *(yield first.call("KEYS", "t:c:*")))
    yield first.call("SET", "t:c:migrating", "dead", "EX", "1")
    made = yield QueueTakeOver(first, ScriptRunner(first), "t:", reactor, _bounds()).run()
    assert made == 5
    assert (yield first.call("GET", "t:c:migrated")) is not None
    assert (yield first.call("EXISTS", "t:c:migrating")) == 0


# -- bounded replies -------------------------------------------------------------


def live(n: int, opened_at: float) -> Conversation:
    key = conversation_id_for(ROUTE, f"v{n}")
    return Conversation(key, ROUTE, f"v{n}", created_at=opened_at, opened_at=opened_at,
                        last_activity_at=opened_at, version=1, waiting_since=opened_at,
                        unanswered=1)


@pytest_twisted.inlineCallbacks
def write_directly(link: Any, conversations: list[Conversation]
                   ) -> Generator[Any, Any, None]:
    """Many conversations at once, through the store's own script (1000 a call)."""
    scripts = ScriptRunner(link)
    for start in range(0, len(conversations), 1000):
        commit = Commit(tuple(conversations[start:start + 1000]))
        yield scripts.run(COMMIT, "t:", *write_args(commit, "migrate", 0))


@pytest_twisted.inlineCallbacks
def test_load_live_at_100000_in_bounded_pages(links: Links) -> Generator[Any, Any, None]:
    """100,000 live conversations load in opened order, in replies of at
    most LIVE_PAGE_SIZE conversations (101 page calls: the last says it is
    the end), never one giant reply."""
    link = links(timeout=10.0)
    made = [live(n, float(n // 3)) for n in range(100_000)]  # ties: three per time
    yield write_directly(link, made)
    counting = CountingLink(link)
    store = store_on(counting)
    loaded = yield store.load_live()
    assert len(loaded) == 100_000
    assert [c.conversation_id for c in loaded] == [
        c.conversation_id for c in sorted(made, key=lambda c: (c.opened_at, c.conversation_id))]
    assert counting.page_calls() == 100_000 // LIVE_PAGE_SIZE + 1
    pages = counting.pages()
    assert len(pages) == 101
    assert [int(count) for count, _, _, _, _ in pages] == [LIVE_PAGE_SIZE] * 100 + [0]
    assert max(len(page) for _, _, _, page, _ in pages) < 1_000_000  # bytes: one page's rows


@pytest_twisted.inlineCallbacks
def test_load_live_pages_past_ties_and_resolves(links: Links) -> Generator[Any, Any, None]:
    """Pages go on after the last one's (opened_at, id), not a rank:
    conversations with the same opened_at are each loaded once, and those
    resolved between two pages (the whole first page) shift nothing."""
    link = links()
    made = [live(n, float(n // 4)) for n in range(10)]
    yield write_directly(link, made)
    counting = CountingLink(link)
    store = store_on(counting, page_size=3)
    order = sorted(made, key=lambda c: (c.opened_at, c.conversation_id))
    gone = order[:3]

    def resolve_first_page() -> Deferred[Any]:
        counting.after = None
        return store.commit(Commit(tuple(
            replace(c, version=2, status=Status.RESOLVED, resolved_at=9.0,
                    waiting_since=None, unanswered=0) for c in gone)))

    counting.after = resolve_first_page
    loaded = yield store.load_live()
    assert [c.conversation_id for c in loaded] == [c.conversation_id for c in order]
    assert counting.page_calls() == 4
    assert [c.conversation_id for c in (yield store.load_live())] == [
        c.conversation_id for c in order[3:]]


@pytest_twisted.inlineCallbacks
def test_event_stream_is_bounded(links: Links) -> Generator[Any, Any, None]:
    """Each commit appends one event naming what changed; the stream keeps
    about events_kept (MAXLEN ~: Redis trims whole nodes of 100 entries)."""
    link = links()
    store = store_on(link, events_kept=50)
    for n in range(400):
        desk = Desk(fallback_after=0)
        yield store.commit(first_commit(desk, f"v{n}"))
    length = yield link.call("XLEN", "t:events")
    assert 50 <= length <= 50 + 100
    newest = yield link.call("XREVRANGE", "t:events", "+", "-", "COUNT", "1")
    event = json.loads(newest[0][1][1])
    assert event["conversations"] == [[cid("v399"), 1, "open"]]
    assert [m[0] for m in event["messages"]] == [cid("v399")] * len(event["messages"])


@pytest_twisted.inlineCallbacks
def test_scripts_sent_again_after_redis_forgot_them(links: Links
                                                    ) -> Generator[Any, Any, None]:
    """After SCRIPT FLUSH (or a restart) the store's scripts are sent again
    (NOSCRIPT, then EVAL) and the commit lands."""
    link = links()
    store = store_on(link)
    desk = Desk(fallback_after=0)
    yield store.commit(first_commit(desk, "v1"))
    yield link.call("SCRIPT", "FLUSH")
    yield store.commit(first_commit(desk, "v2"))
    assert [c.visitor for c in (yield store.load_live())] == ["v1", "v2"]


# -- Redis going away -----------------------------------------------------------


@pytest_twisted.inlineCallbacks
def wait_up(link: Any, timeout: float = 10.0) -> Generator[Any, Any, None]:
    for _ in range(int(timeout / 0.05)):
        try:
            yield link.call("PING")
            return
        except BrokerUnavailable:
            yield deferLater(reactor, 0.05, lambda: None)
    raise AssertionError("Redis did not come back")


@pytest_twisted.inlineCallbacks
def test_redis_down_fails_cleanly_and_writes_nothing(links: Links, redis_server: RedisServer
                                                     ) -> Generator[Any, Any, None]:
    """Redis stopped: a commit fails with the broker's outage error (not
    done, or done whole: the script is atomic), reads fail too; back up,
    the store holds what it held and the same commit lands."""
    link = links(timeout=0.5)
    store = store_on(link)
    desk = Desk(fallback_after=0)
    yield store.commit(first_commit(desk))
    reply = desk.step(OperatorReply(cid("v1"), "alice", "hello"), at=5.0).commit
    assert reply is not None
    thread = yield store.messages(cid("v1"))
    redis_server.stop()
    with pytest.raises(BrokerUnavailable):
        yield store.commit(reply)
    with pytest.raises(BrokerUnavailable):
        yield store.load(cid("v1"))
    redis_server.start()
    yield wait_up(link)
    stored = yield store.load(cid("v1"))
    assert stored.version == 1
    assert (yield store.messages(cid("v1"))) == thread
    yield store.commit(reply)
    assert (yield store.load(cid("v1"))).version == 2


@pytest_twisted.inlineCallbacks
def test_redis_stopped_between_pages_fails_load_live(links: Links, redis_server: RedisServer
                                                     ) -> Generator[Any, Any, None]:
    """Redis stopping while live conversations load page by page fails the
    load with the outage error: never a partial list taken for the whole."""
    link = links(timeout=0.5)
    yield write_directly(link, [live(n, float(n)) for n in range(10)])
    counting = CountingLink(link)
    store = store_on(counting, page_size=4)

    def stop_redis() -> None:
        counting.after = None
        redis_server.stop()

    counting.after = stop_redis
    with pytest.raises(BrokerUnavailable):
        yield store.load_live()
    assert counting.page_calls() == 2


def test_page_size_is_checked() -> None:
    """A page size below 1 is refused when the store is made."""
    with pytest.raises(ValueError, match="page_size must be at least 1"):
        RedisConversationStore(None, "t:", reactor, page_size=0)  # type: ignore[arg-type]



@pytest_twisted.inlineCallbacks
def test_open_while_redis_is_down_fails_and_can_be_tried_again(
        links: Links, redis_server: RedisServer) -> Generator[Any, Any, None]:
    """open() with Redis away fails with the outage error (nothing taken
    over, no marker); opened again once Redis is back, it takes over."""
    link = links(timeout=0.5)
    yield fill_shared_queue(link)
    store = store_on(link)
    redis_server.stop()
    with pytest.raises(BrokerUnavailable):
        yield store.open()
    redis_server.start()
    yield wait_up(link)
    assert (yield link.call("EXISTS", "t:c:migrated")) == 0
    yield store.open()
    assert [c.visitor for c in (yield store.load_live())] == ["ann", public_id(LEGACY)]


@pytest_twisted.inlineCallbacks
def test_a_take_over_leaves_a_lock_that_is_no_longer_its_own(links: Links
                                                             ) -> Generator[Any, Any, None]:
    """A daemon whose lock expired and was taken by another while it took
    over does not delete the other's lock at the end."""
    link = links()
    yield fill_shared_queue(link)
    counting = CountingLink(link)
    calls = iter(range(1000))

    def steal_after_locking() -> Deferred[Any] | None:
        if next(calls) == 1:  # GET the marker, SET NX the lock: now it expires, is taken
            return link.call("SET", "t:c:migrating", "another daemon")
        return None

    counting.after = steal_after_locking
    made = yield QueueTakeOver(counting, ScriptRunner(counting), "t:", reactor,
                               _bounds()).run()
    assert made == 5
    assert (yield link.call("GET", "t:c:migrating")) == "another daemon"


# -- with the driver -------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_two_drivers_share_conversations_through_redis(
        links: Links, redis_server: RedisServer) -> Generator[Any, Any, None]:
    """Two daemons' drivers on one Redis: the second starts with the first's
    live conversation; a reply decided on a view the other daemon has moved
    on from comes back stale, the driver reloads it and decides again, and
    both replies are stored once each, in order. Redis away: the driver's
    event fails with the outage error and nothing moved."""
    settings = ConversationSettings(fallback_after=0)
    drivers, stores = [], []
    for link in (links(timeout=0.5), links(timeout=0.5)):
        ports = RecordingPorts(GatedStore())
        stores.append(store_on(link))
        drivers.append(ConversationDriver(stores[-1], Inbox(settings), reactor, ports, ports,
                                          ports))
    a, b = drivers
    yield a.start()
    try:
        yield a.submit(OperatorAvailability("alice", Availability.ONLINE))
        yield a.submit(VisitorMessage(ROUTE, "v1", "Hello?"))
        yield b.start()
        yield b.submit(OperatorAvailability("bob", Availability.ONLINE))
        assert [c.visitor for c in b.inbox.conversations()] == ["v1"]
        yield a.submit(OperatorReply(cid("v1"), "alice", "from A"))
        yield b.submit(OperatorReply(cid("v1"), "bob", "from B"))  # B's view: version 1
        stored = yield a.store.messages(cid("v1"))
        assert [m.body for m in stored if m.author is Author.OPERATOR] == ["from A", "from B"]
        assert b.inbox.conversation(cid("v1")) == (yield a.store.load(cid("v1")))
        before = b.inbox.conversation(cid("v1"))
        redis_server.stop()
        with pytest.raises(BrokerUnavailable):
            yield b.submit(OperatorReply(cid("v1"), "bob", "lost?"))
        assert b.inbox.conversation(cid("v1")) == before
        redis_server.start()
        yield wait_up(stores[1]._link)
        assert (yield b.store.load(cid("v1"))) == before
    finally:
        for driver in drivers:
            yield driver.stop()
