"""
The visitor's side of conversations on the real route protocol in memory
(L{StrategyHarness}), the conversation driver, a memory store whose commits
land when the test says, and one L{Clock}: plain text (notices once per
episode, what was written while away), C{wsdaemon.chat.v1} (hello and
resume once and in order, acks with seq, resends stored once, receipts,
typing, contact, history, refusals, errors, close codes) and store
failures (nothing confirmed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogEvent, globalLogPublisher
from zope.interface.verify import verifyObject

from tests.driver_bench import GatedStore, RecordingPorts
from wsdaemon.config import IdentityPolicy
from wsdaemon.conversations import (
    Availability,
    ConversationSettings,
    Inbox,
    OperatorAvailability,
    OperatorRead,
    OperatorReply,
    OperatorTyping,
    Resolve,
    Status,
    conversation_id_for,
)
from wsdaemon.errors import BrokerOutcomeUnknown
from wsdaemon.interfaces import IHandshakeHook, IReplyStrategy
from wsdaemon.records import HandshakeRequest
from wsdaemon.strategies.api import OptionContext, OptionError, StrategyContext
from wsdaemon.support.driver import ConversationDriver
from wsdaemon.support.reply_times import DAY, MAX_SAMPLES, ReplyTimes
from wsdaemon.support.visitor import (
    MAX_BAD_REQUESTS,
    NOT_STORED,
    REFUSED,
    TEXT_ONLY,
    UNCONFIRMED,
    ConversationStrategy,
    ConversationStrategyFactory,
)
from wsdaemon.support.visitor_chat import MAX_EARLY
from wsdaemon.support.visitor_protocol import SUBPROTOCOL
from wsdaemon.support.visitors import Mode, VisitorSessions
from wsdaemon.testing import HarnessClient, RecordingSession, StrategyHarness, check_strategy

ROUTE = "/support"
ACK = "Thanks! An operator will answer here soon."
OFFLINE = "Nobody is online."


class Support:
    """
    What the support component gives the factory (C{.driver}, C{.visitors}),
    built on the harness's clock when the route is.
    """

    def __init__(self, settings: ConversationSettings, **lanes: int) -> None:
        self.settings = settings
        self.lanes = lanes
        self.store = GatedStore()
        self.ports = RecordingPorts(self.store)
        self.clock: Clock | None = None
        self.driver: Any = None
        self.visitors: Any = None
        self.bots: Any = None

    def build(self, clock: Clock) -> None:
        self.clock = clock
        inbox = Inbox(self.settings)
        self.visitors = VisitorSessions(inbox, clock)
        self.driver = ConversationDriver(self.store, inbox, clock, self.visitors, self.ports,
                                         self.ports, **self.lanes)
        assert self.driver.start().called


class BoundFactory(ConversationStrategyFactory):
    def create(self, options: Mapping[str, str], context: StrategyContext) -> Any:
        support: Any = self.support
        support.build(context.clock)
        return super().create(options, context)


class Desk:
    """A route served by the conversation strategy, and its driver."""

    def __init__(self, lanes: Mapping[str, int] | None = None, **settings: Any) -> None:
        settings.setdefault("fallback_after", 0)
        settings.setdefault("ack_message", ACK)
        settings.setdefault("offline_message", OFFLINE)
        self.support = Support(ConversationSettings(**settings), **(lanes or {}))
        self.harness = StrategyHarness(BoundFactory(self.support), route=ROUTE,
                                       identity=IdentityPolicy(mode="claimed"))
        self.clock = self.harness.clock
        self.driver: ConversationDriver = self.support.driver
        self.store = self.support.store

    def plain(self, visitor: str = "v1") -> HarnessClient:
        client = self.harness.connect(query=f"client_id={visitor}")
        assert client.status == 101 and client.subprotocol is None
        return client

    def structured(self, visitor: str = "v1", after: int | None = None,
                   hello: bool = True) -> HarnessClient:
        client = self.harness.connect(query=f"client_id={visitor}",
                                      subprotocols=["other", SUBPROTOCOL])
        assert client.status == 101 and client.subprotocol == SUBPROTOCOL
        if hello:
            send(client, {"type": "hello"} if after is None else
                 {"type": "hello", "after": after})
        return client

    def submit(self, event: Any) -> Any:
        outcome: list[Any] = []
        self.driver.submit(event).addBoth(outcome.append)
        assert outcome, "the memory store answers at once"
        return outcome[0]

    def reply(self, text: str, visitor: str = "v1", name: str | None = "Alice") -> None:
        self.submit(OperatorReply(cid(visitor), "alice", text, display_name=name))

    def online(self, operator: str = "alice") -> None:
        self.submit(OperatorAvailability(operator, Availability.ONLINE))
        self.clock.advance(0)

    def conversation(self, visitor: str = "v1") -> Any:
        return self.store.inner.conversations.get(cid(visitor))


def typing_until(desk: Desk) -> float | None:
    found = desk.driver.inbox.conversation(cid("v1"))
    assert found is not None
    return found.visitor_typing_until


def cid(visitor: str) -> str:
    return conversation_id_for(ROUTE, visitor)


def send(client: HarnessClient, frame: Any) -> None:
    client.send(frame if isinstance(frame, str) else json.dumps(frame))


def frames(client: HarnessClient) -> list[dict[str, Any]]:
    """What a structured client received, decoded, and forget it."""
    client.closed  # noqa: B018 - reads what the daemon wrote
    got = [json.loads(text) for text in client.received if isinstance(text, str)]
    client.received.clear()
    return got


def texts(client: HarnessClient) -> list[str | bytes]:
    """What a plain client received, and forget it."""
    client.closed  # noqa: B018 - reads what the daemon wrote
    got = list(client.received)
    client.received.clear()
    return got


def compact(frame: dict[str, Any]) -> bytes:
    """A frame as the daemon writes it (compact JSON, UTF-8)."""
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":")).encode()


def seqs(received: list[dict[str, Any]]) -> list[int]:
    """The seq of every thread message received, welcome and history pages included."""
    out: list[int] = []
    for frame in received:
        if frame["type"] in ("welcome", "history"):
            out.extend(m["seq"] for m in frame["messages"])
        elif frame["type"] == "message":
            out.append(frame["seq"])
    return out


# -- the factory ---------------------------------------------------------------


def test_factory_options() -> None:
    """A route's ack_message is refused saying where it went; other options are unknown."""
    factory = ConversationStrategyFactory()
    context = OptionContext(config_dir=".", route=ROUTE, sections=frozenset({"operator"}))  # type: ignore[arg-type]
    with pytest.raises(OptionError, match=r"\[operator\]") as raised:
        factory.check({"ack_message": "Thanks! {position}"}, context)
    assert raised.value.key == "ack_message"
    with pytest.raises(OptionError) as raised:
        factory.check({"colour": "blue"}, context)
    assert raised.value.key == "colour"
    factory.check({}, context)
    alone = OptionContext(config_dir=".", route=ROUTE)  # type: ignore[arg-type]
    with pytest.raises(OptionError, match=r"needs an \[operator\] section"):
        factory.check({}, alone)
    with pytest.raises(OptionError, match=r"needs an \[operator\] section"):
        factory.create({}, StrategyContext(clock=Clock(), config_dir=".", route=ROUTE))  # type: ignore[arg-type]
    assert factory.name == "operator"


