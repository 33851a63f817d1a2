"""
A WebSocket mock server for your test suite, as a pytest plugin.

Installing wsdaemon registers it (the C{pytest11} entry point); nothing to
configure. Each test that asks for the C{wsmock} fixture gets a clean mock:
no rules (it answers nothing), an empty journal, ordinary handshakes, no
connections left from another test.

    def test_my_client_subscribes(wsmock):
        wsmock.rules('''
            [[rule]]
            json = { type = "subscribe" }
            reply = '{{"type": "subscribed"}}'
        ''')
        run_my_client(wsmock.url)
        wsmock.assert_received(json={"type": "subscribe"})
        wsmock.assert_sent(text='{"type": "subscribed"}')
        wsmock.assert_closed(1000)

Behind it runs one real wsdaemon per test session (per pytest-xdist worker:
parallel tests never see each other's messages), on free loopback ports,
driven through its admin API. The calls block briefly (a local HTTP
request); in asyncio tests wait with C{await wsmock.wait_for_async(...)}.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import ssl
import tempfile
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from wsdaemon.mock.server import SILENT, TIMEOUT, MockServer

__all__ = ["MockServer", "WsMock", "wsmock", "wsmock_server"]

def _matcher(match: dict[str, Any]) -> dict[str, Any] | None:
    if not match:
        return None
    if len(match) != 1:
        raise TypeError("give at most one matcher: text, regex, json, binary or binary_prefix")
    (key, value), = match.items()
    if key == "binary_prefix" and isinstance(value, bytes | bytearray):
        value = bytes(value).hex()
    if key not in ("text", "regex", "json", "binary", "binary_prefix"):
        raise TypeError(f"unknown matcher {key!r}; expected text, regex, json, binary or "
                        "binary_prefix")
    return {key: value}


def _handshake_match(path: str | None, query: dict[str, Any] | None,
                     headers: dict[str, str] | None) -> dict[str, Any]:
    """
    @return: a C{json} matcher for handshake entries (header names as the
        journal keeps them: lower case).
    """
    wanted: dict[str, Any] = {}
    if path is not None:
        wanted["path"] = path
    if query:
        wanted["query"] = dict(query)
    if headers:
        wanted["headers"] = {name.lower(): value for name, value in headers.items()}
    return wanted


#: How an assertion message names what a journal direction holds: the noun,
#: where it happened, and how what was seen is introduced.
_WORDS = {
    "in": ("message(s)", "received by the mock", "it received"),
    "out": ("message(s)", "sent by the mock", "it sent"),
    "open": ("connection(s)", "opened to the mock", "connections opened:"),
    "close": ("close(s)", "of connections to the mock", "closes seen:"),
    "ping": ("ping(s)", "sent by the mock", "pings sent:"),
    "pong": ("pong(s)", "received by the mock", "pongs received:"),
    "step": ("step note(s)", "of the rules' steps", "step notes:"),
    "handshake": ("handshake(s)", "made with the mock", "handshakes seen:"),
}


def _show(entry: dict[str, Any]) -> str:
    if entry.get("type") == "text":
        text = entry["text"]
        return repr(text if len(text) <= 80 else text[:77] + "...")
    if entry.get("type") == "binary":
        return f"<{entry['length']} bytes: {base64.b64decode(entry['base64'])[:16].hex()}>"
    if entry.get("direction") == "handshake":
        query = "&".join(f"{k}={v}" for k, v in entry.get("query", {}).items())
        return repr(entry.get("path", "") + (f"?{query}" if query else ""))
    return f"<{entry['direction']} {entry.get('code', '')}>".replace(" >", ">")


class WsMock:
    """
    The mock as one test sees it (the C{wsmock} fixture).

    @ivar url: the mock route's WebSocket URL (C{ws://127.0.0.1:PORT/mock};
        with C{tls}, C{wss://127.0.0.1:PORT/mock}).
    @ivar echo_url: a route that echoes everything (C{wss://} with C{tls}).
    @ivar tls_url: the mock route over TLS, whatever C{tls} says (None
        for a server started without TLS, as the fixture's never is).
    @ivar ca_path: the throwaway CA's certificate (PEM) that signed the
        mock's: what a client under test must trust for C{wss://}.
    """

    def __init__(self, server: MockServer, tls: bool = False) -> None:
        self.server = server
        authority = server.authority
        if tls and authority is None:
            raise ValueError("tls: this mock server was started without TLS")
        self.ca_path = None if authority is None else str(authority.ca_path)
        self.tls_url = None if authority is None else \
            f"wss://127.0.0.1:{server.tls_port}/mock"
        self.tls_echo_url = None if authority is None else \
            f"wss://127.0.0.1:{server.tls_port}/echo"
        plain = f"ws://127.0.0.1:{server.port}"
        self.url = self.tls_url if tls and self.tls_url else f"{plain}/mock"
        self.echo_url = self.tls_echo_url if tls and self.tls_echo_url else f"{plain}/echo"
        self._ssl_context: ssl.SSLContext | None = None
        self._call = server.call
        for route in ("/mock", "/echo"):
            self._call("DELETE", f"/routes/handshake?route={route}")
            self._drop_all(route)
        self._call("PUT", "/routes/rules?route=/mock", raw=SILENT.encode())
        self._call("DELETE", "/journal")
        self.since = self._call("GET", "/journal?limit=0")["last"]

    def _drop_all(self, route: str) -> None:
        """
        End the connections an earlier test left open, and wait until the
        daemon has seen them go (so that their closes precede this test).
        """
        deadline = time.monotonic() + TIMEOUT
        while True:
            left = self._call("GET", f"/routes/connections?route={route}")["connections"]
            if not left:
                return
            for connection in left:
                try:
                    self._connection_call("drop", connection["session_id"])
                except AssertionError:
                    pass  # gone meanwhile
            if time.monotonic() >= deadline:
                raise AssertionError(f"connections to {route} would not go: {left}")
            time.sleep(0.02)

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """
        A client context that trusts the mock's throwaway CA (and nothing
        else) and checks the host name: C{connect(wsmock.url,
        ssl=wsmock.ssl_context)}.
        """
        if self.ca_path is None:
            raise ValueError("this mock server was started without TLS")
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context(cafile=self.ca_path)
        return self._ssl_context

    # -- behaviour -------------------------------------------------------------------

    def rules(self, text: str) -> int:
        """
        Answer by these rules (a rules file's TOML, see the README), from
        now on, open connections included.

        @return: the number of rules.
        """
        answer: int = self._call("PUT", "/routes/rules?route=/mock",
                                 raw=textwrap.dedent(text).encode("utf-8"))["rules"]
        return answer

    def rules_file(self, path: str | os.PathLike[str]) -> int:
        return self.rules(Path(path).read_text(encoding="utf-8"))

    def refuse_next(self, count: int = 1, status: int = 503,
                    headers: dict[str, str] | None = None) -> None:
        """
        Refuse the next C{count} handshakes with C{status} and C{headers}.
        """
        self._call("POST", "/routes/handshake?route=/mock",
                   {"refuse_next": count, "refuse_status": status,
                    "refuse_headers": headers or {}})

    def subprotocols(self, *names: str, require: bool = False) -> None:
        """
        Accept these subprotocols (the first the client offers); with
        C{require}, refuse (400) clients that offer none of them.
        """
        self._call("POST", "/routes/handshake?route=/mock",
                   {"subprotocols": list(names), "require_subprotocol": require})

    def reset_next(self, count: int = 1) -> None:
        """
        Answer the next C{count} handshakes by resetting their TCP
        connection (RST): the client sees a connection reset, no HTTP answer.
        """
        self._call("POST", "/routes/handshake?route=/mock", {"reset_next": count})

    def hang_next(self, count: int = 1) -> None:
        """
        Never answer the next C{count} handshakes: each client waits until
        it gives up (its own open timeout).
        """
        self._call("POST", "/routes/handshake?route=/mock", {"hang_next": count})

    def delay_handshakes(self, seconds: float) -> None:
        """
        Answer every handshake (acceptances and refusals) C{seconds} late;
        0 answers at once again.
        """
        self._call("POST", "/routes/handshake?route=/mock", {"delay": seconds})

    def scenario(self, name: str) -> str:
        """
        @return: the state scenario C{name} is in now (its rules'
            C{scenario = "NAME"}).
        """
        states: dict[str, str] = self._call("GET", "/routes/scenarios?route=/mock")["scenarios"]
        if name not in states:
            raise KeyError(f"no scenario {name!r}; the rules name: "
                           f"{', '.join(sorted(states)) or 'none'}")
        return states[name]

    def set_scenario(self, name: str, state: str) -> None:
        """
        Move scenario C{name} to C{state}, for every connection (the
        rules' C{when_state} rules see it at the next message).
        """
        self._call("PUT", "/routes/scenarios?route=/mock", {name: state})

    # -- connections ---------------------------------------------------------------

    def connections(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._call("GET", "/routes/connections?route=/mock")[
            "connections"]
        return found

    def _sessions(self, session: str | None) -> list[str]:
        if session is not None:
            return [session]
        return [c["session_id"] for c in self.connections()]

    def _connection_call(self, action: str, session: str, **body: Any) -> Any:
        return self._call("POST", f"/connections/{action}", {"session": session, **body})

    def push(self, message: str | bytes, session: str | None = None, fragments: int = 1) -> int:
        """
        Send C{message} to one session, or to every connection of the mock.

        @return: the connections it reached.
        """
        body: dict[str, Any] = ({"text": message} if isinstance(message, str)
                                else {"base64": base64.b64encode(message).decode("ascii")})
        if fragments != 1:
            body["fragments"] = fragments
        return sum(self._connection_call("send", s, **body)["delivered"]
                   for s in self._sessions(session))

    def close(self, code: int = 1000, reason: str = "", session: str | None = None) -> None:
        for s in self._sessions(session):
            self._connection_call("close", s, code=code, reason=reason)

    def drop(self, session: str | None = None) -> None:
        """
        End the TCP connection(s) without a closing handshake (1006).
        """
        for s in self._sessions(session):
            self._connection_call("drop", s)

    def pause_reading(self, seconds: float, session: str | None = None) -> None:
        for s in self._sessions(session):
            self._connection_call("pause_reading", s, seconds=seconds)

    def hold_writes(self, seconds: float, session: str | None = None) -> None:
        for s in self._sessions(session):
            self._connection_call("hold_writes", s, seconds=seconds)

    def ping(self, session: str | None = None, timeout: float = 5.0) -> bool:
        """
        Ping and wait for the pong (a connection that does not answer in
        time is dropped).

        @return: whether every pinged connection answered; False when there
            was no connection to ping (nothing answered).
        """
        sessions = self._sessions(session)
        answers = [self._connection_call("ping", s, timeout=timeout)["pong"] for s in sessions]
        return bool(answers) and all(answers)

    # -- the journal -----------------------------------------------------------------

    def journal(self, direction: str | None = None, **match: Any) -> list[dict[str, Any]]:
        """
        What happened on the mock since this test began, oldest first:
        entries with C{direction} (C{in}, C{out}, C{open}, C{close}, C{ping},
        C{pong}, C{step}, C{handshake}) and C{seq}, C{time}, C{session}, C{client}, C{type},
        C{text} or C{base64}, C{code}... (see the README).

        @param match: one matcher, as in rules: C{text=}, C{regex=},
            C{json=}, C{binary=True}, C{binary_prefix=} (bytes or hex).
        """
        body: dict[str, Any] = {"route": "/mock", "since": self.since}
        if direction is not None:
            body["direction"] = direction
        matcher = _matcher(match)
        if matcher is not None:
            body["match"] = matcher
        entries: list[dict[str, Any]] = self._call("POST", "/journal/find", body)["entries"]
        return entries

    def handshakes(self, path: str | None = None, query: dict[str, Any] | None = None,
                   headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """
        @return: the opening handshakes made with the mock (entries with
            C{method}, C{path}, C{query}, C{headers}, C{subprotocols},
            C{fault}; credentials masked), those with this C{path} (as the
            client asked for it, e.g. C{/mock/rooms/7}) and these C{query}
            parameters and C{headers} (any case) if given.
        """
        wanted = _handshake_match(path, query, headers)
        return self.journal("handshake", **({"json": wanted} if wanted else {}))

    def assert_handshake(self, count: int | None = 1, path: str | None = None,
                         query: dict[str, Any] | None = None,
                         headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """
        Assert that exactly C{count} handshakes (None: at least one) had
        this C{path}, C{query} parameters and C{headers}.
        """
        wanted = _handshake_match(path, query, headers)
        return self._assert_count("handshake", count, {"json": wanted} if wanted else {})

    def received(self, **match: Any) -> list[dict[str, Any]]:
        """
        @return: the messages clients sent the mock (matching C{match}).
        """
        return self.journal("in", **match)

    def sent(self, **match: Any) -> list[dict[str, Any]]:
        """
        @return: the messages the mock sent clients (matching C{match}).
        """
        return self.journal("out", **match)

    def _assert_count(self, direction: str, count: int | None, match: dict[str, Any],
                      at_least: bool = False) -> list[dict[str, Any]]:
        found = self.journal(direction, **match)
        if at_least and count is not None and len(found) >= count:
            return found
        if not at_least and ((count is None and found) or len(found) == count):
            return found
        raise AssertionError(self._not_found(direction, count, match, len(found), at_least))

    def _not_found(self, direction: str, count: int | None, match: dict[str, Any], found: int,
                   at_least: bool) -> str:
        """
        @return: what was expected, what was found, and what the journal holds
            in C{direction} (the first ten).
        """
        everything = self.journal(direction)
        shown = ", ".join(_show(e) for e in everything[:10]) or "nothing"
        more = f" and {len(everything) - 10} more" if len(everything) > 10 else ""
        wanted = ("at least one" if count is None else
                  f"at least {count}" if at_least else f"exactly {count}")
        noun, where, seen = _WORDS.get(direction, ("entries", f"journalled as {direction!r}",
                                                   "the journal holds"))
        what = f" matching {_matcher(match)}" if match else ""
        return (f"expected {wanted} {noun}{what} {where}, found {found}; {seen} {shown}{more}")

    def assert_received(self, count: int | None = 1, **match: Any) -> list[dict[str, Any]]:
        """
        Assert that clients sent exactly C{count} messages matching
        C{match} (None: at least one).
        """
        return self._assert_count("in", count, match)

    def assert_sent(self, count: int | None = 1, **match: Any) -> list[dict[str, Any]]:
        """
        Assert that the mock sent exactly C{count} messages matching C{match}.
        """
        return self._assert_count("out", count, match)

    def wait_for(self, direction: str = "in", count: int = 1, timeout: float = TIMEOUT,
                 **match: Any) -> list[dict[str, Any]]:
        """
        Wait (blocking) until at least C{count} entries match.

        @raise AssertionError: on timeout, saying what was seen.
        """
        deadline = time.monotonic() + timeout
        while (found := self._arrived(direction, count, deadline, match)) is None:
            time.sleep(0.02)
        return found

    async def wait_for_async(self, direction: str = "in", count: int = 1,
                             timeout: float = TIMEOUT, **match: Any) -> list[dict[str, Any]]:
        """
        L{wait_for} for asyncio tests: the event loop keeps running.
        """
        deadline = time.monotonic() + timeout
        while (found := self._arrived(direction, count, deadline, match)) is None:
            await asyncio.sleep(0.02)
        return found

    def _arrived(self, direction: str, count: int, deadline: float,
                 match: dict[str, Any]) -> list[dict[str, Any]] | None:
        """
        @return: the entries once C{count} match, None to keep waiting.
        @raise AssertionError: past the deadline, saying what was seen.
        """
        found = self.journal(direction, **match)
        if len(found) >= count:
            return found
        if time.monotonic() >= deadline:
            return self._assert_count(direction, count, match, at_least=True)
        return None

    def assert_closed(self, code: int | None = 1000, timeout: float = TIMEOUT) -> None:
        """
        Assert that a connection closed with C{code} (None: any code),
        waiting up to C{timeout} for it: earlier closes with other codes do
        not end the wait.
        """
        deadline = time.monotonic() + timeout
        while True:
            codes = [c.get("code") for c in self.journal("close")]
            if codes and (code is None or code in codes):
                return
            if time.monotonic() >= deadline:
                wanted = "a connection to close" if code is None else \
                    f"a connection to close with {code}"
                seen = ", ".join("no code" if c is None else str(c) for c in codes)
                raise AssertionError(f"expected {wanted} within {timeout:g} s; "
                                     + (f"closes seen: {seen}" if codes else
                                        "no connection closed"))
            time.sleep(0.02)


@pytest.fixture(scope="session")
def wsmock_server() -> Iterator[MockServer]:
    """
    The wsdaemon behind C{wsmock}: one per test session (per xdist worker).
    """
    directory = Path(tempfile.mkdtemp(prefix="wsmock-"))
    server = MockServer(directory, now=datetime.now(UTC))
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def wsmock(wsmock_server: MockServer, request: pytest.FixtureRequest) -> WsMock:
    """
    A clean WebSocket mock for this test. A C{@pytest.mark.wsmock(rules=...)}
    (TOML text) or C{(rules_file=...)} marker sets its rules up front;
    C{(tls=True)}, or the ini setting C{wsmock_tls = true} for every test,
    makes its URLs C{wss://} (C{wsmock.ssl_context} trusts its CA).
    """
    marker = request.node.get_closest_marker("wsmock")
    tls = request.config.getini("wsmock_tls")
    if marker is not None and "tls" in marker.kwargs:
        tls = bool(marker.kwargs["tls"])
    mock = WsMock(wsmock_server, tls=tls)
    if marker is not None:
        if "rules" in marker.kwargs:
            mock.rules(marker.kwargs["rules"])
        if "rules_file" in marker.kwargs:
            mock.rules_file(marker.kwargs["rules_file"])
    return mock


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("wsmock_tls", "the wsmock fixture's URLs are wss:// (a throwaway CA; "
                  "wsmock.ssl_context trusts it)", type="bool", default=False)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "wsmock(rules=None, rules_file=None, tls=False): the wsmock fixture's "
                   "rules, and wss:// URLs")
