"""
The webhook strategy on a test clock and a fake backend (a poster whose
answers the test gives): options, signatures (checked with the
standardwebhooks package), events and their order, answers, the connect
refusal, retries, timeouts, backpressure, hostile answers.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IReactorCore
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web._newclient import ResponseNeverReceived
from zope.interface import implementer

from wsdaemon.interfaces import IFlowControl
from wsdaemon.records import HandshakeAnswer, HandshakeRefused, HandshakeRequest
from wsdaemon.strategies.api import OptionError
from wsdaemon.strategies.webhook.answer import AnswerError, parse_answer
from wsdaemon.strategies.webhook.client import AnswerTooBig, Reply
from wsdaemon.strategies.webhook.options import WebhookSettings, check_options
from wsdaemon.strategies.webhook.strategy import READ_ALLOWANCE, WebhookStrategy
from wsdaemon.testing import RecordingSession

OLD = "whsec_" + base64.b64encode(b"o" * 24).decode()
NEW = "whsec_" + base64.b64encode(b"n" * 24).decode()


@implementer(IFlowControl)
class FlowSession(RecordingSession):
    """A recording session that also records hold_reading."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.held: list[bool] = []

    def register_producer(self, producer: Any) -> None:  # pragma: no cover - unused
        pass

    def hold_reading(self, held: bool) -> None:
        self.held.append(held)


