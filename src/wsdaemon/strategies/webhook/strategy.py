"""
The webhook strategy: a connection's events POSTed to the backend, one at a
time and in order; the answers sent back to the client.

The C{connect} event is part of the handshake: the backend's 4xx or 5xx
status refuses the client with that status, no answer (backend down or
slow) with 503. Once open, each message is an event; while one is in
flight the next wait, up to C{max_queue}: then the client stops being read
(L{IFlowControl.hold_reading}) until half of them have gone. Messages
already read when reading stopped (the rest of one socket read) still join,
up to L{READ_ALLOWANCE} more; past that (a session without flow control)
the client is closed with 1013.

When the backend fails an open connection, the client is closed: 1013
("try again later") if the backend could not be reached, did not answer in
time or answered 502, 503 or 504; 1011 for any other failure (another
status, an answer too big or not understood). Each is logged with its kind.
The C{disconnect} event is sent after the client's last messages, best
effort (a daemon that is killed cannot send it).
"""

from __future__ import annotations

import base64
import json
from collections import deque
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, DeferredSemaphore, fail
from twisted.internet.interfaces import IReactorCore, IReactorTCP, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from wsdaemon.strategies import (
    HandshakeAnswer,
    HandshakeRefused,
    HandshakeRequest,
    IFlowControl,
    IHandshakeHook,
    IOptionCheck,
    IReplyStrategy,
    ISession,
    IStrategyFactory,
    OptionContext,
    StrategyContext,
    public_headers,
    public_query,
)
from wsdaemon.strategies.webhook.answer import Answer, AnswerError, parse_answer
from wsdaemon.strategies.webhook.client import Poster, Reply, TreqPoster
from wsdaemon.strategies.webhook.delivery import DeliveryError, deliver
from wsdaemon.strategies.webhook.options import WebhookSettings, check_options, trust_root
from wsdaemon.strategies.webhook.stats import HookStats

__all__ = ["WebhookStrategy", "WebhookStrategyFactory"]

_log = Logger(namespace="wsdaemon.webhook")

INTERNAL_ERROR = 1011
TRY_AGAIN_LATER = 1013
#: Seconds at most that the daemon's stop waits for disconnect events.
STOP_GRACE = 3.0
#: Messages that may still join a queue once the client stops being read:
#: those of the socket read under way (up to 64 KiB of small messages).
READ_ALLOWANCE = 1024
#: Backend statuses that mean "not now" rather than "wrong".
_BUSY_STATUSES = {502, 503, 504}


class _Link:
    """
    One connection's side of the backend: what it said at connect, its
    state, and its events waiting to be sent.
    """

    def __init__(self, request: HandshakeRequest, headers: Mapping[str, str]) -> None:
        self.request = request
        self.headers = dict(headers)
        self.query = public_query(request.query)
        self.client_id = request.client_id or request.session_id
        self.session: ISession | None = None
        #: The backend's opaque state (JSON text), sent back with each event.
        self.state: str | None = None
        self.opening: Answer | None = None
        self.queue: deque[tuple[str, dict[str, Any]]] = deque()
        self.in_flight: Deferred[Reply] | None = None
        self.seq = 0
        self.held = False
        self.failed = False


def _unreachable(url: str, headers: Mapping[str, str], body: bytes) -> Deferred[Reply]:
    return fail(DeliveryError("unreachable", "this reactor cannot make HTTP connections"))