def test_strategy_contract(tmp_path: Path) -> None:
    """The strategy meets the contract every strategy meets (the built-ins' suite)."""
    support = Support(ConversationSettings(fallback_after=0))
    check_strategy(BoundFactory(support), {}, tmp_path)
    assert support.store.inner.message_log  # the messages were stored


def test_strategy_interfaces() -> None:
    """The strategy is a reply strategy and a handshake hook."""
    desk = Desk()
    strategy = desk.harness.strategy
    assert isinstance(strategy, ConversationStrategy)
    assert verifyObject(IReplyStrategy, strategy)
    assert verifyObject(IHandshakeHook, strategy)


# -- plain text ----------------------------------------------------------------


def test_plain_acknowledged_once_per_episode() -> None:
    """
    The acknowledgement and the offline notice come once per episode, not
    after every message; a resolved conversation's next message opens a new
    episode with a new acknowledgement.
    """
    desk = Desk()
    client = desk.plain()
    client.send("Hello?")
    assert texts(client) == [OFFLINE]
    client.send("Anyone?")
    client.send("Please")
    assert texts(client) == []
    desk.online()
    desk.reply("Hi, I am here")
    assert texts(client) == ["Hi, I am here"]
    assert desk.conversation().delivered_upto == desk.conversation().last_seq
    desk.submit(Resolve(cid("v1"), "alice"))
    client.send("One more thing")
    assert texts(client) == [ACK]


def test_plain_binary_and_too_long() -> None:
    """A binary message and one too long get a text answer; nothing is stored."""
    desk = Desk()
    client = desk.plain()
    client.send(b"\x00\x01")
    client.send("x" * (32 * 1024 + 1))
    received = texts(client)
    assert received[0] == TEXT_ONLY
    assert "too long" in str(received[1])
    assert desk.conversation() is None


