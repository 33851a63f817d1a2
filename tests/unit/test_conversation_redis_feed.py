"""
Several daemons, one inbox (support/redis_feed.py): each commit's event
carries what the other daemons carry out, each daemon's driver follows the
others' commits. Drivers on a real redis-server through the broker's real
links; ports that record what they are told.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import Clock, deferLater

from tests.conversation_desk import ROUTE, Desk, cid
from tests.driver_bench import Bench, GatedStore, RecordingPorts
from tests.redis_store_link import Links
from wsdaemon.broker.link import RedisLink
from wsdaemon.conversations import (
    Author,
    Availability,
    ConversationSettings,
    DeliverMessage,
    Inbox,
    NotifyOperators,
    NotifyTeam,
    OperatorAvailability,
    OperatorReply,
    OperatorTyping,
    Resolve,
    Routing,
    SignalVisitor,
    TimerKind,
    VisitorMessage,
    VisitorTyping,
)
from wsdaemon.conversations.effects import CancelTimer, Commit, Measure, SetTimer
from wsdaemon.errors import BrokerOutcomeUnknown
from wsdaemon.support.component import SupportComponent
from wsdaemon.support.driver import ConversationDriver
from wsdaemon.support.redis_feed import EVENTS_KEPT, ConversationFeed
from wsdaemon.support.redis_news import decode_change, encode_news
from wsdaemon.support.redis_store import RedisConversationStore
from wsdaemon.support.redis_team import TeamPresence
from wsdaemon.support.settings import OperatorSettings

pytestmark = pytest.mark.slow

class Daemon:
    """One daemon's conversations on Redis: store, feed, driver, recording ports."""

    def __init__(self, link: RedisLink, settings: ConversationSettings,
                 heartbeat: float = 2.0) -> None:
        self.link = link
        self.store = RedisConversationStore(link, link.prefix, reactor)
        self.feed = ConversationFeed(link, self.store, reactor)
        self.team = TeamPresence(link, reactor, heartbeat)
        self.feed.on_team = self.team.record
        self.ports = RecordingPorts(GatedStore())
        self.driver = ConversationDriver(self.store, Inbox(settings), reactor, self.ports,
                                         self.ports, self.ports, peers=self.feed)
        self.feed.attach(self.driver)

    @pytest_twisted.inlineCallbacks
    def start(self) -> Generator[Any, Any, None]:
        yield self.driver.start()
        self.feed.ready()
        self.team.start(self.driver)

    @pytest_twisted.inlineCallbacks
    def stop(self) -> Generator[Any, Any, None]:
        self.team.stop()
        yield self.driver.stop()

    def told(self, kind: type) -> list[Any]:
        return [e for e in self.ports.said if isinstance(e, kind)]


def until(condition: Callable[[], bool], timeout: float = 5.0) -> Deferred[None]:
    """Fires once C{condition()} holds (polled on the real reactor)."""

    async def poll() -> None:
        waited = 0.0
        while not condition():
            if waited > timeout:
                raise AssertionError("condition not met in time")
            await deferLater(reactor, 0.02, lambda: None)
            waited += 0.02

    return Deferred.fromCoroutine(poll())


def test_news_round_trip() -> None:
    """A transition's effects for connections survive the event's JSON; the
    commit, timers and measures (the deciding daemon's own) are not sent."""
    desk = Desk(fallback_after=30)
    desk.step(OperatorAvailability("alice", Availability.ONLINE))
    desk.step(VisitorMessage(ROUTE, "v1", "hello"))
    transition = desk.step(OperatorReply(cid("v1"), "alice", "hi there"))
    news = json.loads(json.dumps(encode_news(transition, "d9", 7)))
    change = decode_change({**news, "type": "conversations"})
    assert change is not None and change.daemon == "d9" and change.token == 7
    assert change.conversations == tuple(
        c for c in transition.conversations)  # typing is not kept, and there is none
    kept = tuple(e for e in transition.effects
                 if not isinstance(e, Commit | SetTimer | CancelTimer | Measure))
    assert change.effects == kept
    assert any(isinstance(e, DeliverMessage) for e in change.effects)
    assert change.lane == cid("v1")
    assert decode_change({"type": "conversations", "conversations": []}) is None
    assert decode_change({"type": "push"}) is None