class Backend:
    """A poster: each request waits for the test to answer it."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes, Deferred[Reply]]] = []
        self.cancelled = 0

    def __call__(self, url: str, headers: Any, body: bytes) -> Deferred[Reply]:
        def cancel(_: object) -> None:
            self.cancelled += 1

        d: Deferred[Reply] = Deferred(cancel)
        self.requests.append((url, dict(headers), body, d))
        return d

    def event(self, index: int = -1) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.requests[index][2])
        return document

    def answer(self, index: int = -1, status: int = 200, content_type: str = "text/plain",
               body: bytes | str = b"") -> None:
        data = body.encode() if isinstance(body, str) else body
        self.requests[index][3].callback(Reply(status, content_type, data))

    def answer_json(self, document: object, index: int = -1) -> None:
        self.answer(index, 200, "application/json", json.dumps(document))

    def refuse(self, index: int = -1) -> None:
        self.requests[index][3].errback(Failure(ConnectionRefusedError()))


def settings(**changes: Any) -> WebhookSettings:
    values: dict[str, Any] = {
        "urls": (("connect", "http://b/c"), ("message", "http://b/m"),
                 ("disconnect", "http://b/d")),
        "secrets": (base64.b64decode(OLD[6:]), base64.b64decode(NEW[6:])),
        "pass_headers": ("x-trace",), "timeout": 5.0, "retries": 2, "retry_backoff": 0.5,
        "max_queue": 4}
    values.update(changes)
    return WebhookSettings(**values)


def request(session_id: str = "s1") -> HandshakeRequest:
    return HandshakeRequest(
        session_id=session_id, path="/hook", query="room=7",
        headers={"x-trace": "abc", "cookie": "secret=1", "user-agent": "t"},
        subprotocols=(), peer="tcp4:127.0.0.1:5000", client_id="pub-1")


def opened(backend: Backend | None = None, clock: Clock | None = None,
           **changes: Any) -> tuple[WebhookStrategy, Backend, FlowSession, Clock]:
    """A strategy with one connection open (its connect answered with 204)."""
    backend = backend or Backend()
    clock = clock or Clock()
    strategy = WebhookStrategy(settings(**changes), clock, "/hook", backend)
    accepted: list[object] = []
    strategy.connecting(request()).addBoth(accepted.append)
    backend.answer(status=204)
    assert isinstance(accepted[0], HandshakeAnswer)
    session = FlowSession(session_id="s1", route="/hook", client_id="pub-1")
    strategy.connection_opened(session)
    return strategy, backend, session, clock


# -- options -------------------------------------------------------------------

def test_options_defaults_overrides_and_secrets(tmp_path: Path) -> None:
    """url is every event's unless url_<event> says otherwise; the secret file
    holds one whsec_ key a line, comments and blank lines skipped."""
    (tmp_path / "hook.secret").write_text(f"# rotated 2026-12\n{OLD}\n\n{NEW}\n")
    checked = check_options({"url": "http://127.0.0.1:8000/ws", "secret_file": "hook.secret",
                             "url_disconnect": "https://other/bye",
                             "pass_headers": "X-Trace, user-agent"}, tmp_path)
    assert checked.url("connect") == checked.url("message") == "http://127.0.0.1:8000/ws"
    assert checked.url("disconnect") == "https://other/bye"
    assert checked.secrets == (b"o" * 24, b"n" * 24)
    assert checked.pass_headers == ("x-trace", "user-agent")
    assert (checked.timeout, checked.retries, checked.max_queue, checked.max_response,
            checked.max_state) == (10.0, 2, 32, 256 * 1024, 4096)
    assert "oooo" not in repr(checked) and "secrets" not in repr(checked)


@pytest.mark.parametrize(("options", "key"), [
    ({"secret_file": "s"}, "url"),
    ({"url": "ftp://x/", "secret_file": "s"}, "url"),
    ({"url": "http://x/", "url_message": "nope", "secret_file": "s"}, "url_message"),
    ({"url": "http://x/"}, "secret_file"),
    ({"url": "http://x/", "secret_file": "missing"}, "secret_file"),
    ({"url": "http://x/", "secret_file": "s", "timeout": "0"}, "timeout"),
    ({"url": "http://x/", "secret_file": "s", "max_queue": "0"}, "max_queue"),
    ({"url": "http://x/", "secret_file": "s", "pass_headers": "upgrade"}, "pass_headers"),
    ({"url": "http://x/", "secret_file": "s", "nope": "1"}, "nope"),
    ({"url": "https://x/", "secret_file": "s", "ca_file": "missing.pem"}, "ca_file"),
    ({"url": "https://x/", "secret_file": "s", "ca_file": "s"}, "ca_file"),
    ({"url": "https://x/", "secret_file": "s", "max_requests": "0"}, "max_requests"),
    ({"url": "http://a b/", "secret_file": "s"}, "url"),
])
def test_wrong_options_name_the_key(tmp_path: Path, options: dict[str, str], key: str) -> None:
    """Each wrong option is an OptionError naming it."""
    (tmp_path / "s").write_text(OLD + "\n")
    with pytest.raises(OptionError) as error:
        check_options(options, tmp_path)
    assert error.value.key == key


def test_a_bad_secret_line_is_named_without_its_text(tmp_path: Path) -> None:
    """A malformed secret is reported by line number; the text is never shown."""
    (tmp_path / "s").write_text(f"{OLD}\nwhsec_short-and-secret\n")
    with pytest.raises(OptionError) as error:
        check_options({"url": "http://x/", "secret_file": "s"}, tmp_path)
    assert error.value.line == 2
    assert "short-and-secret" not in str(error.value)


# -- events and signatures -----------------------------------------------------

def test_connect_event_is_signed_by_every_secret_and_says_who() -> None:
    """The connect event: route, session, client id, query, only the allowed
    headers; both secrets' signatures verify (rotation)."""
    backend, clock = Backend(), Clock()
    clock.advance(time.time())
    strategy = WebhookStrategy(settings(), clock, "/hook", backend)
    strategy.connecting(request())
    url, headers, body, _ = backend.requests[0]
    assert url == "http://b/c"
    for secret in (OLD, NEW):
        event = Webhook(secret).verify(body, headers)
        assert event["type"] == "connect"
    assert headers["webhook-id"] == event["id"]
    assert (event["route"], event["session_id"], event["client_id"], event["query"]) == (
        "/hook", "s1", "pub-1", "room=7")
    assert event["headers"] == {"x-trace": "abc"}
    assert event["state"] is None