def test_plain_reconnect_gets_what_was_written_while_away() -> None:
    """Replies written while the visitor had no connection come on its next one, in order, once."""
    desk = Desk()
    client = desk.plain()
    client.send("Hello?")
    texts(client)
    client.disconnect()
    desk.reply("First answer")
    desk.reply("Second answer")
    assert desk.conversation().delivered_upto < desk.conversation().last_seq
    again = desk.plain()
    assert texts(again) == ["First answer", "Second answer"]
    assert desk.conversation().delivered_upto == desk.conversation().last_seq
    third = desk.plain()
    assert texts(third) == []


def test_plain_store_failure_not_confirmed() -> None:
    """A message the store could not take is not acknowledged: the visitor is told to resend."""
    desk = Desk()
    client = desk.plain()
    desk.store.error = OSError("disk I/O error")
    client.send("Hello?")
    assert texts(client) == [NOT_STORED]
    desk.store.error = None
    client.send("Hello?")
    assert texts(client) == [OFFLINE]
    assert desk.conversation().last_seq == 2


def test_plain_refused_over_max_unanswered() -> None:
    """Past max_unanswered the visitor is told to wait; nothing is stored."""
    desk = Desk(max_unanswered=2)
    client = desk.plain()
    client.send("one")
    client.send("two")
    texts(client)
    before = desk.conversation().last_seq
    client.send("three")
    assert texts(client) == [REFUSED["unanswered"].format(limit=2)]
    assert desk.conversation().last_seq == before


# -- structured ----------------------------------------------------------------


def test_structured_hello_welcome() -> None:
    """A new visitor's hello gets an empty welcome with its id, no status and
    no operator available."""
    desk = Desk()
    client = desk.structured()
    assert frames(client) == [{"type": "welcome", "visitor": "v1", "status": None,
                               "operators_available": False, "reply_within": None,
                               "read_upto": 0, "typing": [], "messages": [],
                               "more": False}]


def test_welcome_says_how_soon_how_far_read_and_who_types() -> None:
    """A reconnecting visitor learns at once what it would otherwise wait
    for: the route's usual first response, how far operators have read,
    who is typing (by display name); availability frames carry the usual
    first response too."""
    desk = Desk()
    times = ReplyTimes(desk.clock)
    desk.support.visitors.reply_within = times.reply_within
    desk.support.visitors.display_names = {"alice": "Alice Martin"}
    first = desk.structured()
    send(first, {"type": "message", "id": "c-1", "text": "Hello?"})
    desk.submit(OperatorRead(cid("v1"), "alice", 1))
    desk.submit(OperatorTyping(cid("v1"), "alice", True, display_name="Alice Martin"))
    times.observe(ROUTE, 150.0)
    times.observe(ROUTE, 90.0)
    times.observe(ROUTE, 3000.0)
    again = desk.structured()
    welcome = frames(again)[0]
    assert (welcome["reply_within"], welcome["read_upto"], welcome["typing"]) == (
        150.0, 1, ["Alice Martin"])
    frames(first)
    desk.online()
    assert {"type": "availability", "available": True, "reply_within": 150.0} in frames(first)


def test_reply_within_is_the_median_of_the_last_day() -> None:
    """The median of the day's first responses, worked out again at most
    once a minute; older ones drop out; bounded per route."""
    clock = Clock()
    times = ReplyTimes(clock)
    assert times.reply_within("/r") is None
    for seconds in (10.0, 20.0, 600.0):
        times.observe("/r", seconds)
    assert times.reply_within("/r") == 20.0
    times.observe("/r", 700.0)
    assert times.reply_within("/r") == 20.0, "cached for a minute"
    clock.advance(61)
    assert times.reply_within("/r") == 310.0
    clock.advance(DAY)
    assert times.reply_within("/r") is None, "a day later they are gone"
    for n in range(MAX_SAMPLES + 5):
        times.observe("/r", float(n))
    assert len(times._samples["/r"]) == MAX_SAMPLES


