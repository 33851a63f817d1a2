"""
Upgrading from the retired item queue (issue 22), on the real daemon: a
store the queue left (its SQLite file; or, with C{[broker] backend = redis},
its keys under the same prefix), written as the queue wrote it
(tests/legacy_queue.py), is taken over by conversations when the daemon
starts: the operator finds the visitor's thread, answered and unanswered
messages alike, the visitor's next message lands in it, and a reply the
queue had stored but not yet written reaches its visitor when it connects.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from tests.daemon import Daemon
from tests.legacy_queue import QueueFile, QueueKeys
from tests.operator_client import TOKEN, next_of, operator_desk, request
from tests.redis_server import RedisServer
from wsdaemon.client_ids import CREDENTIAL_COOKIE, public_id
from wsdaemon.connections.identity import issue
from wsdaemon.conversations import conversation_id_for

pytestmark = pytest.mark.slow

ROUTE = "/support"
PREFIX = "switch:"


def config_text(broker: str = "") -> str:
    return (
        "[wsdaemon]\nlisten = tcp:0:interface=127.0.0.1\n\n"
        # The visitors keep the ids the queue knew them by: the cookie's key is kept.
        "[protocol]\nidentity = anonymous\nidentity_secret_file = identity.key\n\n"
        f"[operator]\ntokens = alice:{TOKEN}\nstore = state/support.sqlite3\n"
        "fallback_after = 0\n\n"
        f"{broker}"
        f"[route:{ROUTE}]\nstrategy = operator\n")


def redis_broker(redis: RedisServer) -> str:
    return (f"[broker]\nbackend = redis\nurl = {redis.url}\nprefix = {PREFIX}\n"
            "heartbeat = 0.5\n\n")


class Visitors:
    """Two visitors the queue knew, by the cookies their browsers keep."""

    def __init__(self, directory: Path) -> None:
        secret = secrets.token_hex(32).encode("ascii")
        (directory / "identity.key").write_bytes(secret + b"\n")
        self.cookies = {name: issue(secret) for name in ("ann", "bob")}

    def id_of(self, name: str) -> str:
        """The id the queue stored for the visitor (its public id)."""
        return public_id(self.cookies[name])

    def connect(self, daemon: Daemon, name: str) -> ClientConnection:
        return connect(f"{daemon.url}{ROUTE}", additional_headers={
            "Cookie": f"{CREDENTIAL_COOKIE}={self.cookies[name]}"})


def the_queue_sqlite(path: Path, visitors: Visitors, t0: float) -> None:
    """
    What the queue left: ann asked twice, alice answered the first (written
    to her), the second waits; bob asked, alice's answer was stored while he
    was gone (not written yet).
    """
    queue = QueueFile(path)
    ann, bob = visitors.id_of("ann"), visitors.id_of("bob")
    queue.ask("a1", ROUTE, ann, "where is my order?", t0)
    queue.delivered(queue.answer("a1", "alice", "It left the warehouse today.", t0 + 30))
    queue.ask("b1", ROUTE, bob, "is anyone there?", t0 + 40)
    queue.answer("b1", "alice", "Yes, here: how can I help?", t0 + 50)
    queue.ask("a2", ROUTE, ann, "and the invoice?", t0 + 60)
    queue.close()


def the_queue_redis(call: Callable[..., Any], visitors: Visitors, t0: float) -> None:
    """The same on the shared queue's keys (ann's answer written by daemon d1)."""
    queue = QueueKeys(call, PREFIX)
    ann, bob = visitors.id_of("ann"), visitors.id_of("bob")
    queue.ask("a1", ROUTE, ann, "where is my order?", t0)
    queue.answer("a1", "alice", "It left the warehouse today.", t0 + 30, taken_by="d1")
    queue.settle("d1", ann, 2)
    queue.ask("b1", ROUTE, bob, "is anyone there?", t0 + 40)
    queue.answer("b1", "alice", "Yes, here: how can I help?", t0 + 50)
    queue.ask("a2", ROUTE, ann, "and the invoice?", t0 + 60)


def redis_call(redis: RedisServer) -> Callable[..., Any]:
    """One command at a time, through the test server's own tiny client."""

    def call(*args: str) -> str:
        reply = redis.command(*args)
        assert reply is not None and not reply.startswith("-"), (args[:2], reply)
        return reply

    return call


