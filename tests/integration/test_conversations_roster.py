"""
The configured operators are the team from the start, on the real daemon:
an operator connecting first sees colleagues who never connected listed
offline, and gives one of them a conversation by hand (it waits for them);
on SQLite, and on two daemons sharing Redis.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection

from tests.daemon import Daemon
from tests.integration.test_conversations_redis import config_text as redis_config
from tests.operator_client import next_of, operator_desk, request, structured, the_conversation
from tests.redis_server import RedisServer

ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdefgh"
CAROL = "carol-token-0123456789abcdef"


def sqlite_config(tmp_path: Path) -> Path:
    config = tmp_path / "wsdaemon.ini"
    config.write_text(
        "[wsdaemon]\nlisten = tcp:0:interface=127.0.0.1\n\n"
        "[protocol]\nidentity = anonymous\n\n"
        "[operator]\nmodel = conversations\nrouting = manual\n"
        f"tokens =\n    alice:{ALICE}\n    bob:{BOB}\n    carol:{CAROL}\n"
        "display_names =\n    bob: Bob Stone\n"
        "store = conversations.sqlite3\nfallback_after = 0\noffline_message =\n\n"
        "[route:/support]\nstrategy = operator\n", encoding="utf-8")
    return config


def visitor_writes(visitor: ClientConnection, text: str) -> None:
    visitor.send(json.dumps({"type": "hello"}))
    next_of(visitor, "welcome")
    visitor.send(json.dumps({"type": "message", "id": "m1", "text": text}))


def team_of(answer: dict[str, Any]) -> dict[str, str]:
    return {entry["name"]: entry["availability"] for entry in answer["team"]}


def give_to_bob(desk: ClientConnection) -> dict[str, Any]:
    """A visitor writes; alice assigns the conversation to bob: the assignee after."""
    key = the_conversation(desk)
    answer = request(desk, {"type": "assign", "conversation": key, "operator": "bob"}, "as")
    assert answer["type"] == "ok", answer
    listed = request(desk, {"type": "conversations", "view": "all"}, "all")
    return dict(listed["conversations"][0])


def test_configured_operators_listed_offline_and_assignable(tmp_path: Path) -> None:
    """Alice, first to connect, sees bob and carol offline in the hello and
    the team request, and gives a conversation to bob, who never connected;
    bob finds it his when he does."""
    daemon = Daemon(sqlite_config(tmp_path))
    try:
        ws = operator_desk(daemon, ALICE)
        with ws as desk, structured(daemon) as visitor:
            team = team_of(request(desk, {"type": "team"}, "team"))
            assert team == {"alice": "offline", "bob": "offline", "carol": "offline"}
            online = request(desk, {"type": "availability", "availability": "online"}, "on")
            assert team_of(online) == {"alice": "online", "bob": "offline", "carol": "offline"}
            visitor_writes(visitor, "is anyone there?")
            summary = give_to_bob(desk)
            assert summary["assignee"] == "bob"
            with operator_desk(daemon, BOB) as bob:
                mine = request(bob, {"type": "conversations", "view": "mine"}, "mine")
                assert [c["id"] for c in mine["conversations"]] == [summary["id"]]
    finally:
        assert daemon.stop() == 0


@pytest.fixture
def pair(redis_server: RedisServer, tmp_path: Path) -> Iterator[tuple[Daemon, Daemon]]:
    """Daemons A and B on one Redis, configured with alice and bob (manual routing)."""
    started: list[Daemon] = []
    try:
        for name in ("a", "b"):
            config = tmp_path / f"{name}.ini"
            config.write_text(redis_config(redis_server, tmp_path, name), encoding="utf-8")
            daemon = Daemon(config)
            started.append(daemon)
            daemon.wait_for_log("live conversations loaded", timeout=10)
            daemon.wait_for_log("redis: connected", timeout=10)
        yield started[0], started[1]
    finally:
        for daemon in started:
            assert daemon.stop() == 0


@pytest.mark.slow
def test_on_two_daemons_the_roster_is_the_team_from_the_start(
        pair: tuple[Daemon, Daemon]) -> None:
    """Alice on B, bob on neither: both daemons list bob offline; alice gives
    him the conversation a visitor opened on A, and A sees it his."""
    a, b = pair
    with operator_desk(a, ALICE) as on_a:
        assert team_of(request(on_a, {"type": "team"}, "t")) == {
            "alice": "offline", "bob": "offline"}
    with structured(a) as visitor, operator_desk(b, ALICE) as desk:
        assert team_of(request(desk, {"type": "team"}, "t"))["bob"] == "offline"
        visitor_writes(visitor, "hello from A")
        summary = give_to_bob(desk)
        assert summary["assignee"] == "bob"
    with operator_desk(a, BOB) as bob:
        mine = request(bob, {"type": "conversations", "view": "mine"}, "mine")
        assert [c["id"] for c in mine["conversations"]] == [summary["id"]]