def test_structured_message_ack_and_notices() -> None:
    """A message is acknowledged with its seq and stored time, then the notice
    that fits follows (nobody online: the offline notice, not the acknowledgement)."""
    desk = Desk()
    client = desk.structured()
    frames(client)
    desk.clock.advance(100)
    send(client, {"type": "message", "id": "c-1", "text": "Hello?"})
    got = frames(client)
    assert got[0] == {"type": "ack", "id": "c-1", "seq": 1, "at": 100.0}
    assert [(f["seq"], f["author"], f["text"]) for f in got[1:]] == [(2, "system", OFFLINE)]
    stored = desk.store.inner.message_log[cid("v1")][1]
    assert stored.at == 100.0 and stored.client_message_id == "c-1"


def test_structured_resend_stored_once() -> None:
    """The same id again is acknowledged with the same seq and time, and stored once."""
    desk = Desk()
    client = desk.structured()
    frames(client)
    send(client, {"type": "message", "id": "c-1", "text": "Hello?"})
    first = frames(client)[0]
    desk.clock.advance(5)
    send(client, {"type": "message", "id": "c-1", "text": "Hello?"})
    again = frames(client)
    assert again == [{"type": "ack", "id": "c-1", "seq": first["seq"], "at": first["at"],
                      "duplicate": True}]
    assert desk.conversation().last_seq == 2


def test_structured_resume_after() -> None:
    """A reconnecting visitor gets every message after the one it has, once, in order."""
    desk = Desk()
    client = desk.structured()
    send(client, {"type": "message", "id": "c-1", "text": "Hello?"})
    desk.online()
    desk.reply("Answer one")
    frames(client)
    client.disconnect()
    desk.reply("Answer two")
    desk.reply("Answer three")
    again = desk.structured(after=3)
    got = frames(again)
    assert got[0]["type"] == "welcome"
    assert got[0]["status"] == "open" and got[0]["operators_available"] is True
    assert [(m["seq"], m["name"], m["text"]) for m in got[0]["messages"]] == [
        (4, "Alice", "Answer two"), (5, "Alice", "Answer three")]
    desk.reply("Answer four")
    assert seqs(frames(again)) == [6]


def test_structured_welcome_races_live_delivery() -> None:
    """
    A message committed while the welcome page is being read is sent once,
    after the page, in order: neither lost nor doubled.
    """
    desk = Desk()
    client = desk.structured()
    send(client, {"type": "message", "id": "c-1", "text": "Hello?"})
    client.disconnect()
    # The page read is held until the test lets it go.
    real = desk.store.inner.messages
    held: list[tuple[Any, str, int, int]] = []

    def slow(conversation_id: str, after: int = 0, limit: int = 100) -> Any:
        from twisted.internet.defer import Deferred
        d: Deferred[Any] = Deferred()
        held.append((d, conversation_id, after, limit))
        return d

    desk.store.inner.messages = slow  # type: ignore[method-assign]
    again = desk.structured(after=0)
    assert held and frames(again) == []
    desk.reply("During the read")          # committed after the read began
    desk.reply("Also during the read")
    d, conversation_id, after, limit = held.pop()
    # The read sees the first of them (it committed before the read's snapshot).
    rows: list[Any] = getattr(real(conversation_id, after, limit), "result")  # noqa: B009
    d.callback([r for r in rows if r.seq <= 3])
    got = frames(again)
    assert got[0]["type"] == "welcome"
    assert seqs(got) == [1, 2, 3, 4]
    desk.store.inner.messages = real  # type: ignore[method-assign]
    desk.reply("After")
    assert seqs(frames(again)) == [5]


def test_structured_other_tab_sees_own_message() -> None:
    """A visitor's message goes to its other structured tabs as a message with its id."""
    desk = Desk()
    one = desk.structured()
    two = desk.structured()
    frames(one)
    frames(two)
    send(one, {"type": "message", "id": "c-1", "text": "Hello?"})
    assert frames(one)[0]["type"] == "ack"
    copy = frames(two)
    assert copy[0] == {"type": "message", "seq": 1, "author": "visitor", "name": None,
                       "text": "Hello?", "at": 0.0, "id": "c-1"}
    assert seqs(copy) == [1, 2]


def test_structured_receipts_move_watermarks() -> None:
    """received and read move the conversation's watermarks, forward only."""
    desk = Desk()
    client = desk.structured()
    send(client, {"type": "message", "id": "c-1", "text": "Hello?"})
    desk.online()
    desk.reply("Hi")
    assert desk.conversation().delivered_upto == 0
    send(client, {"type": "received", "upto": 3})
    assert desk.conversation().delivered_upto == 3
    send(client, {"type": "read", "upto": 2})
    assert desk.conversation().visitor_read_upto == 2
    send(client, {"type": "read", "upto": 1})
    assert desk.conversation().visitor_read_upto == 2
    send(client, {"type": "read", "upto": 99})
    assert desk.conversation().visitor_read_upto == desk.conversation().last_seq