@implementer(IReplyStrategy, IHandshakeHook)
class WebhookStrategy:
    """
    @param poster: POSTs one request (L{TreqPoster} in the daemon).
    @ivar hook_stats: what C{/metrics} shows of this route's requests.
    """

    def __init__(self, settings: WebhookSettings, clock: IReactorTime, route: str,
                 poster: Poster) -> None:
        self.settings = settings
        self.clock = clock
        self.route = route
        self.poster = poster
        #: The route's requests in flight to the backend (max_requests).
        self.slots = DeferredSemaphore(settings.max_requests)
        self.hook_stats = HookStats()
        self._links: dict[str, _Link] = {}
        #: The reactor's shutdown trigger, while connections are known.
        self._trigger: Any = None
        self._drained: Deferred[None] | None = None

    # -- the handshake ---------------------------------------------------------

    def connecting(self, request: HandshakeRequest) -> Deferred[HandshakeAnswer]:
        link = _Link(request, public_headers(self.settings.pass_headers, request.headers))
        d = self._post(link, "connect", {})
        return d.addCallbacks(self._accepted, self._refused, callbackArgs=(link,),
                              errbackArgs=(link,))

    def _accepted(self, reply: Reply, link: _Link) -> HandshakeAnswer:
        if not 200 <= reply.status < 300:
            self._failure("status", link, f"connect answered with status {reply.status}",
                          warn=reply.status >= 500)
            status = reply.status if 400 <= reply.status < 600 else 502
            raise HandshakeRefused(status, "refused by the backend")
        try:
            answer = parse_answer(reply.status, reply.content_type, reply.body,
                                  self.settings.max_state, connect=True)
        except AnswerError as e:
            self._failure("invalid", link, f"connect: {e}")
            raise HandshakeRefused(502, "backend error") from None
        link.opening = answer
        if answer.state is not None:
            link.state = answer.state
        if answer.client_id is not None:
            link.client_id = answer.client_id
        self._links[link.request.session_id] = link
        self._watch_shutdown()
        return HandshakeAnswer(client_id=answer.client_id)

    def _refused(self, failure: Failure, link: _Link) -> Failure:
        if failure.check(CancelledError):
            _log.info("webhook {route}: session {session_id}: the client went away before the "
                      "backend answered connect (or open_handshake_timeout passed)",
                      route=self.route, session_id=link.request.session_id)
            return failure
        error = failure.check(DeliveryError)
        if error is None:
            return failure  # refused above
        value: Any = failure.value
        self._failure(value.kind, link, f"connect: {value.why}")
        if value.kind in ("unreachable", "timeout"):
            raise HandshakeRefused(503, "try again later")
        raise HandshakeRefused(502, "backend error")

    def abandoned(self, session_id: str) -> None:
        self._forget(session_id)

    # -- the connection --------------------------------------------------------

    def connection_opened(self, session: ISession) -> None:
        link = self._links.get(session.session_id)
        if link is None:
            session.close(INTERNAL_ERROR, "no backend")  # opened without our handshake
            return
        link.session = session
        link.client_id = str(session.client_id)
        opening, link.opening = link.opening, None
        if opening is not None:
            self._apply(link, opening)

    def message_received(self, session: ISession, message: str | bytes) -> None:
        link = self._links.get(session.session_id)
        if link is None or link.failed:
            return None
        if isinstance(message, str):
            fields: dict[str, Any] = {"message": message, "binary": False}
        else:
            fields = {"message": base64.b64encode(message).decode("ascii"), "binary": True}
        link.queue.append(("message", fields))
        waiting = len(link.queue)
        limit = self.settings.max_queue
        if waiting >= limit and not link.held and link.in_flight is not None:
            if IFlowControl.providedBy(session):
                link.held = True
                flow: Any = session
                flow.hold_reading(True)
        if waiting > limit + READ_ALLOWANCE:
            self._fail(link, "queue", TRY_AGAIN_LATER, "try again later",
                       f"{waiting} messages wait for the backend (max_queue {limit} and "
                       f"{READ_ALLOWANCE} more)")
            return None
        self._next(link)
        return None

    def connection_closed(self, session: ISession, code: int | None, reason: str) -> None:
        link = self._links.get(session.session_id)
        if link is None:
            return
        link.session = None
        if link.failed:
            link.queue.clear()
        link.queue.append(("disconnect", {"code": code, "reason": reason}))
        self._next(link)

    # -- events ----------------------------------------------------------------

    def _next(self, link: _Link) -> None:
        if link.in_flight is not None or not link.queue:
            return
        event, fields = link.queue.popleft()
        if link.held and len(link.queue) <= self.settings.max_queue // 2:
            link.held = False
            session: Any = link.session
            if session is not None:
                session.hold_reading(False)
        d = self._post(link, event, fields)
        link.in_flight = d
        d.addCallbacks(self._answered, self._not_answered, callbackArgs=(link, event),
                       errbackArgs=(link, event))
        d.addErrback(self._bug, link)

    def _post(self, link: _Link, event: str, fields: dict[str, Any]) -> Deferred[Reply]:
        request = link.request
        link.seq += 1
        message_id = f"msg_{request.session_id}_{link.seq}"
        payload = {
            "type": event, "id": message_id, "seq": link.seq, "route": self.route,
            "session_id": request.session_id, "client_id": link.client_id,
            "claims": dict(request.claims), "peer": request.peer, "query": link.query,
            "headers": link.headers,
            "state": None if link.state is None else json.loads(link.state),
            "time": self.clock.seconds(), **fields,
        }
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        stats = self.hook_stats
        stats.in_flight += 1
        started = self.clock.seconds()
        d = deliver(self.poster, self.settings, self.clock, self.settings.url(event),
                    message_id, body, self.slots)

        def done(result: object) -> object:
            stats.in_flight -= 1
            stats.observe(self.clock.seconds() - started)
            return result

        return d.addBoth(done)

    def _answered(self, reply: Reply, link: _Link, event: str) -> None:
        link.in_flight = None
        if event == "disconnect":
            self._forget(link.request.session_id)
            return
        if not 200 <= reply.status < 300:
            busy = reply.status in _BUSY_STATUSES
            self._fail(link, "status", TRY_AGAIN_LATER if busy else INTERNAL_ERROR,
                       "try again later" if busy else "backend error",
                       f"{event} answered with status {reply.status}")
        else:
            try:
                answer = parse_answer(reply.status, reply.content_type, reply.body,
                                      self.settings.max_state)
            except AnswerError as e:
                self._fail(link, "invalid", INTERNAL_ERROR, "backend error", f"{event}: {e}")
            else:
                if answer.state is not None:
                    link.state = answer.state
                self._apply(link, answer)
        self._next(link)

    def _not_answered(self, failure: Failure, link: _Link, event: str) -> None:
        link.in_flight = None
        failure.trap(DeliveryError)
        value: Any = failure.value
        if event == "disconnect":
            self._forget(link.request.session_id)
            self._failure(value.kind, link, f"disconnect: {value.why}", warn=False)
            return
        busy = value.kind in ("unreachable", "timeout")
        self._fail(link, value.kind, TRY_AGAIN_LATER if busy else INTERNAL_ERROR,
                   "try again later" if busy else "backend error", f"{event}: {value.why}")
        self._next(link)

    def _bug(self, failure: Failure, link: _Link) -> None:
        _log.failure("webhook {route}: session {session_id}: failed handling an answer",
                     failure=failure, route=self.route, session_id=link.request.session_id)
        link.in_flight = None
        self._forget(link.request.session_id)
        if link.session is not None:
            link.session.close(INTERNAL_ERROR, "internal error")

    # -- the daemon stopping -------------------------------------------------

    def _forget(self, session_id: str) -> None:
        self._links.pop(session_id, None)
        if not self._links:
            if self._trigger is not None:
                core: Any = self.clock
                core.removeSystemEventTrigger(self._trigger)
                self._trigger = None
            self._stop_waiting()

    def _watch_shutdown(self) -> None:
        if self._trigger is None and IReactorCore.providedBy(self.clock):
            core: Any = self.clock
            self._trigger = core.addSystemEventTrigger("before", "shutdown",
                                                       self._shutting_down)

    def _shutting_down(self) -> Deferred[None] | None:
        """
        The reactor is about to stop: hold the stop while the connections'
        last events (their C{disconnect}, as the daemon closes them) are
        under way, at most L{STOP_GRACE} seconds (or C{timeout}).
        """
        self._trigger = None  # fired: nothing to remove
        if not self._links:
            return None
        self._drained = Deferred()
        waiting = self._drained
        grace = min(STOP_GRACE, self.settings.timeout)
        timer = self.clock.callLater(grace, self._stop_waiting)
        waiting.addBoth(lambda result: timer.cancel() if timer.active() else None)
        return waiting

    def _stop_waiting(self) -> None:
        waiting, self._drained = self._drained, None
        if waiting is not None:
            if self._links:
                _log.warn("webhook {route}: {count} connections' last events not answered as "
                          "the daemon stops", route=self.route, count=len(self._links))
            waiting.callback(None)

    def _apply(self, link: _Link, answer: Answer) -> None:
        session = link.session
        if session is None:
            return
        for message in answer.messages:
            session.send(message)
        if answer.close is not None:
            session.close(*answer.close)

    def _fail(self, link: _Link, kind: str, code: int, reason: str, why: str) -> None:
        self._failure(kind, link, why)
        if link.failed:
            return
        link.failed = True
        dropped = sum(1 for event, _ in link.queue if event == "message")
        link.queue = deque(item for item in link.queue if item[0] != "message")
        session = link.session
        if session is not None:
            _log.warn("webhook {route}: closing session {session_id} with {code} "
                      "({dropped} messages not sent)", route=self.route,
                      session_id=link.request.session_id, code=code, dropped=dropped)
            session.close(code, reason)

    def _failure(self, kind: str, link: _Link, why: str, warn: bool = True) -> None:
        self.hook_stats.errors[kind] += 1
        emit = _log.warn if warn else _log.info
        emit("webhook {route}: backend failed session {session_id} ({kind}): {why}",
             route=self.route, session_id=link.request.session_id, kind=kind, why=why)


@implementer(IStrategyFactory, IOptionCheck)
class WebhookStrategyFactory:
    name = "webhook"
    description = "POSTs each connection's events to an HTTP backend, signed; its answers reply"

    def check(self, options: Mapping[str, str], context: OptionContext) -> WebhookSettings:
        return check_options(options, context.config_dir)

    def create(self, options: Mapping[str, str], context: StrategyContext) -> WebhookStrategy:
        settings = context.checked
        if not isinstance(settings, WebhookSettings):
            settings = check_options(options, context.config_dir)
        clock: Any = context.clock
        poster: Poster = _unreachable
        if IReactorTCP.providedBy(clock):
            trust = trust_root(settings.ca_pem) if settings.ca_pem is not None else None
            poster = TreqPoster(clock, settings.max_response, settings.connect_timeout,
                                settings.max_requests, trust)
        return WebhookStrategy(settings, context.clock, context.route, poster)