def test_messages_go_one_at_a_time_in_order_and_answers_come_back() -> None:
    """The second message waits for the first's answer; a text body is one
    text message back, an empty one nothing, JSON several; binary is base64."""
    strategy, backend, session, _ = opened()
    assert strategy.message_received(session, "one") is None
    strategy.message_received(session, b"\x00\xff")
    assert len(backend.requests) == 2  # connect, "one"
    assert backend.event()["message"] == "one" and backend.event()["binary"] is False
    backend.answer(body="first")
    assert backend.event()["message"] == "AP8=" and backend.event()["binary"] is True
    assert backend.event()["seq"] == 3
    backend.answer_json({"messages": [{"text": "a"}, {"binary_b64": "AQI="}]})
    strategy.message_received(session, "three")
    backend.answer(body="")
    assert session.sent == ["first", "a", b"\x01\x02"]
    assert session.closed is None


def test_state_is_echoed_and_close_applied() -> None:
    """The state of an answer comes back with the next events; a close in an
    answer closes the client with its code and reason."""
    strategy, backend, session, _ = opened()
    strategy.message_received(session, "hi")
    backend.answer_json({"state": {"n": 1}})
    strategy.message_received(session, "again")
    assert backend.event()["state"] == {"n": 1}
    backend.answer_json({"messages": [{"text": "bye"}], "close": {"code": 4001,
                                                                  "reason": "done"}})
    assert session.sent == ["bye"] and session.closed == (4001, "done")


def test_disconnect_follows_the_last_messages() -> None:
    """The disconnect event is sent after the messages before it, with the
    close code; then the connection is forgotten."""
    strategy, backend, session, _ = opened()
    strategy.message_received(session, "last")
    strategy.connection_closed(session, 1000, "bye")
    assert backend.event()["type"] == "message"
    backend.answer(body="too late")
    assert backend.event()["type"] == "disconnect"
    assert (backend.event()["code"], backend.event()["reason"]) == (1000, "bye")
    assert backend.requests[-1][0] == "http://b/d"
    backend.answer(status=204)
    assert strategy._links == {}


def test_connect_answer_messages_and_state() -> None:
    """What the connect answer holds is sent once the connection is open;
    its state comes with the first message."""
    backend = Backend()
    strategy = WebhookStrategy(settings(), Clock(), "/hook", backend)
    strategy.connecting(request())
    backend.answer_json({"messages": [{"text": "welcome"}], "state": "s"})
    session = FlowSession(session_id="s1")
    strategy.connection_opened(session)
    strategy.message_received(session, "x")
    assert session.sent == ["welcome"] and backend.event()["state"] == "s"


# -- the connect refusal -------------------------------------------------------

@pytest.mark.parametrize("status", [401, 403, 429, 503])
def test_a_backend_status_refuses_the_handshake(status: int) -> None:
    """The connect answer's 4xx/5xx status is the client's."""
    backend = Backend()
    strategy = WebhookStrategy(settings(), Clock(), "/hook", backend)
    outcome: list[Any] = []
    strategy.connecting(request()).addBoth(outcome.append)
    backend.answer(status=status)
    assert isinstance(outcome[0], Failure) and outcome[0].check(HandshakeRefused)
    assert outcome[0].value.status == status
    assert strategy._links == {}


def test_connect_retries_only_what_never_reached_the_backend() -> None:
    """Refused connections are tried again after 0.5 s and 1 s (backoff), then
    the client gets 503."""
    backend, clock = Backend(), Clock()
    strategy = WebhookStrategy(settings(), clock, "/hook", backend)
    outcome: list[Any] = []
    strategy.connecting(request()).addBoth(outcome.append)
    backend.refuse()
    clock.advance(0.49)
    assert len(backend.requests) == 1
    clock.advance(0.01)
    backend.refuse()
    clock.advance(1.0)
    ids = {headers["webhook-id"] for _, headers, _, _ in backend.requests}
    assert len(backend.requests) == 3 and len(ids) == 1
    backend.refuse()
    assert outcome[0].value.status == 503
    assert strategy.hook_stats.errors["unreachable"] == 1
    assert not clock.getDelayedCalls()