@pytest_twisted.inlineCallbacks
def test_a_visitor_on_one_daemon_an_operator_on_another(links: Links
                                                        ) -> Generator[Any, Any, None]:
    """A visitor's message committed on A reaches B's operators; B's reply
    reaches the visitor through A, once; each daemon's view follows the
    other's commits; a daemon's own events are not carried out twice."""
    settings = ConversationSettings(fallback_after=0)
    a, b = Daemon(links(), settings), Daemon(links(), settings)
    yield a.start()
    yield b.start()
    try:
        yield b.driver.submit(OperatorAvailability("bob", Availability.ONLINE))
        # B's availability is news for A: its team has bob online.
        yield until(lambda: a.driver.inbox.team.is_online("bob"))
        yield a.driver.submit(VisitorMessage(ROUTE, "v1", "hello from A"))
        yield until(lambda: b.driver.inbox.conversation(cid("v1")) is not None)
        new = [e for e in b.told(NotifyOperators) if e.kind == "conversation"]
        assert [e.conversation.conversation_id for e in new] == [cid("v1")]
        # The visitor's tabs on B get its message (acknowledged on A).
        assert [e.message.body for e in b.told(DeliverMessage)
                if e.message.author is Author.VISITOR] == ["hello from A"]
        yield b.driver.submit(OperatorReply(cid("v1"), "bob", "hello from B"))
        yield until(lambda: any(e.message.body == "hello from B"
                                for e in a.told(DeliverMessage)))
        yield until(lambda: a.driver.inbox.conversation(cid("v1"))
                    == b.driver.inbox.conversation(cid("v1")))
        # Each daemon carried out each delivery once.
        for daemon in (a, b):
            bodies = [e.message.body for e in daemon.told(DeliverMessage)]
            assert bodies.count("hello from B") == 1, bodies
        assert a.feed.skipped >= 1 and b.feed.skipped >= 1
        # bob's load counted on A too (the reply assigned him).
        assert a.driver.inbox.team.get("bob").load == 1  # type: ignore[union-attr]
        yield b.driver.submit(Resolve(cid("v1"), "bob"))
        yield until(lambda: a.driver.inbox.conversation(cid("v1")) is None)
        assert a.driver.inbox.team.get("bob").load == 0  # type: ignore[union-attr]
        statuses = [e.status for e in a.told(SignalVisitor) if e.signal == "status"]
        assert statuses == ["resolved"]
    finally:
        yield a.stop()
        yield b.stop()


@pytest_twisted.inlineCallbacks
def test_both_daemons_act_on_one_conversation_at_once(links: Links
                                                      ) -> Generator[Any, Any, None]:
    """Two replies decided on the same version at once: one commit is stale,
    its driver reads the conversation again and decides again; both replies
    are stored once, in order, and each daemon's view ends as the store's."""
    settings = ConversationSettings(fallback_after=0)
    a, b = Daemon(links(), settings), Daemon(links(), settings)
    yield a.start()
    yield b.start()
    try:
        yield a.driver.submit(VisitorMessage(ROUTE, "v1", "anyone?"))
        yield until(lambda: b.driver.inbox.conversation(cid("v1")) is not None)
        both = [a.driver.submit(OperatorReply(cid("v1"), "alice", "from A")),
                b.driver.submit(OperatorReply(cid("v1"), "bob", "from B"))]
        yield gatherResults(both)
        stored = yield a.store.messages(cid("v1"))
        operators = sorted(m.body for m in stored if m.operator is not None)
        assert operators == ["from A", "from B"]
        latest = yield a.store.load(cid("v1"))
        yield until(lambda: a.driver.inbox.conversation(cid("v1")) == latest
                    and b.driver.inbox.conversation(cid("v1")) == latest)
        for daemon in (a, b):
            bodies = sorted(e.message.body for e in daemon.told(DeliverMessage)
                            if e.message.operator is not None)
            assert bodies == ["from A", "from B"], bodies
    finally:
        yield a.stop()
        yield b.stop()