def test_structured_typing_both_ways() -> None:
    """
    The visitor's typing reaches operators and goes off after the typing
    timeout unless renewed; an operator's typing and read mark reach the visitor.
    """
    desk = Desk(typing_timeout=6.0)
    client = desk.structured()
    send(client, {"type": "message", "id": "c-1", "text": "Hello?"})
    frames(client)
    desk.support.ports.said.clear()
    send(client, {"type": "typing", "on": True})
    assert typing_until(desk) == 6.0
    desk.clock.advance(4)
    send(client, {"type": "typing", "on": True})   # renewed
    desk.clock.advance(4)
    assert typing_until(desk) == 10.0
    desk.clock.advance(2.5)
    assert typing_until(desk) is None
    desk.submit(OperatorTyping(cid("v1"), "alice", True, display_name="Alice"))
    desk.submit(OperatorRead(cid("v1"), "alice", 1))
    assert frames(client) == [{"type": "typing", "on": True, "name": "Alice"},
                              {"type": "read", "upto": 1}]
    # The indicator's end names her as visitors know her, never by login.
    desk.support.visitors.display_names = {"alice": "Alice"}
    desk.submit(OperatorTyping(cid("v1"), "alice", False, display_name="Alice"))
    desk.submit(OperatorTyping(cid("v1"), "alice", True, display_name="Alice"))
    desk.clock.advance(7)  # the indicator runs out
    assert frames(client) == [{"type": "typing", "on": False, "name": "Alice"},
                              {"type": "typing", "on": True, "name": "Alice"},
                              {"type": "typing", "on": False, "name": "Alice"}]


def test_structured_contact() -> None:
    """A contact is kept and confirmed with the notice; a wrong address is an error."""
    desk = Desk()
    client = desk.structured()
    send(client, {"type": "contact", "email": "ann@example.com"})
    assert frames(client)[-1] == {"type": "error", "request": "contact",
                                  "error": "write a message first"}
    send(client, {"type": "message", "id": "c-1", "text": "Hello?"})
    frames(client)
    send(client, {"type": "contact", "email": "not an address"})
    assert frames(client) == [{"type": "error", "request": "contact",
                               "error": "not an email address"}]
    send(client, {"type": "contact", "email": "ann@example.com"})
    got = frames(client)
    assert got[0]["text"] == ("Got it: the team will see your email address (ann@example.com) "
                              "and may write to you there.")
    assert got[-1] == {"type": "ok", "request": "contact"}
    assert desk.conversation().contact == "ann@example.com"


def test_structured_refused_over_max_unanswered() -> None:
    """Over max_unanswered a message is refused with its id; nothing is stored."""
    desk = Desk(max_unanswered=1)
    client = desk.structured()
    send(client, {"type": "message", "id": "c-1", "text": "one"})
    frames(client)
    send(client, {"type": "message", "id": "c-2", "text": "two"})
    assert frames(client) == [{"type": "refused", "id": "c-2", "reason": "unanswered",
                               "text": REFUSED["unanswered"].format(limit=1)}]
    assert desk.conversation().last_seq == 2


def test_structured_store_failure_not_acknowledged() -> None:
    """A store failure is an error with the id, no ack; the resend with that id is stored once."""
    desk = Desk()
    client = desk.structured()
    frames(client)
    desk.store.error = OSError("disk I/O error")
    send(client, {"type": "message", "id": "c-1", "text": "Hello?"})
    got = frames(client)
    assert [f["type"] for f in got] == ["error"]
    assert got[0]["id"] == "c-1" and got[0]["request"] == "message"
    desk.store.error = None
    send(client, {"type": "message", "id": "c-1", "text": "Hello?"})
    assert frames(client)[0] == {"type": "ack", "id": "c-1", "seq": 1, "at": 0.0}
    assert desk.conversation().last_seq == 2


def test_structured_malformed_frames() -> None:
    """Malformed frames get errors and crash nothing; too many in a row close with 1008."""
    desk = Desk()
    client = desk.structured()
    frames(client)
    send(client, "{not json")
    send(client, "[1, 2]")
    send(client, {"type": "dance"})
    send(client, {"type": "message", "id": "c-1"})
    send(client, "[" * 50_000)
    got = frames(client)
    assert [f["type"] for f in got] == ["error"] * 5
    assert "unknown type" in got[2]["error"]
    assert got[3] == {"type": "error", "error": "message needs text", "request": "message",
                      "id": "c-1"}
    for _ in range(MAX_BAD_REQUESTS - 5):
        send(client, "nope")
    assert client.closed is not None and client.closed[0] == 1008


