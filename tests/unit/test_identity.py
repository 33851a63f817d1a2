"""
Identity: ids the daemon issues, tokens the team's backend signs, and the
config that chooses between them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from autobahn.websocket.types import ConnectionDeny
from twisted.internet.task import Clock

from wsdaemon.client_ids import public_id, public_id_of_legacy
from wsdaemon.components import operator_component
from wsdaemon.config import ConfigError, IdentityPolicy, JwtSettings, load_config
from wsdaemon.connections.identity import issue, resolve, verify
from wsdaemon.server.assembly import Assembly
from wsdaemon.server.service import Parts

SECRET = b"s" * 32


class Request:
    """What Autobahn hands onConnect, as far as identity reads it."""

    def __init__(self, params: dict[str, list[str]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.params = params or {}
        self.headers = headers or {}
        self.peer = "tcp4:127.0.0.1:5000"


def test_issued_ids_are_random_signed_and_checked() -> None:
    """An issued id carries 128 random bits and verifies; any change, another
    secret or a chosen name does not."""
    first, second = issue(SECRET), issue(SECRET)
    assert first != second and verify(SECRET, first)
    nonce, signature = first.split(".")
    assert len(nonce) == 22
    assert not verify(b"t" * 32, first)
    assert not verify(SECRET, nonce + "." + signature[:-1] + ("A" if signature[-1] != "A" else "B"))
    assert not verify(SECRET, "alice") and not verify(SECRET, "")


def test_anonymous_issues_and_recognises_but_never_accepts_a_claim() -> None:
    """A new client gets a credential in an HttpOnly cookie and is known by
    its public id; it comes back with the credential (cookie or
    ?client_token=) as the same client; a chosen id, the public id itself,
    or anything in ?client_id= gets a new client."""
    policy = IdentityPolicy(mode="anonymous", secret=SECRET)
    client_id, headers = resolve(policy, Request(), secure=True)
    cookie = headers["Set-Cookie"]
    credential = cookie.split(";")[0].removeprefix("wsdaemon_client=")
    assert verify(SECRET, credential)
    assert client_id == public_id(credential) and client_id != credential
    assert "." not in client_id and len(client_id) == 22
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" in cookie
    again, more = resolve(policy, Request(headers={"cookie": f"a=b; wsdaemon_client={credential}"}))
    assert (again, more) == (client_id, {})
    assert resolve(policy, Request(params={"client_token": [credential]})) == (client_id, {})
    for claim in ("alice", client_id, credential):
        chosen, fresh = resolve(policy, Request(params={"client_id": [claim]}))
        assert chosen not in ("alice", client_id) and "Set-Cookie" in fresh
    forged, fresh = resolve(policy, Request(headers={"cookie": f"wsdaemon_client={client_id}"}))
    assert forged != client_id and "Set-Cookie" in fresh


def test_public_ids_are_one_way_and_legacy_ids_map_to_them() -> None:
    """The public id is a fixed-size digest (no part of the credential in
    it); a store's legacy id (a credential) maps to the same public id, any
    other id to itself."""
    credential = issue(SECRET)
    nonce, signature = credential.split(".")
    shown = public_id(credential)
    assert nonce not in shown and signature not in shown and shown == public_id(credential)
    assert public_id(issue(SECRET)) != shown
    assert public_id_of_legacy(credential) == shown
    for other in ("alice", "customer-7", shown, "a" * 39):
        assert public_id_of_legacy(other) == other


def test_claimed_ids_are_matched_whole() -> None:
    """A claimed id with a trailing newline (which `$` would let through) or
    any character outside the set is no id at all."""
    policy = IdentityPolicy(mode="claimed")
    assert resolve(policy, Request(params={"client_id": ["web-test"]}))[0] == "web-test"
    for bad in ("web-test\n", "web\ntest", "a b", "x" * 65, ""):
        assert resolve(policy, Request(params={"client_id": [bad]}))[0] is None


def _token(**claims: Any) -> str:
    body = {"sub": "user-42", "exp": time.time() + 60, "aud": "shop", **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, SECRET, "HS256")


def test_jwt_subject_is_the_id_and_bad_tokens_are_refused() -> None:
    """The token's subject is the client id (?client_id= cannot change it);
    no token: 401; bad signature, expired, wrong audience, no expiry, a
    subject with control or bidi characters: 403."""
    policy = IdentityPolicy(mode="jwt", jwt=JwtSettings(key=SECRET, algorithms=("HS256",),
                                                        audience="shop"))
    good = _token()
    assert resolve(policy, Request(params={"access_token": [good],
                                           "client_id": ["someone"]}))[0] == "user-42"
    assert resolve(policy, Request(headers={"authorization": f"Bearer {good}"}))[0] == "user-42"
    with pytest.raises(ConnectionDeny) as denied:
        resolve(policy, Request())
    assert denied.value.code == 401
    forged = jwt.encode({"sub": "user-42", "exp": time.time() + 60, "aud": "shop"},
                        b"x" * 32, "HS256")
    for bad in (forged, _token(exp=time.time() - 5), _token(aud="other"), _token(exp=None),
                _token(sub="evil\u202etxt.exe"), _token(sub="a\x1b[2J"),
                jwt.encode({"sub": "u", "exp": time.time() + 60, "aud": "shop"}, None, "none")):
        with pytest.raises(ConnectionDeny) as denied:
            resolve(policy, Request(params={"access_token": [bad]}))
        assert denied.value.code == 403


CONFIG = """\
[wsdaemon]
listen = tcp:0:interface=127.0.0.1