@pytest_twisted.inlineCallbacks
def test_own_commit_of_unknown_outcome_is_taken_from_its_event(links: Links
                                                               ) -> Generator[Any, Any, None]:
    """Redis ran the commit but its answer was lost (outcome unknown): the
    caller hears so, and the daemon's own event, read later, moves its view
    and delivers the message, once."""
    settings = ConversationSettings(fallback_after=0)
    a = Daemon(links(), settings)
    real = a.store.commit

    def answer_lost(commit: Any, news: Any = None) -> Deferred[None]:
        d = real(commit, news)

        def lost(_: None) -> None:
            raise BrokerOutcomeUnknown("Redis did not answer within 1 s")

        return d.addCallback(lost)

    yield a.start()
    try:
        yield a.driver.submit(VisitorMessage(ROUTE, "v1", "hi"))
        a.store.commit = answer_lost  # type: ignore[method-assign]
        with pytest.raises(BrokerOutcomeUnknown):
            yield a.driver.submit(OperatorReply(cid("v1"), "alice", "landed anyway"))
        yield until(lambda: any(e.message.body == "landed anyway"
                                for e in a.told(DeliverMessage)))
        assert a.driver.inbox.conversation(cid("v1")) == (yield a.store.load(cid("v1")))
        yield deferLater(reactor, 0.3, lambda: None)
        bodies = [e.message.body for e in a.told(DeliverMessage)]
        assert bodies.count("landed anyway") == 1
    finally:
        yield a.stop()


@pytest_twisted.inlineCallbacks
def test_typing_and_the_team_reach_the_other_daemon(links: Links
                                                    ) -> Generator[Any, Any, None]:
    """What stores nothing is news too: an operator typing on B is signalled
    to A's visitor; automatic routing on A gives a conversation to an
    operator online on B."""
    settings = ConversationSettings(fallback_after=0, routing=Routing.AUTO)
    a, b = Daemon(links(), settings), Daemon(links(), settings)
    yield a.start()
    yield b.start()
    try:
        yield b.driver.submit(OperatorAvailability("bob", Availability.ONLINE))
        yield until(lambda: a.driver.inbox.team.is_online("bob"))
        assert [e.operator for e in a.told(NotifyTeam)] == ["bob"]
        yield a.driver.submit(VisitorMessage(ROUTE, "v1", "help"))
        assert a.driver.inbox.conversation(cid("v1")).assignee == "bob"  # type: ignore[union-attr]
        yield until(lambda: b.driver.inbox.team.get("bob").load == 1)  # type: ignore[union-attr]
        yield b.driver.submit(OperatorTyping(cid("v1"), "bob", True))
        yield until(lambda: any(e.signal == "typing" and e.on for e in a.told(SignalVisitor)))
        typing = [e for e in a.told(NotifyOperators) if e.kind == "typing"]
        assert [e.conversation.operators_typing() for e in typing] == [("bob",)]
        # The visitor typing on A: B's operators see who types.
        yield a.driver.submit(VisitorTyping(ROUTE, "v1", True))
        yield until(lambda: any(e.kind == "typing"
                                and e.conversation.visitor_typing_until is not None
                                for e in b.told(NotifyOperators)))
    finally:
        yield a.stop()
        yield b.stop()


@pytest_twisted.inlineCallbacks
def test_the_team_in_redis_keys(links: Links) -> Generator[Any, Any, None]:
    """A daemon started after an operator became available on another one
    learns it from the team's keys; when that daemon goes silent for three
    heartbeats, another one lets its operator go (offline, told to all),
    once."""
    settings = ConversationSettings(fallback_after=0)
    a, b = Daemon(links(), settings, 0.2), Daemon(links(), settings, 0.2)
    yield a.start()
    yield b.start()
    c: Daemon | None = None
    try:
        yield b.driver.submit(OperatorAvailability("bob", Availability.ONLINE))
        yield until(lambda: a.driver.inbox.team.is_online("bob"))
        c = Daemon(links(), settings, 0.2)
        yield c.start()
        assert c is not None
        yield until(lambda: c.driver.inbox.team.is_online("bob"))  # type: ignore[union-attr]
        b.team.stop()  # B hangs: no heartbeat, no goodbye
        yield until(lambda: not a.driver.inbox.team.is_online("bob")
                    and not c.driver.inbox.team.is_online("bob"),  # type: ignore[union-attr]
                    timeout=10)
        assert a.team.let_go + c.team.let_go == 1
        entry = yield a.link.call("HGET", "t:c:team", "bob")
        assert json.loads(entry)["availability"] == "offline"
    finally:
        yield a.stop()
        yield b.stop()
        if c is not None:
            yield c.stop()


