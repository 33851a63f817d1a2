"""
Issue 21's promises for conversations on Redis (`[operator] model =
conversations`, `[broker] backend = redis`), proven on a real redis-server
as the queue's are in test_redis_outages: stalls of 3, 12 and 30 s (CLIENT
PAUSE) from which the daemon comes back by itself; Redis loading its data
(LOADING) answered with a retryable error and logged once; and Redis killed
and stopped ten times under load (AOF, appendfsync always) with nothing a
visitor was acknowledged for lost or stored twice, and every operator reply
reaching its visitor once.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from tests.conversation_load import (
    ACK,
    AnsweringOperator,
    LoadVisitor,
    PlainLoadVisitor,
    cookie_of,
    frames,
    structured,
    thread_of,
)
from tests.daemon import Daemon, free_port
from tests.integration.test_conversations_redis import ADMIN_KEY, ALICE, BOB, config_text
from tests.operator_client import Operator
from tests.redis_server import RedisServer
from wsdaemon.support.driver import TIMER_RETRY
from wsdaemon.support.visitor import NOT_STORED, UNCONFIRMED

pytestmark = pytest.mark.slow

#: What a structured visitor is told when its message was not stored or
#: not confirmed (both say to send it again with the same id).
RESEND = "send it again with the same id"
#: Seconds a daemon may take to be healthy again once Redis answers.
RECOVERS_WITHIN = 3.0
#: Keys enough for Redis to load for seconds with --key-load-delay 50.
FILL = "for i = 1, 20000 do redis.call('SET', 'filler:' .. i, 'x') end return 1"


@pytest.fixture
def daemons(redis_server: RedisServer, tmp_path: Path) -> Iterator[Callable[[str], Daemon]]:
    """Start daemons on the test's Redis (the first writes the shared identity key)."""
    started: list[Daemon] = []

    def start(name: str) -> Daemon:
        config = tmp_path / f"{name}.ini"
        admin_port = free_port()
        config.write_text(config_text(redis_server, tmp_path, name, admin_port),
                          encoding="utf-8")
        port = free_port()
        while port == admin_port:
            port = free_port()
        daemon = Daemon(config, port=port)
        daemon.admin_port = admin_port  # type: ignore[attr-defined]
        started.append(daemon)
        daemon.wait_for_log("live conversations loaded", timeout=15)
        daemon.wait_for_log("redis: connected", timeout=10)
        return daemon

    try:
        yield start
    finally:
        for daemon in started:
            daemon.stop()


def health(daemon: Daemon) -> tuple[int, dict[str, Any]]:
    port = daemon.admin_port  # type: ignore[attr-defined]
    request = urllib.request.Request(f"http://127.0.0.1:{port}/healthz",
                                      headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, json.loads(answer.read().decode())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode())


def redis_up(daemon: Daemon) -> bool:
    status, said = health(daemon)
    return bool(status == 200 and said["broker"]["up"] and said["status"] == "ok")


def wait_healthy(daemon: Daemon, timeout: float) -> float:
    """@return: the monotonic time /healthz first said Redis is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if redis_up(daemon):
            return time.monotonic()
        time.sleep(0.05)
    raise AssertionError(f"/healthz still says Redis is down {timeout} s later:\n"
                         f"{health(daemon)}")


def heard_by(desk: Operator, text: str, timeout: float = 10) -> dict[str, Any]:
    """The message C{text} as an operator event brought it (new conversation or message)."""
    deadline = time.monotonic() + timeout
    while True:
        event = json.loads(desk.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if event.get("message", {}).get("text") == text:
            return event["message"]  # type: ignore[no-any-return]


def woken(desk: Operator, conversation: str, timeout: float) -> bool:
    """Whether the snoozed C{conversation} is open again within C{timeout} s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = desk.request(type="open", conversation=conversation)
        if found["type"] == "ok" and found["conversation"]["status"] == "open":
            return True
        time.sleep(0.2)
    return False