def test_a_cancelled_handshake_cancels_the_request() -> None:
    """The client leaving during connect cancels the request and its timer."""
    backend, clock = Backend(), Clock()
    strategy = WebhookStrategy(settings(), clock, "/hook", backend)
    d = strategy.connecting(request())
    d.addErrback(lambda f: None)
    d.cancel()
    assert backend.cancelled == 1 and not clock.getDelayedCalls()


# -- failures while open -------------------------------------------------------

def test_a_slow_backend_times_out_with_1013_and_no_retry() -> None:
    """No answer within timeout: the request is cancelled, the client closed
    with 1013, and the request is not sent again (it may have arrived)."""
    strategy, backend, session, clock = opened()
    strategy.message_received(session, "hello")
    strategy.message_received(session, "queued")
    clock.advance(5.0)
    assert backend.cancelled == 1
    assert session.closed == (1013, "try again later")
    assert strategy.hook_stats.errors["timeout"] == 1
    strategy.connection_closed(session, 1013, "try again later")
    assert [backend.event(i)["type"] for i in range(len(backend.requests))] == [
        "connect", "message", "disconnect"]


def test_a_request_that_reached_the_backend_is_not_sent_again() -> None:
    """A connection lost after the request went: 1011, one attempt only."""
    strategy, backend, session, clock = opened()
    strategy.message_received(session, "hello")
    backend.requests[-1][3].errback(Failure(ResponseNeverReceived([])))
    clock.advance(10)
    assert len(backend.requests) == 2
    assert session.closed == (1011, "backend error")


def test_messages_are_retried_while_the_backend_refuses_connections() -> None:
    """A message whose connection is refused goes again, and its answer still
    arrives in order."""
    strategy, backend, session, clock = opened()
    strategy.message_received(session, "hello")
    backend.refuse()
    clock.advance(0.5)
    backend.answer(body="hi")
    assert session.sent == ["hi"] and session.closed is None


@pytest.mark.parametrize(("status", "code"), [(503, 1013), (502, 1013), (500, 1011),
                                              (404, 1011)])
def test_a_backend_error_status_closes_the_client(status: int, code: int) -> None:
    """502/503/504 mean try again later (1013); other errors 1011."""
    strategy, backend, session, _ = opened()
    strategy.message_received(session, "hello")
    backend.answer(status=status)
    assert session.closed is not None and session.closed[0] == code


@pytest.mark.parametrize(("content_type", "body"), [
    ("application/json", "{not json"),
    ("application/json", '{"messages": "x"}'),
    ("application/json", '{"close": {"code": 1005}}'),
    ("application/json", '{"other": 1}'),
    ("application/octet-stream", "x"),
])
def test_an_answer_not_understood_closes_with_1011(content_type: str, body: str) -> None:
    """Invalid JSON, a schema mistake or another type: 1011 and a log line."""
    strategy, backend, session, _ = opened()
    strategy.message_received(session, "hello")
    backend.answer(content_type=content_type, body=body)
    assert session.closed == (1011, "backend error")
    assert strategy.hook_stats.errors["invalid"] == 1


def test_a_huge_answer_closes_with_1011() -> None:
    """An answer over max_response (the poster stops reading): 1011."""
    strategy, backend, session, _ = opened()
    strategy.message_received(session, "hello")
    backend.requests[-1][3].errback(Failure(AnswerTooBig(10)))
    assert session.closed == (1011, "backend error")
    assert strategy.hook_stats.errors["too_big"] == 1


def test_state_is_bounded() -> None:
    """A state over max_state is a mistake of the backend's."""
    with pytest.raises(AnswerError):
        parse_answer(200, "application/json", json.dumps({"state": "x" * 100}).encode(), 50)
    assert parse_answer(200, "application/json", b'{"state": "x"}', 50).state == '"x"'
    assert parse_answer(204, "", b"ignored", 50).messages == ()