@pytest_twisted.inlineCallbacks
def test_a_daemon_back_under_its_name_lets_its_operators_go(
        links: Links) -> Generator[Any, Any, None]:
    """A daemon killed and started again under the same configured name,
    before its heartbeat ran out: its previous run's operators are gone, and
    the other daemons hear so."""
    settings = ConversationSettings(fallback_after=0)
    a, b = Daemon(links(), settings, 0.2), Daemon(links(), settings, 0.2)
    yield a.start()
    yield b.start()
    again: Daemon | None = None
    try:
        yield b.driver.submit(OperatorAvailability("bob", Availability.ONLINE))
        yield until(lambda: a.driver.inbox.team.is_online("bob"))
        yield b.stop()  # killed: nobody said bob went offline
        again = Daemon(links(daemon_id=b.link.daemon_id), settings, 0.2)
        yield again.start()
        yield until(lambda: not a.driver.inbox.team.is_online("bob"))
        assert again.team.let_go == 1 and not again.driver.inbox.team.is_online("bob")
    finally:
        yield a.stop()
        if again is not None:
            yield again.stop()


@pytest_twisted.inlineCallbacks
def test_an_operator_still_connected_here_stays_available(
        links: Links) -> Generator[Any, Any, None]:
    """Bob has connections to A and B; his last one to B closes, and B says
    he went offline: A, which still holds one, makes him available again,
    and B hears it."""
    settings = ConversationSettings(fallback_after=0)
    a, b = Daemon(links(), settings), Daemon(links(), settings)
    a.feed.holds = lambda name: name == "bob"
    yield a.start()
    yield b.start()
    try:
        yield a.driver.submit(OperatorAvailability("bob", Availability.ONLINE))
        yield until(lambda: b.driver.inbox.team.is_online("bob"))
        yield b.driver.submit(OperatorAvailability("bob", Availability.OFFLINE))
        assert not b.driver.inbox.team.is_online("bob")
        yield until(lambda: a.driver.inbox.team.is_online("bob")
                    and b.driver.inbox.team.is_online("bob")
                    and len(a.told(NotifyTeam)) >= 3)
    finally:
        yield a.stop()
        yield b.stop()


def test_commits_the_stream_skipped_are_counted() -> None:
    """A conversation's versions that never came (the stream trimmed while
    the daemon was behind) are counted and logged; the newer record is
    still taken."""
    desk = Desk(fallback_after=0)
    first = desk.step(VisitorMessage(ROUTE, "v1", "one"))
    desk.step(VisitorMessage(ROUTE, "v1", "two"))
    third = desk.step(VisitorMessage(ROUTE, "v1", "three"))

    class Link:
        daemon_id = "here"
        prefix = "t:"
        handler: Any = None

        def on_events(self, handler: Any) -> None:
            self.handler = handler

    link = Link()
    feed = ConversationFeed(link, None, Clock())  # type: ignore[arg-type]
    events = [{**encode_news(t, "there", n), "type": "conversations"}
              for n, t in ((1, first), (3, third))]
    link.handler(events)
    assert feed.missed == 1
    link.handler([{**encode_news(third, "there", 4), "type": "conversations"}])
    assert feed.missed == 1  # the same version again is no gap


def test_a_commit_overtaken_here_is_not_carried_out() -> None:
    """Another daemon's commit whose records this daemon already holds at
    their version or newer (read from the store meanwhile) is not carried
    out: its delivery would reach the visitor after newer messages. News
    of what stored nothing (typing) is carried out whatever the versions."""
    desk = Desk(fallback_after=0)
    desk.step(OperatorAvailability("bob", Availability.ONLINE))
    desk.step(VisitorMessage(ROUTE, "v1", "hi"))
    older = desk.step(OperatorReply(cid("v1"), "bob", "first"))
    newer = desk.step(OperatorReply(cid("v1"), "bob", "second"))
    bench = Bench(ConversationSettings(fallback_after=0))
    bench.driver.inbox.load(newer.conversations)
    change = decode_change({**encode_news(older, "there", 1), "type": "conversations"})
    assert change is not None
    assert bench.driver.adoption.overtaken(change.adopted)
    bench.driver.adoption.take_adopted(change.adopted)
    assert bench.ports.said == []
    # At the version held (read from the store before its event came): overtaken too.
    later = decode_change({**encode_news(newer, "there", 2), "type": "conversations"})
    assert later is not None and bench.driver.adoption.overtaken(later.adopted)
    typing = desk.step(OperatorTyping(cid("v1"), "bob", True))
    news = decode_change({**encode_news(typing, "there", 0), "type": "conversation_news"})
    assert news is not None and not news.durable
    bench.driver.adoption.take_adopted(news.adopted)
    assert [type(e).__name__ for e in bench.ports.said] == ["SignalVisitor", "NotifyOperators"]


