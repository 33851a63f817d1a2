"""
Switching a running service from the deprecated item queue to the default
conversations (issue 22), on the real daemon: `model = queue` said
explicitly logs its deprecation once at start; the same config with the key
dropped starts on conversations, which take the queue's store over (the
SQLite file; or, with `[broker] backend = redis`, the keys under the same
prefix), so the operator finds the visitor's thread, answered and
unanswered messages alike, and the visitor's next message lands in it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from websockets.sync.client import connect

from tests.daemon import Daemon
from tests.operator_client import (
    Operator,
    next_of,
    operator_desk,
    request,
    the_conversation,
)
from tests.redis_server import RedisServer

pytestmark = pytest.mark.slow

TOKEN = "alice-token-0123456789abcdef"
#: The start of the queue's acknowledgement (its default).
ACK = "Thanks! Your message is number "
DEPRECATED = "[operator] model = queue is deprecated and will be removed"


def config_text(model: str, broker: str = "") -> str:
    return (
        "[wsdaemon]\nlisten = tcp:0:interface=127.0.0.1\n\n"
        # The visitor keeps its id across the restart: the cookie's key is kept.
        "[protocol]\nidentity = anonymous\nidentity_secret_file = identity.key\n\n"
        f"[operator]\n{model}\ntokens = alice:{TOKEN}\nstore = state/support.sqlite3\n"
        "fallback_after = 0\nfallback_when_offline = no\n\n"
        f"{broker}"
        "[route:/support]\nstrategy = operator\n")


def redis_broker(redis: RedisServer) -> str:
    return (f"[broker]\nbackend = redis\nurl = {redis.url}\nprefix = switch:\n"
            "heartbeat = 0.5\n\n")


def run_the_queue(config: Path) -> tuple[str, str]:
    """
    On the queue: a visitor asks twice, alice answers the first item; the
    second stays open. @return: the visitor's cookie and the daemon's log.
    """
    daemon = Daemon(config)
    try:
        alice = Operator(daemon, TOKEN)
        try:
            with connect(f"{daemon.url}/support") as visitor:
                assert visitor.response is not None
                cookie = visitor.response.headers["Set-Cookie"].split(";", 1)[0]
                visitor.send("where is my order?")
                assert str(visitor.recv(timeout=5)).startswith(ACK)
                first = alice.next("item")["item"]
                assert first["text"] == "where is my order?"
                answer = alice.request(type="reply", item=first["item_id"],
                                       text="It left the warehouse today.")
                assert answer["type"] == "ok", answer
                assert visitor.recv(timeout=5) == "It left the warehouse today."
                visitor.send("and the invoice?")
                assert str(visitor.recv(timeout=5)).startswith(ACK)
                assert alice.next("item")["item"]["text"] == "and the invoice?"
        finally:
            alice.close()
    finally:
        assert daemon.stop() == 0
    return cookie, daemon.log()


def switched(config: Path, cookie: str) -> str:
    """
    The same config without `model`: conversations. The operator finds the
    queue's thread as one open conversation, and the visitor's next message
    joins it. @return: the daemon's log.
    """
    daemon = Daemon(config)
    try:
        desk = operator_desk(daemon, TOKEN)
        try:
            # The daemon listens while the store is still taking over: wait.
            the_conversation(desk, timeout=10)
            listed = request(desk, {"type": "conversations", "view": "all"}, "list")
            assert listed["type"] == "ok", listed
            [summary] = listed["conversations"]
            assert summary["status"] == "open", summary
            opened = request(desk, {"type": "open", "conversation": summary["id"]}, "open")
            assert opened["type"] == "ok", opened
            said = [(entry.get("author"), entry.get("operator"), entry.get("text"))
                    for entry in opened["entries"]]
            assert said == [("visitor", None, "where is my order?"),
                            ("operator", "alice", "It left the warehouse today."),
                            ("visitor", None, "and the invoice?")], opened["entries"]
            with connect(f"{daemon.url}/support",
                         additional_headers={"Cookie": cookie}) as visitor:
                visitor.send("any news?")
                news = next_of(desk, "message", timeout=10,
                               where=lambda m: m["message"].get("text") == "any news?")
                assert news["message"]["conversation"] == summary["id"], news
                assert news["message"]["seq"] == 4, news
        finally:
            desk.close()
    finally:
        assert daemon.stop() == 0
    return daemon.log()


def check_the_logs(queue_log: str, conversations_log: str, store: str) -> None:
    """The warning once on the queue's start, naming its store; none after."""
    assert queue_log.count(DEPRECATED) == 1, queue_log
    warning = next(line for line in queue_log.splitlines() if DEPRECATED in line)
    assert store in warning and "takes over this queue's store" in warning, warning
    assert DEPRECATED not in conversations_log, conversations_log


def test_a_queue_on_sqlite_switches_to_conversations(tmp_path: Path) -> None:
    """Embedded broker: the conversation store takes the queue's SQLite file over."""
    config = tmp_path / "wsdaemon.ini"
    config.write_text(config_text("model = queue"), encoding="utf-8")
    cookie, queue_log = run_the_queue(config)
    config.write_text(config_text(""), encoding="utf-8")
    conversations_log = switched(config, cookie)
    store = tmp_path / "state" / "support.sqlite3"
    assert (f"conversations: 1 made from the operator queue's tables in {store}"
            in conversations_log)
    check_the_logs(queue_log, conversations_log, f"the SQLite file {store}")


def test_a_queue_on_redis_switches_to_conversations(redis_server: RedisServer,
                                                    tmp_path: Path) -> None:
    """[broker] backend = redis: the conversations take the queue's keys over
    (same prefix), once; the SQLite file is not used."""
    config = tmp_path / "wsdaemon.ini"
    broker = redis_broker(redis_server)
    config.write_text(config_text("model = queue", broker), encoding="utf-8")
    cookie, queue_log = run_the_queue(config)
    config.write_text(config_text("", broker), encoding="utf-8")
    conversations_log = switched(config, cookie)
    assert "conversations: 1 made from the operator queue's keys in Redis" in conversations_log
    check_the_logs(queue_log, conversations_log, "Redis, the keys under 'switch:'")
    assert not (tmp_path / "state" / "support.sqlite3").exists()
