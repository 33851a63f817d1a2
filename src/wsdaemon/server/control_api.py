"""
The admin API's run-time control of routes and connections: what a test
suite changes for one test without a reload and without touching a file.

    GET  /routes                       every route: strategy, connections, journal
    GET  /routes/connections?route=    one route's open connections
    PUT  /routes/rules?route=          replace a scripted route's rules (body: TOML)
    POST /routes/reset?route=          reset its state (counters, cycles, tickers, scenarios,
                                       handshake plan) and journal
    GET|POST|DELETE /routes/handshake?route=
                                       how handshakes are answered: refuse the next N with a
                                       status and headers, reset or hang the next N, delay
                                       every answer, accept or require subprotocols
                                       (POST changes the keys it gives; DELETE: the rules')
    GET|PUT /routes/scenarios?route=   its scenarios' states (PUT {"NAME": "STATE", ...})
    POST /connections/send             {"session", "text" | "base64", "fragments"?}
    POST /connections/close            {"session", "code", "reason"}
    POST /connections/drop             {"session"}: no close frame, the TCP connection just ends
    POST /connections/pause_reading    {"session", "seconds"}
    POST /connections/hold_writes      {"session", "seconds"}
    POST /connections/ping             {"session", "payload"?, "timeout"?}: answers when the
                                       pong comes ({"pong": true, "seconds"}) or not

What these change lasts until the next reload, which reads the files again.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from autobahn.exception import PayloadExceededError
from twisted.logger import Logger
from twisted.web.server import NOT_DONE_YET, Request

from wsdaemon.interfaces import IHandshakePolicy, IResettable, IRulesReplaceable, IScenarios
from wsdaemon.records import (
    MAX_FAULT_SECONDS,
    MAX_FRAGMENTS,
    SENDABLE_CLOSE_CODES,
    SENDABLE_CLOSE_CODES_TEXT,
    HandshakePlan,
    PushTarget,
    check_plan,
)
from wsdaemon.server.api import (
    ApiResource,
    RequestError,
    check_unicode,
    json_answer,
    path_of,
    reject_unknown,
    request_object,
    too_big,
)
from wsdaemon.strategies.api import OptionError

__all__ = ["ConnectionsResource", "RoutesResource", "SENDABLE_CLOSE_CODES"]

_log = Logger(namespace="wsdaemon.admin")



def _string(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise RequestError(400, f'"{key}" must be a non-empty string')
    check_unicode(key, value)
    return value


def _plan(strategy: object) -> HandshakePlan:
    if IHandshakePolicy.providedBy(strategy):
        plan: HandshakePlan | None = strategy.handshake_plan
        if plan is not None:
            return plan
    return HandshakePlan()


def _handshake_plan(data: Mapping[str, Any], current: HandshakePlan,
                    refusals_left: int, resets_left: int = 0,
                    hangs_left: int = 0) -> HandshakePlan:
    """
    @return: the C{current} plan with the keys C{data} gives changed, and
        only those: refusing the next handshakes keeps the subprotocols set
        before, and the other way round (C{refuse_next}, C{reset_next},
        C{hang_next} not given: those still left).
    """
    found: dict[str, Any] = {"refuse_next": refusals_left, "reset_next": resets_left,
                             "hang_next": hangs_left}
    if "subprotocols" in data:
        names = data["subprotocols"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise RequestError(400, '"subprotocols" must be a list of names')
        found["subprotocols"] = tuple(names)
    if "require_subprotocol" in data:
        require = data["require_subprotocol"]
        if not isinstance(require, bool):
            raise RequestError(400, '"require_subprotocol" must be true or false')
        found["require_subprotocol"] = require
    if "delay" in data:
        delay = data["delay"]
        if isinstance(delay, bool) or not isinstance(delay, int | float):
            raise RequestError(400, '"delay" must be a number of seconds')
        found["delay"] = float(delay)
    for key in ("refuse_next", "refuse_status", "reset_next", "hang_next"):
        if key in data:
            value = data[key]
            if not isinstance(value, int) or isinstance(value, bool):
                raise RequestError(400, f'"{key}" must be a whole number')
            found[key] = value
    if "refuse_headers" in data:
        headers = data["refuse_headers"]
        if not isinstance(headers, dict) or not all(isinstance(v, str)
                                                    for v in headers.values()):
            raise RequestError(400, '"refuse_headers" must be an object of name: "value"')
        found["refuse_headers"] = tuple(headers.items())
    plan = replace(current, **found)
    try:
        check_plan(plan)
    except ValueError as e:
        raise RequestError(400, str(e)) from None
    return plan


def _seconds(data: Mapping[str, Any], key: str, default: float | None = None) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not \
            0 < value <= MAX_FAULT_SECONDS:
        raise RequestError(400, f'"{key}" must be a number of seconds, more than 0 and at most '
                                f"{MAX_FAULT_SECONDS:g}")
    return float(value)


class RoutesResource(ApiResource):
    takes_subpaths = True

    def _factory(self, request: Request) -> Any:
        raw = (request.args or {}).get(b"route")
        if not raw:
            raise RequestError(400, "give the route: ?route=/path")
        route = raw[-1].decode("utf-8", "replace")
        factories = self.admin.daemon.factories
        if route not in factories:
            raise RequestError(404, f"no route {route!r}; routes: {', '.join(sorted(factories))}")
        return factories[route]

    def render_GET(self, request: Request) -> bytes:
        self.authorize(request)
        path = path_of(request)
        if path == [b"connections"]:
            factory = self._factory(request)
            connections = self.admin.daemon.index.describe(factory.route.path)
            return json_answer(request, 200, {"route": factory.route.path,
                                              "count": len(connections),
                                              "connections": connections})
        if path == [b"handshake"]:
            factory = self._factory(request)
            return json_answer(request, 200, {"route": factory.route.path,
                                              "handshake": factory.handshake.describe()})
        if path == [b"scenarios"]:
            factory = self._factory(request)
            return json_answer(request, 200, {"route": factory.route.path,
                                              "scenarios": self._scenarios(factory).scenarios()})
        if path:
            raise RequestError(404, "expected /routes, /routes/connections?route=, "
                                    "/routes/handshake?route= or /routes/scenarios?route=")
        routes = []
        for route_path, factory in sorted(self.admin.daemon.factories.items()):
            strategy = factory.route.strategy
            routes.append({
                "route": route_path, "strategy": factory.route.strategy_name,
                "connections": factory.connections,
                "can_replace_rules": IRulesReplaceable.providedBy(strategy),
                "can_reset": IResettable.providedBy(strategy),
                "journal": factory.journal.describe(),
            })
        return json_answer(request, 200, {"routes": routes})

    def render_DELETE(self, request: Request) -> bytes:
        self.authorize(request)
        if path_of(request) != [b"handshake"]:
            raise RequestError(404, "DELETE /routes/handshake?route=/path")
        factory = self._factory(request)
        factory.handshake.set(_plan(factory.route.strategy))
        return json_answer(request, 200, {"route": factory.route.path,
                                          "handshake": factory.handshake.describe()})

    def _set_handshake(self, request: Request) -> bytes:
        factory = self._factory(request)
        data = request_object(request, self.admin.max_body)
        reject_unknown(data, {"subprotocols", "require_subprotocol", "refuse_next",
                               "refuse_status", "refuse_headers", "reset_next", "hang_next",
                               "delay"})
        state = factory.handshake
        plan = _handshake_plan(data, state.plan, state.refusals_left, state.resets_left,
                               state.hangs_left)
        state.set(plan)
        _log.info("admin API: handshakes of {route} now {plan}", route=factory.route.path,
                  plan=plan.to_json())
        return json_answer(request, 200, {"route": factory.route.path,
                                          "handshake": factory.handshake.describe()})

    @staticmethod
    def _scenarios(factory: Any) -> Any:
        strategy = factory.route.strategy
        if not IScenarios.providedBy(strategy):
            raise RequestError(409, f"route {factory.route.path} runs strategy "
                                    f"{factory.route.strategy_name!r}, which has no scenarios")
        return strategy

    def _set_scenarios(self, request: Request) -> bytes:
        """
        Every state given is checked before any is set: a mistake changes
        nothing.
        """
        factory = self._factory(request)
        strategy = self._scenarios(factory)
        data = request_object(request, self.admin.max_body)
        known = strategy.scenarios()
        for name, state in data.items():
            if name not in known:
                raise RequestError(404, f"no scenario {name!r} on {factory.route.path}; its "
                                        f"scenarios: {', '.join(sorted(known)) or 'none'}")
            if not isinstance(state, str) or not state.strip():
                raise RequestError(400, f'"{name}" must be a state name (a non-empty string)')
            check_unicode(name, state)
        try:
            strategy.set_scenarios(data)
        except ValueError as e:
            raise RequestError(400, str(e)) from None
        return json_answer(request, 200, {"route": factory.route.path,
                                          "scenarios": strategy.scenarios()})

    def render_PUT(self, request: Request) -> bytes:
        self.authorize(request)
        if path_of(request) == [b"scenarios"]:
            return self._set_scenarios(request)
        if path_of(request) != [b"rules"]:
            raise RequestError(404, "PUT /routes/rules?route=/path with the rules (TOML), or "
                                    "/routes/scenarios?route=/path")
        factory = self._factory(request)
        strategy = factory.route.strategy
        if not IRulesReplaceable.providedBy(strategy):
            raise RequestError(409, f"route {factory.route.path} runs strategy "
                                    f"{factory.route.strategy_name!r}, which has no rules "
                                    "to replace")
        if getattr(request, "oversized", False):
            raise RequestError(413, f"body over {self.admin.max_body} bytes")
        assert request.content is not None
        try:
            count = strategy.replace_rules(request.content.read())
        except OptionError as e:
            where = "rules" if e.line is None else f"rules:{e.line}"
            raise RequestError(400, f"{where}: {e.expected}") from None
        factory.handshake.set(_plan(strategy))
        _log.info("admin API: rules of {route} replaced ({count} rule(s))",
                  route=factory.route.path, count=count)
        return json_answer(request, 200, {"route": factory.route.path, "rules": count})

    def render_POST(self, request: Request) -> bytes:
        self.authorize(request)
        path = path_of(request)
        if path == [b"handshake"]:
            return self._set_handshake(request)
        if path != [b"reset"]:
            raise RequestError(404, "POST /routes/reset?route=/path or /routes/handshake")
        factory = self._factory(request)
        strategy = factory.route.strategy
        reset = IResettable.providedBy(strategy)
        if reset:
            strategy.reset()
        factory.handshake.set(_plan(strategy))
        cleared = len(factory.journal)
        factory.journal.clear()
        _log.info("admin API: {route} reset (strategy state {state}, {cleared} journal "
                  "entries)", route=factory.route.path, state="reset" if reset else "none",
                  cleared=cleared)
        return json_answer(request, 200, {"route": factory.route.path, "state_reset": reset,
                                          "journal_cleared": cleared})


class ConnectionsResource(ApiResource):
    takes_subpaths = True

    def _connection(self, data: Mapping[str, Any]) -> Any:
        session_id = _string(data, "session")
        found = list(self.admin.daemon.index.select(PushTarget("session", session_id)))
        if not found or found[0].session is None:
            raise RequestError(404, f"no open connection with session {session_id!r}")
        return found[0]

    def render_POST(self, request: Request) -> bytes | int:
        self.authorize(request)
        path = path_of(request)
        data = request_object(request, self.admin.max_body)
        if path == [b"send"]:
            return self._send(request, data)
        if path == [b"close"]:
            return self._close(request, data)
        if path == [b"drop"]:
            return self._drop(request, data)
        if path in ([b"pause_reading"], [b"hold_writes"]):
            return self._pause(request, data, path[0].decode())
        if path == [b"ping"]:
            return self._ping(request, data)
        raise RequestError(404, "POST /connections/send, close, drop, pause_reading, "
                                "hold_writes or ping")

    def _pause(self, request: Request, data: Mapping[str, Any], what: str) -> bytes:
        reject_unknown(data, {"session", "seconds"})
        connection = self._connection(data)
        seconds = _seconds(data, "seconds")
        getattr(connection.session, what)(seconds)
        _log.info("admin API: {what} for {seconds} s on session {session_id}", what=what,
                  seconds=seconds, session_id=connection.session.session_id)
        return json_answer(request, 200, {"session": connection.session.session_id,
                                          what: seconds})

    def _ping(self, request: Request, data: Mapping[str, Any]) -> int:
        reject_unknown(data, {"session", "payload", "timeout"})
        connection = self._connection(data)
        raw = data.get("payload", "")
        if not isinstance(raw, str):
            raise RequestError(400, '"payload" must be a string')
        check_unicode("payload", raw)
        payload = raw.encode("utf-8") or secrets.token_hex(8).encode("ascii")
        if len(payload) > 125:
            raise RequestError(400, '"payload" is at most 125 bytes (RFC 6455)')
        timeout = _seconds(data, "timeout", 10.0)
        session = connection.session
        try:
            d = session.ping(payload, timeout)
        except ValueError as e:
            raise RequestError(409, str(e)) from None

        def answer(seconds: float | None) -> None:
            if request.finished or getattr(request, "_disconnected", False):
                return
            body = {"session": session.session_id, "pong": seconds is not None}
            if seconds is not None:
                body["seconds"] = seconds
            request.write(json_answer(request, 200, body))
            request.finish()

        d.addCallback(answer)
        d.addErrback(lambda failure: _log.failure("admin API: ping failed", failure))
        return NOT_DONE_YET

    def _send(self, request: Request, data: Mapping[str, Any]) -> bytes:
        reject_unknown(data, {"session", "text", "base64", "fragments"})
        connection = self._connection(data)
        bodies = [key for key in ("text", "base64") if key in data]
        if len(bodies) != 1:
            raise RequestError(400, 'give exactly one of "text" or "base64"')
        message: str | bytes
        if bodies[0] == "text":
            if not isinstance(data["text"], str):
                raise RequestError(400, '"text" must be a string')
            check_unicode("text", data["text"])
            message = data["text"]
        else:
            try:
                message = base64.b64decode(str(data["base64"]), validate=True)
            except (ValueError, binascii.Error):
                raise RequestError(400, '"base64" is not valid base64') from None
        frames = data.get("fragments", 1)
        if isinstance(frames, bool) or not isinstance(frames, int) or not \
                1 <= frames <= MAX_FRAGMENTS:
            raise RequestError(400, f'"fragments" must be a whole number from 1 to '
                                    f"{MAX_FRAGMENTS}")
        size = len(message) if isinstance(message, bytes) else len(message.encode("utf-8"))
        limit = connection.max_message_size
        if limit and size > limit:
            raise RequestError(413, too_big(size, connection.session.route, limit))
        try:
            sent = (connection.session.send(message) if frames == 1
                    else connection.session.send_fragmented(message, frames))
        except PayloadExceededError:  # over the limit once compressed
            raise RequestError(413, f"the message is over route {connection.session.route}'s "
                                    f"max_message_size ({limit} bytes) once compressed") from None
        return json_answer(request, 200, {"session": connection.session.session_id,
                                          "delivered": 1 if sent else 0})

    def _close(self, request: Request, data: Mapping[str, Any]) -> bytes:
        reject_unknown(data, {"session", "code", "reason"})
        connection = self._connection(data)
        code = data.get("code", 1000)
        if not isinstance(code, int) or isinstance(code, bool) or code not in \
                SENDABLE_CLOSE_CODES:
            raise RequestError(400, '"code" must be a close code a server may send: '
                                    f"{SENDABLE_CLOSE_CODES_TEXT}")
        reason = data.get("reason", "")
        if not isinstance(reason, str):
            raise RequestError(400, '"reason" must be a string')
        check_unicode("reason", reason)
        if len(reason.encode("utf-8")) > 123:
            raise RequestError(400, '"reason" is at most 123 bytes of UTF-8 (RFC 6455)')
        session = connection.session
        _log.info("admin API: closing session {session_id} on {route} with {code}",
                  session_id=session.session_id, route=session.route, code=code)
        connection.close_with(code, reason)
        return json_answer(request, 200, {"session": session.session_id, "code": code,
                                          "reason": reason})

    def _drop(self, request: Request, data: Mapping[str, Any]) -> bytes:
        reject_unknown(data, {"session"})
        connection = self._connection(data)
        session = connection.session
        _log.info("admin API: dropping session {session_id} on {route} (no close frame)",
                  session_id=session.session_id, route=session.route)
        connection.drop("through the admin API")
        return json_answer(request, 200, {"session": session.session_id, "dropped": True})