def log_lines(daemon: Daemon, text: str) -> int:
    return sum(text in line for line in daemon.log().splitlines())


def test_stalls_of_3_12_and_30_seconds(redis_server: RedisServer,
                                       daemons: Callable[[str], Daemon]) -> None:
    """
    With timeout = 1, Redis stalled (CLIENT PAUSE) for 3, 12 and 30 s:
    meanwhile a structured visitor's message is answered with an error
    telling it to send it again with the same id, and a plain visitor's
    with "could not be queued" or "may have reached us"; each time, without
    a restart, the daemon is healthy within a few seconds of Redis answering,
    the message sent again is acknowledged once and reaches the operators
    over protocol 2 (one on the same daemon, one on another that hears it
    through the stream); a plain visitor that came back during the stall gets
    what was written while it was away; a snooze that came due during the
    stall wakes once Redis answers. The log says unreachable and reachable
    again once per stall, never a traceback.
    """
    daemon, other = daemons("a"), daemons("b")
    visitor = structured(daemon)
    visitor.send(json.dumps({"type": "hello"}))
    frames(visitor, "welcome")
    desk = Operator(daemon, ALICE)
    far_desk = Operator(other, BOB)  # hears through the stream
    plain = connect(f"{daemon.url}/support")
    plain_cookie = cookie_of(plain)
    plain.send("hello from a plain page")
    assert plain.recv(timeout=5) == ACK
    plain_conversation = heard_by(desk, "hello from a plain page")["conversation"]
    plain.close()
    told: dict[str, str] = {}
    for n, seconds in enumerate((3, 12, 30)):
        text = f"after a {seconds} s stall"
        # Written to the plain visitor while it is away.
        answer = desk.request(type="reply", conversation=plain_conversation,
                              text=f"while you were away {n}")
        assert answer["type"] == "ok", answer
        if seconds > 10:  # a timer comes due during the stall
            snoozed = desk.request(type="snooze", conversation=plain_conversation,
                                   until=time.time() + 2)
            assert snoozed["conversation"]["status"] == "snoozed", snoozed
        redis_server.pause(seconds)
        time.sleep(0.2)
        visitor.send(json.dumps({"type": "message", "id": f"c-{n}", "text": text}))
        error = frames(visitor, "error", timeout=5)
        assert RESEND in error["error"] and error["id"] == f"c-{n}", error
        # The plain visitor comes back: what it missed cannot be read yet,
        # and what it sends cannot be stored.
        plain = connect(f"{daemon.url}/support", additional_headers={"Cookie": plain_cookie})
        told[sent := f"plain during a {seconds} s stall"] = ""
        plain.send(sent)
        told[sent] = str(plain.recv(timeout=5))
        assert told[sent] in (NOT_STORED, UNCONFIRMED), told
        # What a widget does meanwhile: receipts, typing, a new tab's hello
        # (a widget does not say hello again: it waits for its welcome).
        visitor.send(json.dumps({"type": "read", "upto": 1}))
        visitor.send(json.dumps({"type": "typing", "on": True}))
        tab = structured(daemon, cookie_of(visitor))
        tab.send(json.dumps({"type": "hello", "after": 0}))
        if seconds > 10:
            daemon.wait_for_log("redis: unreachable", timeout=seconds)
            assert not redis_up(daemon)
        answered = redis_server.wait_answering(timeout=seconds + 5)
        took = wait_healthy(daemon, timeout=60) - answered
        print(f"stall of {seconds} s: healthy {max(0, took):.2f} s after Redis answered")
        assert took < RECOVERS_WITHIN
        visitor.send(json.dumps({"type": "message", "id": f"c-{n}", "text": text}))
        ack = frames(visitor, "ack", where=lambda f, i=f"c-{n}": f["id"] == i)
        assert heard_by(desk, text)["seq"] == ack["seq"]
        assert heard_by(far_desk, text)["seq"] == ack["seq"]
        assert redis_up(other)
        # The tab waited for its welcome (read again once Redis answered),
        # then got the message, in its page or live; no error.
        welcome = frames(tab, ("welcome", "error"))
        assert welcome["type"] == "welcome", welcome
        if text not in [m["text"] for m in welcome["messages"]]:
            assert frames(tab, ("message", "error"))["text"] == text
        tab.close()
        if seconds > 10:  # the timer is tried again: the conversation wakes
            assert woken(desk, plain_conversation, timeout=TIMER_RETRY + 5)
        # What the plain visitor missed reaches it once Redis answers, once.
        assert plain.recv(timeout=10) == f"while you were away {n}"
        with pytest.raises(TimeoutError):
            plain.recv(timeout=0.5)
        plain.close()
    print(f"plain visitor told: {Counter(told.values())}")
    far_desk.close()
    visitor.close()
    # What a plain visitor was told had failed was not stored.
    plain_thread = structured(daemon, plain_cookie)
    plain_thread.send(json.dumps({"type": "hello", "after": 0}))
    stored = {m["text"] for m in frames(plain_thread, "welcome")["messages"]}
    plain_thread.close()
    assert not {t for t, a in told.items() if a == NOT_STORED} & stored, (told, stored)
    desk.close()
    # Each message stored once, however often it was sent.
    whole = structured(daemon, cookie_of(visitor))
    whole.send(json.dumps({"type": "hello", "after": 0}))
    texts = [m["text"] for m in frames(whole, "welcome")["messages"]
             if m["author"] == "visitor"]
    whole.close()
    assert [t for t in texts if t.startswith("after a")] == [
        f"after a {s} s stall" for s in (3, 12, 30)]
    for each in (daemon, other):
        log = each.log()
        assert "Traceback" not in log, log
        assert log_lines(each, "redis: unreachable") <= 3, log
        loud = [line for line in log.splitlines()
                if "#warn]" in line or "#error]" in line or "#critical]" in line]
        assert len(loud) <= 3 * 2, loud


