"""
Who the visitor is, on a conversation route in memory (the real route
protocol, L{StrategyHarness}, the driver, a memory store): the route's
options (the secret file, the attributes claim), C{identify} kept only with
the HMAC of the visitor's id (wrong or missing hash refused, nothing kept,
logged once per connection), a token's claims at connect (and a token's
fields standing against identify), a profile given before the first message
stored with it, and C{welcome} naming the visitor's id.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import jwt
import pytest
from twisted.logger import LogEvent, globalLogPublisher

from tests.unit.test_support_visitor import BoundFactory, Support, cid, frames, send
from wsdaemon.config import IdentityPolicy, JwtSettings
from wsdaemon.conversations import (
    ConversationSettings,
    Identify,
    Profile,
    ProfileSource,
    Resolve,
    Status,
)
from wsdaemon.records import HandshakeRequest
from wsdaemon.strategies.api import OptionError
from wsdaemon.support.profiles import (
    MAX_IDENTIFIES,
    MIN_SECRET_CHARS,
    NO_SECRET,
    identifier_hash,
    verified,
)
from wsdaemon.support.visitor import ConversationStrategy
from wsdaemon.support.visitor_protocol import SUBPROTOCOL
from wsdaemon.testing import HarnessClient, RecordingSession, StrategyHarness

ROUTE = "/support"
SECRET = "s3cret-for-visitor-ids"
JWT_KEY = b"k" * 32


class Route:
    """A conversation route with identity options, and its driver's store."""

    def __init__(self, tmp_path: Path, options: dict[str, str] | None = None,
                 identity: IdentityPolicy | None = None) -> None:
        self.support = Support(ConversationSettings(fallback_after=0, ack_message="",
                                                    offline_message=""))
        self.harness = StrategyHarness(BoundFactory(self.support), options=options,
                                       config_dir=tmp_path, route=ROUTE,
                                       identity=identity or IdentityPolicy(mode="claimed"))
        self.store = self.support.store

    def chat(self, query: str = "client_id=v1") -> HarnessClient:
        client = self.harness.connect(query=query, subprotocols=[SUBPROTOCOL])
        assert client.status == 101
        send(client, {"type": "hello"})
        return client

    def stored(self, visitor: str = "v1") -> Any:
        return self.store.inner.conversations.get(cid(visitor))


def secret_route(tmp_path: Path, **more: str) -> Route:
    (tmp_path / "visitor-ids.secret").write_text(f"# signs visitor ids\n{SECRET}\n")
    return Route(tmp_path, {"identity_hash_secret_file": "visitor-ids.secret", **more})


def identify(client: HarnessClient, visitor: str = "v1", secret: str = SECRET,
             **fields: Any) -> dict[str, Any]:
    send(client, {"type": "identify", "hash": identifier_hash(secret.encode(), visitor),
                  **fields})
    return frames(client)[-1]


def test_welcome_names_the_visitor(tmp_path: Path) -> None:
    """The welcome carries the visitor's public id: what the backend signs."""
    client = Route(tmp_path).chat("client_id=ann-7")
    assert frames(client)[0]["visitor"] == "ann-7"


def test_the_hash_is_chatwoots_identifier_hash() -> None:
    """HMAC-SHA256 of the visitor id with the secret, hex; checked either case."""
    import hashlib
    import hmac

    expected = hmac.new(SECRET.encode(), b"v1", hashlib.sha256).hexdigest()
    assert identifier_hash(SECRET.encode(), "v1") == expected
    assert verified(SECRET.encode(), "v1", expected.upper())
    assert not verified(SECRET.encode(), "v2", expected)
    assert not verified(SECRET.encode(), "v1", "\u00e9" * 64)


def test_identify_with_the_right_hash_is_kept(tmp_path: Path) -> None:
    """A proven identify is answered ok and stored with the conversation;
    given before the first message, that message brings it."""
    route = secret_route(tmp_path)
    client = route.chat()
    frames(client)
    assert identify(client, name="Ann", email="ann@example.com",
                    attributes={"plan": "pro", "seats": 3}) == {"type": "ok",
                                                                "request": "identify"}
    assert route.stored() is None
    send(client, {"type": "message", "id": "c-1", "text": "hello"})
    assert route.stored().profile == Profile("Ann", "ann@example.com",
                                             (("plan", "pro"), ("seats", "3")))
    assert identify(client, email="ann@work.example")["type"] == "ok"
    assert route.stored().profile.email == "ann@work.example"
    assert route.stored().profile.name == "Ann"


