"""
Search over conversations served by the real daemon (issue 22, item 4):
operator protocol v2's `search` over `websockets`, after a restart (so the
resolved conversations are only in the store): found by a word of their
text and by the visitor's email, snippets and marks right, notes only when
asked, pages, a hit opened by the alias the answer gave, bad input refused;
and on Redis, which keeps no index, the live conversations searched.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from tests.daemon import Daemon
from tests.integration.test_conversations_redis import ALICE as REDIS_ALICE
from tests.integration.test_conversations_redis import config_text as redis_config
from tests.operator_client import CHAT, TOKEN, next_of, operator_desk, request, support_config
from tests.redis_server import RedisServer
from wsdaemon.support.search_index import MIGRATION

pytestmark = pytest.mark.slow

SECRET = "the-site-backend-secret-7f3a"

CONFIG = support_config(
    "[route:/support]\nstrategy = operator\nidentity_hash_secret_file = visitor-ids.secret",
    display_name=False, ack=False)


@pytest.fixture
def config(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "visitor-ids.secret").write_text(f"{SECRET}\n")
    path = tmp_path / "wsdaemon.ini"
    path.write_text(CONFIG, encoding="utf-8")
    yield path


def operator(daemon: Daemon) -> ClientConnection:
    return operator_desk(daemon, TOKEN)


def visitor_says(daemon: Daemon, text: str, email: str | None = None) -> str:
    """A structured visitor (identified with the site's HMAC when an email is given) says
    C{text} and leaves; @return: its visitor id."""
    with connect(f"{daemon.url}/support", subprotocols=[CHAT]) as ws:  # type: ignore[list-item]
        ws.send(json.dumps({"type": "hello"}))
        visitor = str(next_of(ws, "welcome")["visitor"])
        if email is not None:
            ws.send(json.dumps({"type": "identify", "name": "Jane Roe", "email": email,
                                "hash": hmac.new(SECRET.encode(), visitor.encode(),
                                                 hashlib.sha256).hexdigest()}))
            assert next_of(ws, "ok")["request"] == "identify"
        ws.send(json.dumps({"type": "message", "id": "c-1", "text": text}))
        assert next_of(ws, "ack")["id"] == "c-1"
    return visitor


def ok(answer: dict[str, Any]) -> dict[str, Any]:
    assert answer["type"] == "ok", answer
    return answer


def test_resolved_conversations_are_found_after_a_restart(config: Path) -> None:
    """Two resolved conversations, the daemon restarted on the file without
    its index (built at start, logged with its counts): found by a word of
    either side's text, by email (the visitor's details), by a note only
    when asked; a page at a time, most recent first; a hit opened by the
    alias it came with; bad searches refused saying why."""
    daemon = Daemon(config)
    try:
        jane = visitor_says(daemon, "I want a refund for order A-1234, it never came",
                            email="jane.roe@example.com")
        bob = visitor_says(daemon, "Refund please, the box was broken")
        with operator(daemon) as desk:
            listed = ok(request(desk, {"type": "conversations"}))["conversations"]
            ids = {c["visitor"]: c["id"] for c in listed}
            ok(request(desk, {"type": "reply", "conversation": ids[jane],
                              "text": "Your refunds were sent today."}))
            ok(request(desk, {"type": "note", "conversation": ids[jane],
                              "text": "gave a voucher as well"}))
            for visitor in (jane, bob):
                ok(request(desk, {"type": "resolve", "conversation": ids[visitor]}))
    finally:
        assert daemon.stop() == 0
    # As an older release left the file: no index. The restart builds it, and says so.
    db = sqlite3.connect(config.parent / "conversations.sqlite3")
    with db:
        db.execute("DROP TABLE conversation_search")
        db.execute("DELETE FROM wsdaemon_migrations WHERE name = ?", (MIGRATION,))
    db.close()
    again = Daemon(config)
    try:
        log = again.wait_for_log("search index of", timeout=10)
        assert "built: 2 conversations, 3 messages, 1 notes in" in log
        with operator(again) as desk:
            assert ok(request(desk, {"type": "conversations"}))["conversations"] == []
            both = ok(request(desk, {"type": "search", "text": "refund"}))
            assert both["scope"] == "all" and both["total"] == 2 and not both["partial"]
            # Jane's is the most recent (its reply and note came after Bob's message).
            assert [r["conversation"]["visitor"] for r in both["results"]] == [jane, bob]
            assert [r["conversation"]["status"] for r in both["results"]] == ["resolved"] * 2
            jane_hits = both["results"][0]["hits"]
            assert [h["kind"] for h in jane_hits] == ["message", "message"]
            newest = jane_hits[0]
            assert newest["snippet"] == "Your refunds were sent today."
            assert [newest["snippet"][a:b] for a, b in newest["marks"]] == ["refunds"]
            assert jane_hits[1]["seq"] == 1
            assert ok(request(desk, {"type": "search", "text": "refund",
                                     "status": "open"}))["results"] == []
            first = ok(request(desk, {"type": "search", "text": "refund", "limit": 1,
                                      "status": "resolved"}))
            assert [r["conversation"]["visitor"] for r in first["results"]] == [jane]
            assert first["more"] and first["next"]
            second = ok(request(desk, {"type": "search", "text": "refund", "limit": 1,
                                       "status": "resolved", "after": first["next"]}))
            assert [r["conversation"]["visitor"] for r in second["results"]] == [bob]
            assert not second["more"] and second["next"] is None
            by_order = ok(request(desk, {"type": "search", "text": "a-1234"}))
            [hit] = by_order["results"][0]["hits"]
            assert hit["seq"] == 1 and "refund for order A-1234" in hit["snippet"]
            by_email = ok(request(desk, {"type": "search", "text": "jane.roe@example.com"}))
            [found] = by_email["results"]
            assert found["conversation"]["email"] == "jane.roe@example.com"
            assert found["hits"][0]["kind"] == "visitor"
            assert ok(request(desk, {"type": "search", "text": "voucher"}))["results"] == []
            noted = ok(request(desk, {"type": "search", "text": "voucher", "notes": True}))
            assert noted["results"][0]["hits"][0] == {
                "kind": "note", "note": 1, "snippet": "gave a voucher as well",
                "marks": [[7, 14]]}
            opened = ok(request(desk, {"type": "open",
                                       "conversation": found["conversation"]["alias"]}))
            assert opened["conversation"]["id"] == found["conversation"]["id"]
            assert opened["entries"][0]["text"].startswith("I want a refund")
            for bad, said in (({"text": ""}, "'text'"), ({"text": "refund", "limit": 51},
                                                         "'limit'"),
                              ({"text": "refund", "after": "x"}, "'after'"),
                              ({"text": "?!"}, "no word"),
                              ({"text": "refund", "status": "closed"}, "'status'")):
                refused = request(desk, {"type": "search", **bad})
                assert refused["type"] == "error" and said in refused["error"], refused
    finally:
        assert again.stop() == 0


def test_on_redis_the_live_conversations_are_searched(redis_server: RedisServer,
                                                      tmp_path: Path) -> None:
    """With conversations in Redis there is no index: a search finds a live
    conversation by its latest message and says its scope is the live ones;
    once resolved it is not found (the documented limit)."""
    config = tmp_path / "a.ini"
    config.write_text(redis_config(redis_server, tmp_path, "a"), encoding="utf-8")
    daemon = Daemon(config)
    try:
        daemon.wait_for_log("redis: connected", timeout=10)
        visitor_says(daemon, "my parcel is late")
        with operator_on_redis(daemon) as desk:
            found = ok(request(desk, {"type": "search", "text": "PARCEL"}))
            assert found["scope"] == "live" and found["total"] == 1
            [result] = found["results"]
            assert result["hits"] == [{"kind": "preview", "snippet": "my parcel is late",
                                       "marks": [[3, 9]]}]
            ok(request(desk, {"type": "resolve", "conversation": result["conversation"]["id"]}))
            gone = ok(request(desk, {"type": "search", "text": "parcel"}))
            assert gone["results"] == [] and gone["scope"] == "live"
    finally:
        assert daemon.stop() == 0


def operator_on_redis(daemon: Daemon) -> ClientConnection:
    return operator_desk(daemon, REDIS_ALICE)