def test_redis_loading_its_data_is_an_outage_answered_try_again(
        redis_server: RedisServer, daemons: Callable[[str], Daemon]) -> None:
    """
    Redis restarted with data to load (LOADING for seconds): an operator's
    replies are refused with a retryable error saying to try again (never
    "internal error"), a structured visitor is told to send its message
    again with the same id, a plain one that it could not be queued; the
    daemon logs the outage once, no traceback, and once Redis has loaded the
    operator's reply and the visitor's message sent again go through.
    """
    daemon = daemons("a")
    visitor = structured(daemon)
    visitor.send(json.dumps({"type": "hello"}))
    frames(visitor, "welcome")
    visitor.send(json.dumps({"type": "message", "id": "c-0", "text": "before the restart"}))
    frames(visitor, "ack")
    plain = connect(f"{daemon.url}/support")
    desk = Operator(daemon, ALICE)
    [summary] = desk.request(type="conversations", view="all")["conversations"]
    conversation = summary["id"]
    assert redis_server.command("EVAL", FILL, "0") == ":1"
    redis_server.stop()
    redis_server.start("--key-load-delay", "50", wait=False)
    assert str(redis_server.command("PING")).startswith("-LOADING")
    answers: list[dict[str, Any]] = []
    visitor_told: list[dict[str, Any]] = []
    plain_told: list[str] = []
    n = 0
    while redis_server.command("PING") != "+PONG":
        n += 1
        answers.append(desk.request(type="reply", conversation=conversation,
                                    text=f"while loading {n}"))
        visitor.send(json.dumps({"type": "message", "id": f"c-{n}", "text": f"loading {n}"}))
        visitor_told.append(frames(visitor, ("error", "ack"), timeout=10,
                                   where=lambda f, i=f"c-{n}": f.get("id") == i))
        plain.send(f"plain loading {n}")
        plain_told.append(str(plain.recv(timeout=10)))
    errors = [answer["error"] for answer in answers if answer["type"] == "error"]
    print(f"{len(answers)} replies while loading: {len(errors)} told to try again: "
          f"{Counter(errors)}; plain told {Counter(plain_told)}")
    assert errors and all(error.endswith("try again") for error in errors), errors
    assert all("internal error" not in error for error in errors), errors
    assert all(RESEND in told["error"] for told in visitor_told[:-1]), visitor_told
    assert visitor_told[0]["type"] == "error", visitor_told
    # (The last one may have found Redis loaded.)
    assert NOT_STORED in plain_told, plain_told
    wait_healthy(daemon, timeout=10)
    answer = desk.request(type="reply", conversation=conversation, text="loaded")
    assert answer["type"] == "ok", answer
    reply = frames(visitor, "message", where=lambda m: m.get("author") == "operator")
    assert reply["text"] in {"loaded"} | {f"while loading {i}" for i in range(n + 1)}
    visitor.send(json.dumps({"type": "message", "id": "c-1", "text": "loading 1"}))
    frames(visitor, "ack", where=lambda f: f["id"] == "c-1")
    for ws in (visitor, plain):
        ws.close()
    desk.close()
    log = daemon.log()
    assert log_lines(daemon, "redis: unreachable") == 1, log
    assert "Traceback" not in log and "internal error" not in log, log