[route:/echo]
strategy = echo
{extra}
"""


@pytest.mark.parametrize(("extra", "key", "expected"), [
    ("identity = whoever", "identity", "expected one of anonymous, jwt, claimed"),
    ("identity = jwt", "identity", "jwt needs jwt_secret_file"),
    ("identity = jwt\njwt_secret_fle = long.key", "jwt_secret_fle",
     "did you mean jwt_secret_file?"),
    ("identity = jwt\njwt_secret_file = short.key", "jwt_secret_file", "expected at least 32"),
    ("identity = jwt\njwt_secret_file = missing.key", "jwt_secret_file", "cannot read"),
    ("identity = jwt\njwt_public_key_file = short.key", "jwt_public_key_file",
     "expected a PEM public key"),
    ("identity = jwt\njwt_secret_file = long.key\njwt_algorithms = RS256", "jwt_algorithms",
     "expected some of HS256"),
])
def test_identity_config_errors(tmp_path: Path, extra: str, key: str, expected: str) -> None:
    """Each identity mistake names the file, line, section and key."""
    (tmp_path / "short.key").write_text("tooshort")
    (tmp_path / "long.key").write_text("k" * 40)
    path = tmp_path / "wsdaemon.ini"
    path.write_text(CONFIG.format(extra=extra))
    with pytest.raises(ConfigError) as error:
        load_config(path, clock=Clock())
    assert error.value.section == "route:/echo" and error.value.key == key
    assert expected in str(error.value) and str(path) in str(error.value)


def test_identity_secret_file_is_created_private_and_kept(tmp_path: Path,
                                                          monkeypatch: Any) -> None:
    """identity_secret_file is created readable by the daemon's user only (even
    with a permissive umask) and read again as it is."""
    import os

    path = tmp_path / "wsdaemon.ini"
    path.write_text(CONFIG.format(extra="identity_secret_file = state/id.key"))
    old = os.umask(0)
    try:
        first = built(path).routes[0].protocol.identity.secret
    finally:
        os.umask(old)
    key = tmp_path / "state" / "id.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert built(path).routes[0].protocol.identity.secret == first
    assert load_config(path).routes[0].protocol.identity.secret == first


def built(path: Path) -> Parts:
    return Assembly(Clock(), components=operator_component).fresh(load_config(path))


def test_reading_the_config_creates_no_secret_file(tmp_path: Path) -> None:
    """Reading (or --check-config) leaves the disk alone: building the daemon
    creates a missing identity_secret_file; a check only notes it."""
    path = tmp_path / "wsdaemon.ini"
    path.write_text(CONFIG.format(extra="identity_secret_file = state/id.key"))
    policy = load_config(path).routes[0].protocol.identity
    assert policy.secret is None and policy.secret_file == tmp_path / "state" / "id.key"
    assert not (tmp_path / "state").exists()


def test_a_short_identity_secret_file_is_a_config_error(tmp_path: Path) -> None:
    """An identity secret file too short to be one is refused at reading, naming the key."""
    (tmp_path / "id.key").write_text("short\n")
    path = tmp_path / "wsdaemon.ini"
    path.write_text(CONFIG.format(extra="identity_secret_file = id.key"))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert error.value.key == "identity_secret_file" and "at least 16" in str(error.value)