@pytest.mark.parametrize("how", ["wrong", "other visitor", "missing"])
def test_identify_without_proof_is_refused(tmp_path: Path, how: str) -> None:
    """A wrong hash, another visitor's, or none: an error, nothing kept, logged
    once per connection."""
    route = secret_route(tmp_path)
    client = route.chat()
    send(client, {"type": "message", "id": "c-1", "text": "hello"})
    frames(client)
    logged: list[LogEvent] = []
    globalLogPublisher.addObserver(logged.append)
    try:
        for _ in range(3):
            if how == "missing":
                send(client, {"type": "identify", "name": "Mallory"})
                answer = frames(client)[-1]
            else:
                answer = identify(client, visitor="v2" if how == "other visitor" else "v1",
                                  secret=SECRET if how == "other visitor" else "guess" * 4,
                                  name="Mallory")
            assert answer["type"] == "error" and answer["request"] == "identify"
            assert "hash" in answer["error"]
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert route.stored().profile is None
    refusals = [e for e in logged if "identify from" in e.get("log_format", "")]
    assert len(refusals) == 1


def test_identify_needs_the_secret_on_the_route(tmp_path: Path) -> None:
    """On a route without identity_hash_secret_file, identify is refused."""
    route = Route(tmp_path)
    client = route.chat()
    frames(client)
    assert identify(client, name="Ann") == {"type": "error", "error": NO_SECRET,
                                            "request": "identify"}


def test_bad_identify_fields_are_bad_requests(tmp_path: Path) -> None:
    """Fields past their bounds are refused by the parser, naming the field."""
    client = secret_route(tmp_path).chat()
    frames(client)
    answer = identify(client, name="x" * 129)
    assert answer["type"] == "error" and answer["error"].startswith("name:")
    send(client, {"type": "identify", "name": "Ann", "hash": "zz"})
    assert "hash: expected" in frames(client)[-1]["error"]
    assert identify(client)["error"] == "expected at least one of name, email or attributes"


@pytest.mark.parametrize(("content", "expected"), [
    (None, "cannot read"),
    ("", "holds no secret"),
    ("# only a comment\n\n", "holds no secret"),
    ("short\n", f"at least {MIN_SECRET_CHARS} characters"),
    (f"{SECRET}\n{SECRET}2\n", "one secret, on one line"),
])
def test_secret_file_errors(tmp_path: Path, content: str | None, expected: str) -> None:
    """A missing, unreadable, empty or wrong secret file is a config error
    naming the option, the file (and the line), never the secret."""
    if content is not None:
        (tmp_path / "ids.secret").write_text(content)
    with pytest.raises(OptionError) as raised:
        Route(tmp_path, {"identity_hash_secret_file": "ids.secret"})
    error = raised.value
    assert error.key == "identity_hash_secret_file"
    assert expected in error.expected
    assert error.path == tmp_path / "ids.secret"
    assert SECRET not in str(error)
    if content and content.count("\n") == 2 and SECRET in content:
        assert error.line == 2


def test_unknown_route_option_is_refused(tmp_path: Path) -> None:
    """Options other than the identity ones are still refused."""
    with pytest.raises(OptionError) as raised:
        Route(tmp_path, {"identity_hash_secret": "x"})
    assert raised.value.known is not None
    assert "identity_hash_secret_file" in raised.value.known


def token(**claims: Any) -> str:
    return jwt.encode({"sub": "u-42", "exp": int(time.time()) + 600, **claims}, JWT_KEY,
                      algorithm="HS256")


def jwt_route(tmp_path: Path) -> Route:
    (tmp_path / "visitor-ids.secret").write_text(SECRET)
    return Route(tmp_path, {"identity_hash_secret_file": "visitor-ids.secret",
                            "profile_attributes_claim": "ctx"},
                 IdentityPolicy(mode="jwt", jwt=JwtSettings(JWT_KEY, ("HS256",))))


def test_token_claims_become_the_profile(tmp_path: Path) -> None:
    """On a jwt route the token's name, email and attributes claim are the
    profile, stored with the first message, and updated at the next connect;
    identify cannot change what the token gave, only fill what it left."""
    route = jwt_route(tmp_path)
    client = route.chat(f"access_token={token(name='Ann', ctx={'plan': 'pro'})}")
    assert frames(client)[0]["visitor"] == "u-42"
    send(client, {"type": "message", "id": "c-1", "text": "hi"})
    assert route.stored("u-42").profile == Profile("Ann", None, (("plan", "pro"),),
                                                   ProfileSource.JWT)
    assert identify(client, visitor="u-42", name="Mallory", email="ann@example.com",
                    attributes={"plan": "free"})["type"] == "ok"
    assert route.stored("u-42").profile == Profile("Ann", "ann@example.com",
                                                   (("plan", "pro"),), ProfileSource.JWT)
    client.close()
    route.chat(f"access_token={token(name='Ann Lee', email='lee@example.com')}")
    assert route.stored("u-42").profile == Profile("Ann Lee", "lee@example.com",
                                                   (("plan", "pro"),), ProfileSource.JWT)


