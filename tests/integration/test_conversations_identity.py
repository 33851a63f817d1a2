"""
Who the visitor is, on the real daemon (`[operator] model = conversations`),
with `websockets` clients and the terminal console as a subprocess: a
structured visitor that identifies with the HMAC of the id its welcome
gave is shown to an operator (protocol 2) with its name, email and
attributes; a wrong hash is refused and nothing is shown; a jwt route's
token claims are shown; text a visitor put in its profile reaches the
terminal console escaped; a route's missing secret file stops the daemon
with an error naming it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.daemon import Daemon, run_cli
from tests.operator_client import CHAT, TOKEN, next_of, request, support_config

pytestmark = pytest.mark.slow

SECRET = "the-site-backend-secret-7f3a"
JWT_SECRET = "jwt-secret-for-tests-0123456789abcdef"
HOSTILE = "\x1b]0;pwned\x07\x1b[2J<script>alert(1)</script>\u202eevil"

CONFIG = support_config(
    "[route:/support]\nstrategy = operator\nidentity_hash_secret_file = visitor-ids.secret",
    "[route:/app]\nstrategy = operator\nidentity = jwt\njwt_secret_file = jwt.secret\n"
    "profile_attributes_claim = account",
    display_name=False, ack=False)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    (tmp_path / "visitor-ids.secret").write_text(f"# signs visitor ids\n{SECRET}\n")
    (tmp_path / "jwt.secret").write_text(JWT_SECRET + "\n")
    config = tmp_path / "wsdaemon.ini"
    config.write_text(CONFIG, encoding="utf-8")
    running = Daemon(config)
    try:
        yield running
    finally:
        assert running.stop() == 0




def operator(daemon: Daemon) -> ClientConnection:
    desk = connect(f"{daemon.url}/operator",
                   additional_headers={"Authorization": f"Bearer {TOKEN}"})
    next_of(desk, "hello")
    return desk


def chat(daemon: Daemon, path: str = "/support") -> tuple[ClientConnection, str]:
    """A structured visitor after its welcome, and the id the welcome gave it."""
    ws = connect(f"{daemon.url}{path}", subprotocols=[CHAT])  # type: ignore[list-item]
    ws.send(json.dumps({"type": "hello"}))
    welcome = next_of(ws, "welcome")
    return ws, str(welcome["visitor"])


def signed(visitor: str, secret: str = SECRET) -> str:
    """What the site's backend computes (Chatwoot's identifier_hash)."""
    return hmac.new(secret.encode(), visitor.encode(), hashlib.sha256).hexdigest()


def say(ws: ClientConnection, text: str, cid: str) -> None:
    ws.send(json.dumps({"type": "message", "id": cid, "text": text}))
    assert next_of(ws, "ack")["id"] == cid


def listed(desk: ClientConnection, rid: str) -> dict[str, dict[str, Any]]:
    answer = request(desk, {"type": "conversations", "view": "all"}, rid)
    assert answer["type"] == "ok", answer
    return {c["visitor"]: c for c in answer["conversations"]}


def test_identified_visitor_is_shown_and_a_wrong_hash_is_not(daemon: Daemon) -> None:
    """identify with the right hash: the operator sees name, email and
    attributes (list, open, search); a wrong hash: an error, nothing shown."""
    ann, ann_id = chat(daemon)
    mallory, mallory_id = chat(daemon)
    assert ann_id and mallory_id and ann_id != mallory_id
    ann.send(json.dumps({"type": "identify", "name": "Ann Lee", "email": "ann@example.com",
                         "attributes": {"plan": "pro", "seats": 3},
                         "hash": signed(ann_id)}))
    assert next_of(ann, "ok")["request"] == "identify"
    say(ann, "my invoice is wrong", "c-1")
    # Mallory signs with a guessed secret, then replays Ann's hash.
    for guess in (signed(mallory_id, "guessed-secret-guessed"), signed(ann_id)):
        mallory.send(json.dumps({"type": "identify", "name": "Ann Lee", "hash": guess}))
        refused = next_of(mallory, "error")
        assert refused["request"] == "identify" and "hash" in refused["error"]
    say(mallory, "hello", "c-1")
    with operator(daemon) as desk:
        shown = listed(desk, "list")
        assert (shown[ann_id]["name"], shown[ann_id]["email"]) == ("Ann Lee",
                                                                   "ann@example.com")
        assert shown[ann_id]["identified"] == "identify"
        assert (shown[mallory_id]["name"], shown[mallory_id]["email"]) == (None, None)
        opened = request(desk, {"type": "open", "conversation": shown[ann_id]["id"]}, "open")
        assert opened["profile"] == {"name": "Ann Lee", "email": "ann@example.com",
                                     "attributes": {"plan": "pro", "seats": "3"},
                                     "source": "identify"}
        found = request(desk, {"type": "conversations", "search": "ann lee"}, "search")
        assert [c["visitor"] for c in found["conversations"]] == [ann_id]
    ann.close()
    mallory.close()


def test_jwt_claims_are_shown(daemon: Daemon) -> None:
    """On an identity = jwt route the token's name, email and attributes
    claim are what the operator sees; an identify cannot rename it."""
    token = jwt.encode({"sub": "customer-7", "exp": time.time() + 60, "name": "Bo Chen",
                        "email": "bo@example.com", "account": {"tier": "gold"}},
                       JWT_SECRET, "HS256")
    ws = connect(f"{daemon.url}/app?access_token={token}",
                 subprotocols=[CHAT])  # type: ignore[list-item]
    ws.send(json.dumps({"type": "hello"}))
    assert next_of(ws, "welcome")["visitor"] == "customer-7"
    say(ws, "where is my order?", "c-1")
    with operator(daemon) as desk:
        bo = listed(desk, "list")["customer-7"]
        assert (bo["name"], bo["email"], bo["identified"]) == ("Bo Chen", "bo@example.com",
                                                              "jwt")
        opened = request(desk, {"type": "open", "conversation": bo["id"]}, "open")
        assert opened["profile"]["attributes"] == {"tier": "gold"}
    # identify needs the secret, which this route has none of.
    ws.send(json.dumps({"type": "identify", "name": "Mallory", "hash": "0" * 64}))
    assert next_of(ws, "error")["error"] == \
        "identify needs identity_hash_secret_file on this route"
    ws.close()


def test_profile_text_reaches_the_terminal_console_escaped(daemon: Daemon,
                                                            tmp_path: Path) -> None:
    """Control sequences, bidi overrides and HTML a visitor put in its
    profile are shown as escapes by wsdaemon-operator, never interpreted."""
    ws, visitor = chat(daemon)
    ws.send(json.dumps({"type": "identify", "name": "Eve \u202e Doe",
                        "attributes": {"note": HOSTILE}, "hash": signed(visitor)}))
    next_of(ws, "ok")
    say(ws, "hi", "c-1")
    token_file = tmp_path / "alice.token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    with operator(daemon) as desk:
        conversation = listed(desk, "list")[visitor]["id"]
    done = subprocess.run(
        [sys.executable, "-m", "wsdaemon.support.terminal",
         f"{daemon.url}/operator", "--token-file", str(token_file)],
        input=f"list\nopen #{conversation[:8]}\n", capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Eve \\u202e Doe" in out
    assert "visitor: Eve \\u202e Doe, proven by identify (HMAC)" in out
    assert "note: \\x1b]0;pwned\\x07\\x1b[2J<script>alert(1)</script>\\u202eevil" in out
    assert "\x1b" not in out and "\u202e" not in out and "\x07" not in out
    ws.close()


def test_missing_secret_file_is_a_config_error(tmp_path: Path) -> None:
    """A route naming a secret file that is not there: the daemon does not
    start, and says which file, section and key."""
    config = tmp_path / "wsdaemon.ini"
    config.write_text(CONFIG.split("[route:/app]")[0], encoding="utf-8")
    result = run_cli("--config", str(config), "--check-config")
    assert result.returncode != 0
    said = result.stdout + result.stderr
    assert "identity_hash_secret_file" in said and "visitor-ids.secret" in said
    assert "route:/support" in said
