"""
POSTing one event to the backend, with treq: the answer read up to
C{max_response} bytes (a bigger one is cut off: L{AnswerTooBig}).

The strategy sees only L{Poster}: tests give it their own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectError
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import UNKNOWN_LENGTH

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


class TreqPoster:
    """
    A L{Poster} on treq, over a pool of persistent connections.

    @param reactor: the reactor making the connections (TCP, time).
    """

    def __init__(self, reactor: Any, max_response: int, connect_timeout: float) -> None:
        from treq.client import HTTPClient

        pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = 16
        pool.retryAutomatically = False  # a POST is never sent twice behind our back
        self.pool = pool
        self.max_response = max_response
        self._http = HTTPClient(Agent(reactor, connectTimeout=connect_timeout, pool=pool))

    def __call__(self, url: str, headers: Mapping[str, str], body: bytes) -> Deferred[Reply]:
        fields: dict[bytes | str, bytes | str] = {k: v for k, v in headers.items()}
        d: Deferred[Any] = self._http.post(url, data=body, headers=fields)
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