def test_the_component_on_a_link_keeps_a_shorter_stream() -> None:
    """With the broker's link the component's store is Redis, and its
    commits keep the event stream at EVENTS_KEPT (each entry carries
    records and messages), not the queue's 100,000."""
    class Link:
        daemon_id = "here"
        prefix = "p:"
        up_since = None

        def call(self, *args: Any) -> Deferred[Any]:
            raise AssertionError("not called")

        def on_events(self, handler: Any) -> None:
            pass

        def publish(self, event: Any) -> Deferred[Any]:
            raise AssertionError("not called")

    settings = OperatorSettings(store_path=Path("unused.sqlite3"))
    component = SupportComponent(settings, Clock(), link=Link())
    assert isinstance(component.store, RedisConversationStore)
    assert component.store.prefix == "p:"
    assert component.store.events_kept == EVENTS_KEPT == 10_000
    assert component.feed is not None and component.team is not None


@pytest_twisted.inlineCallbacks
def test_malformed_team_entries_are_skipped(links: Links) -> Generator[Any, Any, None]:
    """Entries in the team's hash that are not what a daemon writes (not
    JSON, not an object, an unknown availability) are skipped; the others
    are learnt."""
    settings = ConversationSettings(fallback_after=0)
    a = Daemon(links(), settings, 0.2)
    yield a.link.call("ZADD", "t:c:daemons", "9999999999", "elsewhere")
    good = json.dumps({"availability": "online", "capacity": 2, "daemon": "elsewhere"})
    yield a.link.call("HSET", "t:c:team", "bob", good, "x", "{", "y", "[1]",
                      "z", json.dumps({"availability": "busy", "capacity": 1,
                                       "daemon": "elsewhere"}))
    yield a.start()
    try:
        yield until(lambda: a.driver.inbox.team.is_online("bob"))
        assert [o.name for o in a.driver.inbox.team.operators] == ["bob"]
    finally:
        yield a.stop()


def test_malformed_news_is_refused_when_read() -> None:
    """An event whose news is not what a daemon writes (an unknown effect,
    an unknown availability, a missing field) is refused as it is read."""
    for effects in ([{"k": "explode"}],
                    [{"k": "team", "operator": "bob", "availability": "busy", "capacity": 1,
                      "load": 0}],
                    [{"k": "announce"}]):
        with pytest.raises((ValueError, KeyError)):
            decode_change({"type": "conversation_news", "daemon": "x", "token": 0,
                           "rows": [], "effects": effects})


@pytest_twisted.inlineCallbacks
def test_a_timer_due_on_both_daemons_acts_once(links: Links) -> Generator[Any, Any, None]:
    """Every daemon arms a conversation's timers from its state: the
    fallback notice comes due on A and on B at the same moment; one commit
    wins, the other comes back stale, catches up and finds nothing due. The
    notice is stored once, and each daemon delivers it once."""
    settings = ConversationSettings(fallback_after=0.3, fallback_message="Still there?")
    a, b = Daemon(links(), settings), Daemon(links(), settings)
    yield a.start()
    yield b.start()
    try:
        yield a.driver.submit(VisitorMessage(ROUTE, "v1", "hello"))
        yield until(lambda: b.driver.inbox.conversation(cid("v1")) is not None)
        # Both armed it: A deciding the message, B taking A's commit.
        assert list(a.driver.timers.pending(TimerKind.FALLBACK)) == \
            list(b.driver.timers.pending(TimerKind.FALLBACK)) != []
        yield until(lambda: all(
            any(e.message.body == "Still there?" for e in d.told(DeliverMessage))
            for d in (a, b)))
        yield deferLater(reactor, 0.5, lambda: None)
        stored = yield a.store.messages(cid("v1"))
        assert [m.body for m in stored].count("Still there?") == 1
        for daemon in (a, b):
            notices = [e for e in daemon.told(DeliverMessage) if e.message.body == "Still there?"]
            assert len(notices) == 1
    finally:
        yield a.stop()
        yield b.stop()
