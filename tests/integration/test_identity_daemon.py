"""
Identity in the real daemon: ids it issues (cookies) and tokens the team's
backend signs (JWT, HS256 and ES256), with the push API and the operators'
conversations addressing them.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.daemon import Daemon, free_port
from tests.integration.test_service_daemon import KEY, Admin
from tests.operator_client import operator_desk, request

pytestmark = pytest.mark.slow

ALICE = "alice-token-0123456789abcdef"
SECRET = "0123456789abcdef0123456789abcdef-shared"


def urllib_get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return e.code


def start(write_config: Callable[..., Path], start_daemon: Callable[..., Daemon],
          identity: str, files: dict[str, bytes] | None = None) -> tuple[Daemon, Admin]:
    admin_port = free_port()
    config = write_config(f"""
        [wsdaemon]
        listen = tcp:0:interface=127.0.0.1

        [admin]
        listen = tcp:{admin_port}:interface=127.0.0.1
        api_keys = ops:{KEY}

        [operator]
        tokens = alice:{ALICE}
        store = state/conversations.sqlite3
        ack_message = queued
        fallback_after = 0
        offline_message =

        [protocol]
        {identity}

        [route:/support]
        strategy = operator
    """.replace("\n        {identity}", "").replace("{identity}", identity))
    (config.parent / "jwt.secret").write_text(SECRET)
    for name, data in (files or {}).items():
        (config.parent / name).write_bytes(data)
    return start_daemon(config), Admin(admin_port)


def conversations(daemon: Daemon) -> list[dict[str, Any]]:
    """Every conversation an operator lists (its summaries), once one is there."""
    with operator_desk(daemon, ALICE) as desk:
        deadline = time.monotonic() + 5
        while True:
            listed = request(desk, {"type": "conversations", "view": "all"})
            assert listed["type"] == "ok", listed
            if listed["conversations"] or time.monotonic() > deadline:
                return list(listed["conversations"])
            time.sleep(0.05)


def reply(daemon: Daemon, conversation: str, text: str) -> None:
    with operator_desk(daemon, ALICE) as desk:
        answer = request(desk, {"type": "reply", "conversation": conversation, "text": text})
        assert answer["type"] == "ok", answer


def test_anonymous_ids_are_issued_and_cannot_be_claimed(
        write_config: Callable[..., Path], start_daemon: Callable[..., Daemon]) -> None:
    """A client gets an unguessable credential in a cookie and keeps its
    identity by presenting it; claiming someone else's (or any chosen) id gets
    a new client instead, and nothing kept for the other client."""
    daemon, admin = start(write_config, start_daemon,
                          "identity = anonymous\n        identity_secret_file = state/id.key")
    first = connect(f"{daemon.url}/support")
    cookie = first.response.headers["Set-Cookie"]
    credential = cookie.split(";")[0].removeprefix("wsdaemon_client=")
    assert "HttpOnly" in cookie and len(credential.split(".")[0]) == 22
    first.send("my one-time code please")
    assert first.recv(timeout=5) == "queued"
    first.close()

    [summary] = conversations(daemon)
    shown = summary["visitor"]
    assert shown != credential and credential.split(".")[0] not in shown
    reply(daemon, summary["id"], "your code is 4711")

    # Someone who saw only the nonce, or guesses, or picks a name, is not them.
    for claim in (credential.split(".")[0] + ".AAAAAAAAAAAAAAAA", "alice"):
        with connect(f"{daemon.url}/support",
                     additional_headers={"Cookie": f"wsdaemon_client={claim}"}) as impostor:
            assert impostor.response.headers["Set-Cookie"].split(";")[0] != \
                f"wsdaemon_client={credential}"
            with pytest.raises(TimeoutError):
                impostor.recv(timeout=0.5)
    with connect(f"{daemon.url}/support",
                 additional_headers={"Cookie": f"wsdaemon_client={credential}"}) as again:
        assert "Set-Cookie" not in again.response.headers
        assert again.recv(timeout=5) == "your code is 4711"
        assert admin.call("/push", {"client": shown, "text": "order shipped"})[1]["delivered"] \
            == 1
        assert again.recv(timeout=5) == "order shipped"
    # Without cookies, the credential goes in ?client_token= (never logged).
    with connect(f"{daemon.url}/support?client_token={credential}") as tokened:
        assert "Set-Cookie" not in tokened.response.headers
        assert admin.call("/push", {"client": shown, "text": "again"})[1]["delivered"] == 1
        assert tokened.recv(timeout=5) == "again"
    urllib_get(f"{daemon.http}/no-such-route?client_token={credential}")
    assert credential not in daemon.wait_for_log("no-such-route?client_token=***")


def test_no_id_an_operator_can_see_lets_anyone_read_a_client(
        write_config: Callable[..., Path], start_daemon: Callable[..., Daemon]) -> None:
    """A client writes a secret question and gets a PIN back while away. An
    operator who copies the client's id from anything it can read (the
    conversations, the thread, /clients, the journal, /metrics, the log) and
    connects with it, as ?client_id=, ?client_token= or the cookie, receives
    nothing of it; the client itself, with its cookie, does."""
    daemon, admin = start(write_config, start_daemon,
                          "identity = anonymous\n        identity_secret_file = state/id.key")
    client = connect(f"{daemon.url}/support")
    credential = client.response.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    client.send("secret question")
    assert client.recv(timeout=5) == "queued"

    with operator_desk(daemon, ALICE) as desk:
        listed = request(desk, {"type": "conversations", "view": "all"})
        [summary] = listed["conversations"]
        seen = {summary["visitor"]}
        opened = request(desk, {"type": "open", "conversation": summary["id"]})
        assert opened["type"] == "ok", opened
        _, clients = admin.call("/clients")
        seen |= {c["client_id"] for c in clients["clients"]}
        _, journal = admin.call("/journal")
        seen |= {e["client_id"] for e in journal["entries"] if e.get("client_id")}
        client.close()
        answer = request(desk, {"type": "reply", "conversation": summary["id"],
                                "text": "your PIN is 4321"})
        assert answer["type"] == "ok", answer
    everything = json.dumps([listed, opened, clients, journal, answer]) + daemon.log()
    status, metrics = admin.call("/metrics")
    everything += str(metrics)
    assert len(seen) == 1 and credential not in everything
    (shown,) = seen
    assert shown in daemon.log()

    attempts = [f"{daemon.url}/support?client_id={shown}",
                f"{daemon.url}/support?client_token={shown}"]
    for url in attempts:
        with connect(url) as thief:
            with pytest.raises(TimeoutError):
                thief.recv(timeout=0.5)
    with connect(f"{daemon.url}/support",
                 additional_headers={"Cookie": f"wsdaemon_client={shown}"}) as thief:
        with pytest.raises(TimeoutError):
            thief.recv(timeout=0.5)
    with connect(f"{daemon.url}/support",
                 additional_headers={"Cookie": f"wsdaemon_client={credential}"}) as owner:
        assert owner.recv(timeout=5) == "your PIN is 4321"


def test_jwt_identity(write_config: Callable[..., Path], start_daemon: Callable[..., Daemon],
                      tmp_path: Path) -> None:
    """With identity = jwt a missing token is refused with 401 and a forged,
    expired or wrong-audience one with 403, before the upgrade; a good one's
    subject is the client id, whatever ?client_id= says; the push API
    reaches it by that id."""
    daemon, admin = start(write_config, start_daemon,
                          "identity = jwt\n        jwt_secret_file = jwt.secret\n"
                          "        jwt_audience = shop")

    def token(key: str = SECRET, **claims: Any) -> str:
        body = {"sub": "customer-7", "exp": time.time() + 60, "aud": "shop", **claims}
        return jwt.encode(body, key, "HS256")

    url = f"{daemon.url}/support"
    for attempt, status in ((url, 401),
                            (f"{url}?access_token={token(key='x' * 40)}", 403),
                            (f"{url}?access_token={token(exp=time.time() - 10)}", 403),
                            (f"{url}?access_token={token(aud='other')}", 403)):
        with pytest.raises(InvalidStatus) as refused:
            connect(attempt)
        assert refused.value.response.status_code == status
    with connect(f"{url}?access_token={token()}&client_id=customer-8") as client:
        assert "Set-Cookie" not in client.response.headers
        assert admin.call("/push", {"client": "customer-7", "text": "hi"})[1]["delivered"] == 1
        assert client.recv(timeout=5) == "hi"
    with connect(url, additional_headers={"Authorization": f"Bearer {token()}"}) as client:
        client.send("question")
        assert client.recv(timeout=5) == "queued"
    assert [c["visitor"] for c in conversations(daemon)] == ["customer-7"]


def test_jwt_with_a_public_key(write_config: Callable[..., Path],
                               start_daemon: Callable[..., Daemon]) -> None:
    """ES256: the daemon holds only the public key; a token signed with the
    private key is accepted, one signed with another key is refused."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private, other = (ec.generate_private_key(ec.SECP256R1()) for _ in range(2))
    pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    daemon, _ = start(write_config, start_daemon,
                      "identity = jwt\n        jwt_public_key_file = jwt.pub", {"jwt.pub": pem})

    def token(key: Any) -> str:
        return jwt.encode({"sub": "ec-user", "exp": time.time() + 60}, key, "ES256")

    with pytest.raises(InvalidStatus) as refused:
        connect(f"{daemon.url}/support?access_token={token(other)}")
    assert refused.value.response.status_code == 403
    with connect(f"{daemon.url}/support?access_token={token(private)}") as client:
        client.send("hello")
        assert client.recv(timeout=5) == "queued"
    assert [c["visitor"] for c in conversations(daemon)] == ["ec-user"]