def test_structured_close_codes() -> None:
    """A binary frame closes with 1003, a frame over the protocol's bound with 1009."""
    desk = Desk()
    client = desk.structured()
    client.send(b"\x01")
    assert client.closed is not None and client.closed[0] == 1003
    other = Desk()
    big = other.harness.connect(query="client_id=v1", subprotocols=[SUBPROTOCOL])
    send(big, {"type": "message", "id": "c-1", "text": "x" * (64 * 1024)})
    assert big.closed is not None and big.closed[0] == 1009


def test_structured_hello_first() -> None:
    """Requests before hello are errors; a second hello is an error."""
    desk = Desk()
    client = desk.structured(hello=False)
    send(client, {"type": "message", "id": "c-1", "text": "Hello?"})
    assert frames(client)[0]["error"].startswith("say hello first")
    send(client, {"type": "hello"})
    send(client, {"type": "hello"})
    assert [f["type"] for f in frames(client)] == ["welcome", "error"]
    assert desk.conversation() is None


def test_structured_requests_after_hello_wait_for_the_welcome() -> None:
    """A client that sends its first message right after hello, without
    waiting for the welcome (the page is still being read), gets the
    welcome and then the message taken, in order; past MAX_EARLY waiting
    requests the rest are refused with their ids; a hello whose page fails
    refuses what waited (nothing stored)."""
    desk = Desk(max_unanswered=0)
    pending: list[Deferred[Any]] = []
    read = desk.store.messages

    def slow(*args: Any, **kwargs: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        pending.append(d)
        return d

    desk.store.messages = slow  # type: ignore[method-assign]
    client = desk.structured()
    for n in range(MAX_EARLY + 1):
        send(client, {"type": "message", "id": f"c-{n}", "text": f"Hello {n}"})
    [overflow] = frames(client)
    assert overflow["type"] == "error" and overflow["id"] == f"c-{MAX_EARLY}"
    assert desk.conversation() is None, "nothing is taken before the welcome"
    desk.store.messages = read  # type: ignore[method-assign]
    pending.pop().callback([])
    got = frames(client)
    assert got[0]["type"] == "welcome"
    acks = [f for f in got if f["type"] == "ack"]
    assert [a["id"] for a in acks] == [f"c-{n}" for n in range(MAX_EARLY)]
    assert [a["seq"] for a in acks] == sorted(a["seq"] for a in acks)

    failing = Desk()
    failing.store.messages = slow  # type: ignore[method-assign]
    other = failing.structured(visitor="v2")
    send(other, {"type": "message", "id": "c-9", "text": "Hello?"})
    pending.pop().errback(OSError("disk"))
    got = frames(other)
    assert [(f["type"], f.get("request"), f.get("id")) for f in got] == [
        ("error", "hello", None), ("error", "message", "c-9")]
    assert failing.conversation("v2") is None


def test_status_and_availability_reach_structured_clients() -> None:
    """Resolving tells the visitor; availability flips reach every structured client."""
    desk = Desk()
    client = desk.structured()
    send(client, {"type": "message", "id": "c-1", "text": "Hello?"})
    frames(client)
    desk.online()
    got = frames(client)
    assert {"type": "availability", "available": True, "reply_within": None} in got
    desk.submit(Resolve(cid("v1"), "alice"))
    assert frames(client) == [{"type": "status", "status": str(Status.RESOLVED)}]


def test_structured_welcome_page_bound_then_history() -> None:
    """
    A welcome holds one page (100 messages) and says more; the client pages
    on with history after, and once a page reaches the end it gets live
    messages again, each once and in order.
    """
    desk = Desk(notices_once=True, max_unanswered=0)
    client = desk.structured()
    for n in range(1, 131):
        send(client, {"type": "message", "id": f"c-{n}", "text": f"m{n}"})
    desk.online()
    client.disconnect()
    last = desk.conversation().last_seq
    again = desk.structured(after=0)
    welcome = frames(again)[0]
    assert welcome["type"] == "welcome" and welcome["more"] is True
    assert [m["seq"] for m in welcome["messages"]] == list(range(1, 101))
    desk.reply("While behind")       # not written live: the client is behind
    assert seqs(frames(again)) == []
    send(again, {"type": "history", "after": 100, "limit": 20})
    page = frames(again)
    assert page[0]["more"] is True and seqs(page) == list(range(101, 121))
    send(again, {"type": "history", "after": 120})
    page = frames(again)
    assert page[0]["more"] is False and seqs(page) == list(range(121, last + 2))
    desk.reply("Live again")
    assert seqs(frames(again)) == [last + 2]


def test_structured_history_before() -> None:
    """history before N: the newest messages before N, oldest first; more says older ones exist."""
    desk = Desk(max_unanswered=0)
    client = desk.structured()
    for n in range(1, 11):
        send(client, {"type": "message", "id": f"c-{n}", "text": f"m{n}"})
    frames(client)
    send(client, {"type": "history", "before": 8, "limit": 3})
    page = frames(client)
    assert page == [{"type": "history", "more": True, "messages": page[0]["messages"]}]
    assert seqs(page) == [5, 6, 7]
    send(client, {"type": "history", "before": 3, "limit": 5})
    page = frames(client)
    assert seqs(page) == [1, 2] and page[0]["more"] is False


def test_structured_hello_after_past_the_end() -> None:
    """A hello claiming more than the thread holds still gets what comes next."""
    desk = Desk()
    client = desk.structured()
    send(client, {"type": "message", "id": "c-1", "text": "Hello?"})
    client.disconnect()
    again = desk.structured(after=500)
    assert frames(again)[0]["messages"] == []
    desk.online()
    desk.reply("Hi")
    assert seqs(frames(again)) == [3]


def test_plain_catch_up_over_pages() -> None:
    """More than a page written while away comes whole, in order, once."""
    desk = Desk()
    client = desk.plain()
    client.send("Hello?")
    client.disconnect()
    desk.online()
    for n in range(250):
        desk.reply(f"r{n}")
    again = desk.plain()
    assert texts(again) == [f"r{n}" for n in range(250)]
    assert desk.conversation().delivered_upto == desk.conversation().last_seq


def test_lane_full_refused_busy() -> None:
    """When too many events wait for one conversation, a message is refused as busy (try later)."""
    desk = Desk(lanes={"max_per_conversation": 2})
    plain = desk.plain()
    structured = desk.structured()
    frames(structured)
    desk.store.gated = True
    plain.send("one")
    plain.send("two")
    plain.send("three")
    send(structured, {"type": "message", "id": "c-9", "text": "four"})
    assert texts(plain) == [REFUSED["busy"]]
    assert frames(structured) == [{"type": "refused", "id": "c-9", "reason": "busy",
                                   "text": REFUSED["busy"]}]
    desk.store.land_all()
    assert desk.conversation().last_seq >= 2


def test_typing_off_when_the_connection_closes() -> None:
    """A visitor typing when its connection closes stops typing for the operators at once."""
    desk = Desk()
    client = desk.structured()
    send(client, {"type": "message", "id": "c-1", "text": "Hello?"})
    send(client, {"type": "typing", "on": True})
    assert typing_until(desk) is not None
    client.disconnect()
    assert typing_until(desk) is None


def test_handshake_without_the_subprotocol_is_plain() -> None:
    """A client offering other subprotocols only is served plain text, with none chosen."""
    desk = Desk()
    client = desk.harness.connect(query="client_id=v1", subprotocols=["chat.v2"])
    assert client.status == 101 and client.subprotocol is None
    client.send("Hello?")
    assert texts(client) == [OFFLINE]


def test_visitor_sessions_bound_closes_with_1008() -> None:
    """A visitor over its connections bound is closed with 1008; its others stay open."""
    desk = Desk()
    bound = desk.support.visitors.max_sessions_per_visitor
    clients = [desk.structured() for _ in range(bound)]
    extra = desk.harness.connect(query="client_id=v1")
    assert extra.closed is not None and extra.closed[0] == 1008
    assert all(c.is_open for c in clients)


def test_structured_choice_survives_a_reload() -> None:
    """
    A connection whose handshake the route's old strategy answered and
    whose opening the rebuilt strategy (a reload) sees is still structured.
    """
    desk = Desk()
    old = desk.harness.strategy
    assert isinstance(old, ConversationStrategy)
    rebuilt = ConversationStrategy(desk.driver, desk.support.visitors, ROUTE, desk.clock)
    request = HandshakeRequest(session_id="s-1", path=ROUTE, query="", headers={},
                               subprotocols=(SUBPROTOCOL,), peer="127.0.0.1:1")
    answered: list[Any] = []
    old.connecting(request).addCallback(answered.append)
    assert answered[0].subprotocol == SUBPROTOCOL
    session = RecordingSession("s-1", ROUTE, client_id="v1")
    rebuilt.connection_opened(session)
    rebuilt.message_received(session, json.dumps({"type": "hello"}))
    assert json.loads(str(session.sent[0]))["type"] == "welcome"
    abandoned = HandshakeRequest(session_id="s-2", path=ROUTE, query="", headers={},
                                 subprotocols=(SUBPROTOCOL,), peer="127.0.0.1:2")
    old.connecting(abandoned)
    rebuilt.abandoned("s-2")
    assert desk.support.visitors.take_handshake("s-2") == (Mode.PLAIN, 0)


def test_nothing_sent_is_bigger_than_the_route_takes() -> None:
    """
    The route's max_message_size holds for what it sends: a welcome holds
    fewer messages (and says more), a message too big alone comes cut and
    marked truncated; a plain client is not written one it cannot take,
    and the rest still come.
    """
    desk = Desk(max_unanswered=0)
    desk.harness = StrategyHarness(BoundFactory(desk.support), route=ROUTE,
                                   identity=IdentityPolicy(mode="claimed"),
                                   max_message_size=4096)
    desk.driver = desk.support.driver
    desk.store = desk.support.store
    desk.clock = desk.harness.clock
    writer = desk.structured()
    for n in range(1, 11):
        send(writer, {"type": "message", "id": f"c-{n}", "text": f"{n}" * 1000})
    writer.disconnect()
    client = desk.structured(after=0)
    welcome = frames(client)[0]
    assert welcome["type"] == "welcome" and welcome["more"] is True
    assert 1 <= len(welcome["messages"]) < 12
    have, more = welcome["messages"][-1]["seq"], True
    while more:   # paged on to the end: live messages come again
        send(client, {"type": "history", "after": have})
        [history] = frames(client)
        assert len(compact(history)) <= 4096
        have, more = seqs([history])[-1], history["more"]
    assert have == desk.conversation().last_seq
    desk.online()
    desk.reply("x" * 5000)
    cut = [f for f in frames(client) if f["type"] == "message"]
    assert cut[-1]["truncated"] is True and cut[-1]["length"] == 5000
    assert len(compact(cut[-1])) <= 4096
    plain = desk.plain()
    texts(plain)
    desk.reply("y" * 5000)
    desk.reply("small")
    assert texts(plain) == ["small"]
    assert client.is_open and plain.is_open


def test_plain_catch_up_failure_leaves_live_messages_flowing() -> None:
    """A store that cannot be read at connect time is logged; live replies still come."""
    desk = Desk()
    first = desk.plain()
    first.send("Hello?")
    first.disconnect()
    desk.online()
    desk.reply("While away")

    def broken(*args: object, **kwargs: object) -> Any:
        from twisted.internet.defer import fail
        return fail(OSError("disk I/O error"))

    desk.store.inner.messages = broken  # type: ignore[method-assign]
    events: list[LogEvent] = []
    observer: Any = events.append
    globalLogPublisher.addObserver(observer)
    try:
        client = desk.plain()
    finally:
        globalLogPublisher.removeObserver(observer)
    assert texts(client) == []
    desk.reply("Live")
    assert texts(client) == ["Live"]
    failures = [e for e in events if "log_failure" in e]
    assert [e["log_failure"].type for e in failures] == [OSError]


def test_outcome_unknown_is_not_said_to_have_failed() -> None:
    """
    A store that may have taken the message (Redis stopped answering) is not
    said to have failed: the plain visitor is told it may have reached us,
    the structured one to send it again with its id (stored once).
    """
    desk = Desk()
    plain = desk.plain("p1")
    client = desk.structured()
    frames(client)
    desk.store.error = BrokerOutcomeUnknown("Redis did not answer in time")
    plain.send("Hello?")
    assert texts(plain) == [UNCONFIRMED]
    send(client, {"type": "message", "id": "c-1", "text": "Hello?"})
    [error] = frames(client)
    assert error["id"] == "c-1" and "not stored twice" in error["error"]


def test_welcome_says_when_an_email_is_known() -> None:
    """A visitor that left an address is welcomed with email_known (the widget
    then asks for none); before it did, the key is absent."""
    desk = Desk()
    client = desk.structured()
    assert "email_known" not in frames(client)[0]
    send(client, {"type": "message", "id": "c-1", "text": "Hello?"})
    send(client, {"type": "contact", "email": "ann@example.com"})
    assert frames(client)[-1] == {"type": "ok", "request": "contact"}
    again = desk.structured()
    assert frames(again)[0]["email_known"] is True