def test_plain_client_on_a_jwt_route(tmp_path: Path) -> None:
    """A plain-text client's token profile goes with its messages too; bad
    claims are left out and logged."""
    route = jwt_route(tmp_path)
    logged: list[LogEvent] = []
    globalLogPublisher.addObserver(logged.append)
    try:
        client = route.harness.connect(query=f"access_token={token(name='Bo', email=7)}")
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert client.status == 101
    client.send("hello")
    assert route.stored("u-42").profile == Profile("Bo", source=ProfileSource.JWT)
    assert any("claims left out" in e.get("log_format", "") for e in logged)


def test_identify_after_resolve_is_kept(tmp_path: Path) -> None:
    """A resolved conversation (out of memory, in the store) learns the
    profile too: the driver reads it back for the identify."""
    route = secret_route(tmp_path)
    client = route.chat()
    send(client, {"type": "message", "id": "c-1", "text": "thanks, bye"})
    outcome: list[Any] = []
    route.support.driver.submit(Resolve(cid("v1"), "alice")).addBoth(outcome.append)
    assert route.stored().status is Status.RESOLVED
    assert route.support.driver.inbox.conversation(cid("v1")) is None
    frames(client)
    assert identify(client, name="Ann")["type"] == "ok"
    assert route.stored().profile == Profile("Ann")
    assert route.stored().status is Status.RESOLVED


def test_token_profile_survives_a_reload(tmp_path: Path) -> None:
    """A handshake the old strategy answered and the rebuilt one (a reload)
    opens keeps its token's profile; an abandoned one leaves nothing behind."""
    route = jwt_route(tmp_path)
    old = route.harness.strategy
    assert isinstance(old, ConversationStrategy)
    rebuilt = ConversationStrategy(old.driver, old.visitors, ROUTE, old.clock, old.identity)
    claims = {"sub": "u-9", "name": "Cy"}
    request = HandshakeRequest(session_id="s-1", path=ROUTE, query="", headers={},
                               subprotocols=(), peer="127.0.0.1:1", client_id="u-9",
                               claims=claims)
    old.connecting(request)
    session = RecordingSession("s-1", ROUTE, client_id="u-9")
    rebuilt.connection_opened(session)
    rebuilt.message_received(session, "hello")
    assert route.stored("u-9").profile == Profile("Cy", source=ProfileSource.JWT)
    old.connecting(replace(request, session_id="s-2"))
    rebuilt.abandoned("s-2")
    assert old.visitors.token_profile("s-2") is None
    rebuilt.connection_closed(session, 1000, "")
    assert old.visitors.token_profile("s-1") is None


def test_connect_submits_nothing_for_a_conversation_out_of_memory(tmp_path: Path) -> None:
    """A token's profile at connect is submitted only for a live
    conversation (no store read per connect otherwise): not for a new
    visitor, nor a resolved one, which learns it with its next message."""
    route = jwt_route(tmp_path)
    driver = route.support.driver
    submitted: list[Any] = []
    real = driver.submit

    def recorded(event: Any) -> Any:
        submitted.append(event)
        return real(event)

    driver.submit = recorded
    first = route.harness.connect(query=f"access_token={token(name='Ann')}")
    assert not any(isinstance(e, Identify) for e in submitted)
    first.send("hi")
    live = route.harness.connect(query=f"access_token={token(name='Ann B')}")
    assert [e.profile.name for e in submitted if isinstance(e, Identify)] == ["Ann B"]
    assert route.stored("u-42").profile.name == "Ann B"
    outcome: list[Any] = []
    real(Resolve(cid("u-42"), "alice")).addBoth(outcome.append)
    assert driver.inbox.conversation(cid("u-42")) is None
    first.close()
    live.close()
    submitted.clear()
    again = route.harness.connect(query=f"access_token={token(name='Ann Lee')}")
    assert not any(isinstance(e, Identify) for e in submitted)
    assert route.stored("u-42").profile.name == "Ann B"
    again.send("back again")
    assert route.stored("u-42").profile.name == "Ann Lee"


def test_identifies_per_connection_are_bounded(tmp_path: Path) -> None:
    """A connection's proven identify requests (each may be a store write)
    stop at MAX_IDENTIFIES; a new connection may identify again."""
    route = secret_route(tmp_path)
    client = route.chat()
    send(client, {"type": "message", "id": "c-1", "text": "hi"})
    frames(client)
    for n in range(MAX_IDENTIFIES):
        assert identify(client, name=f"Ann {n}")["type"] == "ok"
    refused = identify(client, name="Ann again")
    assert refused["type"] == "error" and f"at most {MAX_IDENTIFIES}" in refused["error"]
    assert route.stored().profile.name == f"Ann {MAX_IDENTIFIES - 1}"
    other = route.chat()
    frames(other)
    assert identify(other, name="Ann again")["type"] == "ok"
    assert route.stored().profile.name == "Ann again"