def entries_of(desk: ClientConnection, conversation: str) -> tuple[str, list[Any]]:
    opened = request(desk, {"type": "open", "conversation": conversation}, "open")
    assert opened["type"] == "ok", opened
    request(desk, {"type": "close"}, "close")
    said = [(entry.get("author"), entry.get("operator"), entry.get("text"))
            for entry in opened["entries"]]
    return str(opened["conversation"]["status"]), said


def the_open_one(desk: ClientConnection, timeout: float = 10) -> dict[str, Any]:
    """The one open conversation (the daemon listens while it still takes over)."""
    deadline = time.monotonic() + timeout
    while True:
        listed = request(desk, {"type": "conversations", "view": "all"}, "list")
        assert listed["type"] == "ok", listed
        found = [c for c in listed["conversations"] if c["status"] == "open"]
        if found or time.monotonic() > deadline:
            [summary] = found
            return summary  # type: ignore[no-any-return]
        time.sleep(0.05)


def taken_over(config: Path, visitors: Visitors) -> str:
    """
    Conversations on the queue's store: ann's thread is one open
    conversation and her next message joins it; bob's is resolved, and the
    answer he never got comes to him when he connects. @return: the log.
    """
    daemon = Daemon(config)
    try:
        desk = operator_desk(daemon, TOKEN)
        try:
            summary = the_open_one(desk)
            ann = conversation_id_for(ROUTE, visitors.id_of("ann"))
            assert summary["id"] == ann, summary
            assert entries_of(desk, ann) == ("open", [
                ("visitor", None, "where is my order?"),
                ("operator", "alice", "It left the warehouse today."),
                ("visitor", None, "and the invoice?")])
            bob = conversation_id_for(ROUTE, visitors.id_of("bob"))
            assert entries_of(desk, bob) == ("resolved", [
                ("visitor", None, "is anyone there?"),
                ("operator", "alice", "Yes, here: how can I help?")])
            with visitors.connect(daemon, "bob") as visitor:
                assert visitor.recv(timeout=5) == "Yes, here: how can I help?"
            with visitors.connect(daemon, "ann") as visitor:
                visitor.send("any news?")
                news = next_of(desk, "message", timeout=10,
                               where=lambda m: m["message"].get("text") == "any news?")
                assert news["message"]["conversation"] == ann, news
                assert news["message"]["seq"] == 4, news
        finally:
            desk.close()
    finally:
        assert daemon.stop() == 0
    return daemon.log()


def test_a_queue_file_is_taken_over_by_conversations(tmp_path: Path) -> None:
    """Embedded broker: the conversation store takes the queue's SQLite file over."""
    visitors = Visitors(tmp_path)
    store = tmp_path / "state" / "support.sqlite3"
    the_queue_sqlite(store, visitors, time.time() - 600)
    config = tmp_path / "wsdaemon.ini"
    config.write_text(config_text(), encoding="utf-8")
    log = taken_over(config, visitors)
    assert f"conversations: 2 made from the operator queue's tables in {store}" in log, log


def test_queue_keys_are_taken_over_by_conversations(redis_server: RedisServer,
                                                    tmp_path: Path) -> None:
    """[broker] backend = redis: the conversations take the queue's keys over
    (same prefix); the SQLite file is not used."""
    visitors = Visitors(tmp_path)
    the_queue_redis(redis_call(redis_server), visitors, time.time() - 600)
    config = tmp_path / "wsdaemon.ini"
    config.write_text(config_text(redis_broker(redis_server)), encoding="utf-8")
    log = taken_over(config, visitors)
    assert "conversations: 2 made from the operator queue's keys in Redis" in log, log
    assert not (tmp_path / "state" / "support.sqlite3").exists()