# -- backpressure --------------------------------------------------------------

def test_the_client_stops_being_read_at_max_queue_and_resumes_at_half() -> None:
    """max_queue messages waiting: reading stops; once half have gone it
    resumes; over max_queue and READ_ALLOWANCE (already read) closes with
    1013."""
    strategy, backend, session, _ = opened()
    for i in range(5):  # one in flight, four waiting
        strategy.message_received(session, str(i))
    assert session.held == [True]
    backend.answer()
    assert session.held == [True]
    backend.answer()  # two left waiting: half of max_queue
    assert session.held == [True, False]
    for i in range(2 + READ_ALLOWANCE):  # already read when reading stopped again
        strategy.message_received(session, f"more {i}")
    assert session.held == [True, False, True]
    assert session.closed is None
    strategy.message_received(session, "one too many")
    assert session.closed == (1013, "try again later")
    assert strategy.hook_stats.errors["queue"] == 1


def test_without_a_handshake_the_client_is_closed() -> None:
    """A session opened without the connect event (no link) is closed."""
    strategy = WebhookStrategy(settings(), Clock(), "/hook", Backend())
    session = RecordingSession()
    strategy.connection_opened(session)
    assert session.closed == (1011, "no backend")


def test_the_connect_answer_may_name_the_client() -> None:
    """client_id in the connect answer is the client's id from then on; in
    any other answer, or with control characters, it is a mistake."""
    backend = Backend()
    strategy = WebhookStrategy(settings(), Clock(), "/hook", backend)
    outcome: list[Any] = []
    strategy.connecting(request()).addBoth(outcome.append)
    backend.answer_json({"client_id": "alice"})
    assert outcome[0] == HandshakeAnswer(client_id="alice")
    session = FlowSession(session_id="s1", client_id="alice")
    strategy.connection_opened(session)
    strategy.message_received(session, "hi")
    assert backend.event()["client_id"] == "alice"
    backend.answer_json({"client_id": "mallory"})
    assert session.closed == (1011, "backend error")
    for bad in ("", "a\x1bb", "x" * 129, 7):
        with pytest.raises(AnswerError):
            parse_answer(200, "application/json", json.dumps({"client_id": bad}).encode(), 10,
                         connect=True)


def test_latency_and_in_flight_are_counted_for_metrics() -> None:
    """Each event's time, retries included, lands in the histogram; in_flight
    counts events under way."""
    strategy, backend, session, clock = opened()
    stats = strategy.hook_stats
    strategy.message_received(session, "hello")
    assert stats.in_flight == 1
    backend.refuse()
    clock.advance(0.5)
    clock.advance(0.3)
    backend.answer(body="hi")
    assert stats.in_flight == 0 and stats.latency_count == 2  # connect, hello
    assert stats.latency_sum == pytest.approx(0.8)
    cumulative = dict(stats.cumulative())
    assert cumulative["0.5"] == 1 and cumulative["1.0"] == 2 and cumulative["+Inf"] == 2


def test_credentials_never_reach_the_backend() -> None:
    """client_token and access_token are left out of the query, the daemon's
    cookie out of a passed Cookie header."""
    backend = Backend()
    strategy = WebhookStrategy(settings(pass_headers=("cookie",)), Clock(), "/hook", backend)
    strategy.connecting(HandshakeRequest(
        session_id="s1", path="/hook", query="room=7&client_token=SECRET&access_token=JWT&x=",
        headers={"cookie": "theme=dark; wsdaemon_client=SECRET; lang=fr"}, subprotocols=(),
        peer="tcp4:127.0.0.1:5000"))
    event = backend.event()
    assert event["query"] == "room=7&x="
    assert event["headers"] == {"cookie": "theme=dark; lang=fr"}
    assert "SECRET" not in backend.requests[0][2].decode() and "JWT" not in event["query"]


