"""
POSTing one event to the backend, with Twisted's C{Agent} (the answer read
with treq) up to C{max_response} bytes (a bigger one is cut off:
L{AnswerTooBig}).

The strategy sees only L{Poster}: tests give it their own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.error import ConnectError
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IAgentEndpointFactory, IBodyProducer
from zope.interface import implementer

__all__ = ["AnswerTooBig", "Poster", "Reply", "TreqPoster", "never_reached"]


@dataclass(frozen=True)
class Reply:
    """The backend's HTTP answer to one event."""

    status: int
    content_type: str
    body: bytes


class AnswerTooBig(Exception):  # noqa: N818 - says what happened
    """The answer's body is over C{max_response}; reading it stopped."""

    def __init__(self, size: int) -> None:
        super().__init__(f"over {size} bytes")
        self.size = size


#: POST C{body} with C{headers} to a URL: a Deferred firing with a L{Reply}.
Poster = Callable[[str, Mapping[str, str], bytes], "Deferred[Reply]"]


def never_reached(failure: Any) -> bool:
    """
    @return: whether the request certainly never reached the backend (its
        connection refused or never made, or the request never written), so
        that sending it again cannot make the backend see it twice.
    """
    from twisted.web._newclient import RequestNotSent

    return bool(failure.check(ConnectError, RequestNotSent))


@implementer(IBodyProducer)
class _Body:
    """A request's body, written at once (no cooperator turn, as
    C{FileBodyProducer} takes)."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.length = len(body)

    def startProducing(self, consumer: Any) -> Deferred[None]:
        consumer.write(self.body)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


@implementer(IAgentEndpointFactory)
class _Endpoints:
    """
    The backend's endpoints, made once per (scheme, host, port) of the
    route's URLs (at most three) instead of per request: a host name's
    IDNA encoding and the TLS options are not worked out again each time.
    """

    def __init__(self, reactor: Any, connect_timeout: float, trust: Any = None) -> None:
        self._reactor = reactor
        self._timeout = connect_timeout
        self._policy = BrowserLikePolicyForHTTPS(trust)
        self._made: dict[tuple[bytes, bytes, int], Any] = {}

    def endpointForURI(self, uri: Any) -> Any:  # noqa: N802 - Twisted's interface
        key = (uri.scheme, uri.host, uri.port)
        endpoint = self._made.get(key)
        if endpoint is None:
            host = uri.host.decode("ascii") if isinstance(uri.host, bytes) else uri.host
            endpoint = HostnameEndpoint(self._reactor, host, uri.port, timeout=self._timeout)
            if uri.scheme == b"https":
                endpoint = wrapClientTLS(self._policy.creatorForNetloc(uri.host, uri.port),
                                         endpoint)
            self._made[key] = endpoint
        return endpoint


class TreqPoster:
    """
    A L{Poster} on Twisted's HTTP client (answers read with treq), over a
    pool of persistent connections. Requests go straight to an C{Agent}:
    treq's request layers (cookies, redirects, content decoding, URL
    parsing with hyperlink) are nothing a webhook needs and were most of
    each request's cost.

    @param reactor: the reactor making the connections (TCP, time).
    @param trust: the certificates an https backend's must chain to (a
        trust root; None: the system's).
    """

    def __init__(self, reactor: Any, max_response: int, connect_timeout: float,
                 max_requests: int = 16, trust: Any = None) -> None:
        pool = HTTPConnectionPool(reactor, persistent=True)
        # As many kept alive as may be in flight at once: each request then
        # finds an idle connection instead of opening (and closing) one.
        pool.maxPersistentPerHost = max_requests
        pool.retryAutomatically = False  # a POST is never sent twice behind our back
        self.pool = pool
        self.max_response = max_response
        self._agent = Agent.usingEndpointFactory(
            reactor, _Endpoints(reactor, connect_timeout, trust), pool=pool)

    def __call__(self, url: str, headers: Mapping[str, str], body: bytes) -> Deferred[Reply]:
        fields = Headers({name.encode("latin-1"): [value.encode("latin-1")]
                          for name, value in headers.items()})
        d: Deferred[Any] = self._agent.request(b"POST", url.encode("ascii"), fields,
                                               _Body(body))
        d.addCallback(self._read)
        return d

    def _read(self, response: Any) -> Deferred[Reply]:
        import treq

        limit = self.max_response
        status = int(response.code)
        content_type = response.headers.getRawHeaders(b"content-type", [b""])[0]
        content_type = content_type.decode("latin-1")
        parts: list[bytes] = []
        size = 0
        if response.length is not UNKNOWN_LENGTH and response.length > limit:
            size = limit  # said up front: its first bytes are too many

        def collect(data: bytes) -> None:
            nonlocal size
            size += len(data)
            if size > limit:
                raise AnswerTooBig(limit)
            parts.append(data)

        done: Deferred[Any] = treq.collect(response, collect)
        return done.addCallback(lambda _: Reply(status, content_type, b"".join(parts)))

    def close(self) -> Deferred[None]:
        """Close the pool's idle connections."""
        closing: Deferred[None] = self.pool.closeCachedConnections()
        return closing