def views_of(daemon: Daemon) -> list[tuple[Any, ...]]:
    """What an operator on C{daemon} is shown of each conversation."""
    desk = Operator(daemon, ALICE)
    try:
        listed = desk.request(type="conversations", view="all", limit=100)["conversations"]
    finally:
        desk.close()
    return sorted((c["id"], c["status"], c["waiting_since"], c["preview"],
                   c["delivered_upto"], c["visitor_read_upto"]) for c in listed)


def test_redis_restarted_ten_times_under_load_loses_nothing_stores_nothing_twice(
        redis_server: RedisServer, daemons: Callable[[str], Daemon]) -> None:
    """
    Two daemons; six structured visitors (three starting on each) sending
    one message after another, each sent again with its id until
    acknowledged, sending receipts as the widget does, and every eighth
    message coming back through the other daemon (resuming after what they
    have); two plain-text visitors sending a question every half second; an
    operator on each daemon answering the visitors that started on the
    other. Redis (AOF, appendfsync always) is
    restarted ten times meanwhile, alternately killed (SIGKILL) and stopped
    cleanly, away for less than the call timeout, more, and more than
    twice, three of the starts loading their data (LOADING) for seconds.
    At the end every message a visitor was acknowledged is stored
    exactly once (no id stored twice, nothing stored that was not
    acknowledged), each got its answer, and every operator reply reached
    its visitor exactly once, in seq order; both daemons show the same
    conversations, none waiting.
    """
    a, b = daemons("a"), daemons("b")
    stop_sending, stop_answering = threading.Event(), threading.Event()
    visitors = [LoadVisitor([(a, b)[n % 2], (b, a)[n % 2]], f"v{n}", stop_sending)
                for n in range(6)]
    plain = [PlainLoadVisitor((a, b)[n % 2], f"p{n}", stop_sending) for n in range(2)]
    # Each operator answers the visitors that start on the other daemon.
    desks = [AnsweringOperator(a, ALICE, stop_answering, lambda t: int(t[1]) % 2 == 1),
             AnsweringOperator(b, BOB, stop_answering, lambda t: int(t[1]) % 2 == 0)]
    assert redis_server.command("EVAL", FILL, "0") == ":1"
    for thread in (*visitors, *plain, *desks):
        thread.start()
    started = time.monotonic()
    loading = 0.0
    for restart in range(10):
        time.sleep(1.2)
        if restart % 2:
            redis_server.stop()
        else:
            redis_server.kill()
        time.sleep((0.3, 1.5, 3.0)[restart % 3])
        # Three of the starts load their data for seconds (LOADING).
        redis_server.start(*(("--key-load-delay", "5") if restart % 4 == 1 else ()),
                           wait=False)
        up = time.monotonic()
        redis_server.wait_answering(timeout=30)
        loading += time.monotonic() - up
    time.sleep(1.5)
    stop_sending.set()
    for visitor in (*visitors, *plain):
        visitor.join(45)
    stop_answering.set()
    for desk in desks:
        desk.join(15)
    took = time.monotonic() - started
    told = sum((v.told for v in visitors), Counter[str]())
    refused = sum((d.errors for d in desks), Counter[str]())
    print(f"{sum(len(v.acked) for v in visitors)} messages acknowledged in {took:.0f} s; "
          f"visitors told {dict(told)}, came back through the other daemon "
          f"{sum(v.reconnects for v in visitors)} times; operators answered "
          f"{sum(d.answered for d in desks)}, refused {dict(refused)}; Redis loading "
          f"{loading:.1f} s in all")
    print(f"plain visitors asked {sum(len(p.sure) + len(p.unsure) for p in plain)} "
          f"questions, told "
          f"{dict(sum((p.told for p in plain), Counter[str]()))}")
    assert all(not v.is_alive() for v in (*visitors, *plain))
    problems = [f"{v.name}: {p}" for v in (*visitors, *plain) for p in v.problems]
    assert not problems, problems
    for person in plain:
        assert person.cookie is not None
        stored = [m["text"] for m in thread_of(a, person.cookie) if m["author"] == "visitor"]
        # Each question stored once (those that may have reached us at
        # most once), and each stored one answered once.
        assert len(stored) == len(set(stored)), person.name
        assert set(person.sure) <= set(stored) <= set(person.sure) | set(person.unsure)
        assert sorted(person.answers) == sorted(stored), person.name
    for visitor in visitors:
        assert visitor.cookie is not None
        stored = thread_of(a, visitor.cookie)
        mine = [m for m in stored if m["author"] == "visitor"]
        # Each acknowledged message stored once, at the seq its ack said.
        assert sorted(m["id"] for m in mine) == sorted(visitor.acked), visitor.name
        assert {m["id"]: m["seq"] for m in mine} == visitor.acked, visitor.name
        assert len({m["text"] for m in mine}) == len(mine)
        replies = [(m["seq"], m["text"]) for m in stored if m["author"] == "operator"]
        # Each acknowledged message answered; each answer written once, in order.
        assert {text.removeprefix("answer to ") for _, text in replies} == {
            m["text"] for m in mine}, visitor.name
        assert visitor.got == replies, (visitor.name, visitor.got, replies)
    # Both daemons' views of the conversations agree (and with the store):
    # nobody waiting, the same last message, delivered and read as far.
    views = [views_of(daemon) for daemon in (a, b)]
    deadline = time.monotonic() + 5
    while views[0] != views[1] and time.monotonic() < deadline:
        time.sleep(0.2)
        views = [views_of(daemon) for daemon in (a, b)]
    assert views[0] == views[1]
    assert len(views[0]) == len(visitors) + len(plain)
    assert all(view[1] == "open" and view[2] is None and view[3].startswith("answer to ")
               for view in views[0]), views[0]
    log = "\n".join(d.log() for d in (a, b))
    assert "Traceback" not in log, log
    loud = Counter(line.split("]", 1)[1][:70] for line in log.splitlines()
                   if "#warn]" in line or "#error]" in line or "#critical]" in line)
    print(f"warnings and errors logged: {sum(loud.values())}: {loud.most_common(12)}")
    # The outages are logged, not each message: at most a few lines a restart.
    assert sum(loud.values()) <= 10 * 2 * 4, loud