@implementer(IReactorCore)
class StoppingClock(Clock):
    """A clock with the reactor's shutdown triggers."""

    def __init__(self) -> None:
        super().__init__()
        self.triggers: dict[int, Any] = {}

    def addSystemEventTrigger(self, phase: str, event: str, call: Any) -> int:  # noqa: N802
        assert (phase, event) == ("before", "shutdown")
        handle = len(self.triggers) + 1
        self.triggers[handle] = call
        return handle

    def removeSystemEventTrigger(self, handle: int) -> None:  # noqa: N802
        del self.triggers[handle]


def test_the_daemons_stop_waits_for_the_last_disconnect_events() -> None:
    """While connections are known, the stop waits for their disconnect
    events (the daemon closes them), then goes on; the trigger is removed
    once none is left."""
    clock = StoppingClock()
    strategy, backend, session, _ = opened(clock=clock)
    strategy.connection_closed(session, 1000, "")
    backend.answer(status=204)
    assert clock.triggers == {}  # nobody left: nothing to wait for
    strategy, backend, session, _ = opened(clock=clock)
    [handle] = clock.triggers
    waiting = clock.triggers.pop(handle)()  # the reactor fires it, once
    assert isinstance(waiting, Deferred) and not waiting.called
    strategy.connection_closed(session, 1001, "going away")
    backend.answer(status=204)
    assert waiting.called and not clock.getDelayedCalls()


def test_the_daemons_stop_waits_three_seconds_at_most() -> None:
    """A backend that does not answer holds the stop 3 s, logged."""
    clock = StoppingClock()
    strategy, backend, session, _ = opened(clock=clock)
    waiting = next(iter(clock.triggers.values()))()
    strategy.connection_closed(session, 1001, "going away")
    clock.advance(2.9)
    assert not waiting.called
    clock.advance(0.1)
    assert waiting.called


@pytest.mark.parametrize(("failure", "status"), [
    (AnswerTooBig(10), 502), (ResponseNeverReceived([]), 502)])
def test_a_connect_answer_cut_off_refuses_with_502(failure: Exception, status: int) -> None:
    """At connect, an answer too big or a connection lost after the request
    went is the backend's error: 502 (503 is for down or slow)."""
    backend = Backend()
    strategy = WebhookStrategy(settings(), Clock(), "/hook", backend)
    outcome: list[Any] = []
    strategy.connecting(request()).addBoth(outcome.append)
    backend.requests[-1][3].errback(Failure(failure))
    assert outcome[0].value.status == status


def test_the_route_has_at_most_max_requests_in_flight() -> None:
    """With max_requests = 2, three connections' handshakes make two
    requests; the third is made once one is answered, in order; a handshake
    given up while waiting is never sent; the timeout counts from when a
    request is made, not from when it began to wait."""
    backend, clock = Backend(), Clock()
    strategy = WebhookStrategy(settings(max_requests=2), clock, "/hook", backend)
    outcomes: dict[str, list[object]] = {}
    waiting = []
    for name in ("s1", "s2", "s3", "s4"):
        outcomes[name] = []
        d = strategy.connecting(request(name))
        d.addBoth(outcomes[name].append)
        waiting.append(d)
    assert [backend.event(i)["session_id"] for i in range(len(backend.requests))] == [
        "s1", "s2"]
    waiting[3].cancel()  # s4 gives up while waiting: nothing is sent for it
    clock.advance(4.0)
    backend.answer(0, status=204)
    assert [backend.event(i)["session_id"] for i in range(len(backend.requests))] == [
        "s1", "s2", "s3"]
    clock.advance(4.0)  # s2's request times out (5 s); s3's has 1 s to go
    assert isinstance(outcomes["s1"][0], HandshakeAnswer)
    assert outcomes["s2"] and not isinstance(outcomes["s2"][0], HandshakeAnswer)
    assert outcomes["s3"] == []
    backend.answer(2, status=204)
    assert isinstance(outcomes["s3"][0], HandshakeAnswer)
    assert len(backend.requests) == 3
