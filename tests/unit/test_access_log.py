"""
What the HTTP access log leaves out (wsdaemon.server.access_log) and the
setting that brings it back ([wsdaemon] log_every_request).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyRequest

from wsdaemon.config import ConfigError, load_config
from wsdaemon.endpoints import check_endpoint
from wsdaemon.forwarded import TrustedProxies, parse_trusted_proxies
from wsdaemon.server.access_log import AccessLogPolicy, QuietAccessLog


class _Asset(Resource):
    isLeaf = True


class _Site(QuietAccessLog):
    quiet_resources = (_Asset,)

    def __init__(self, policy: AccessLogPolicy) -> None:
        super().__init__(Resource())
        self.access_log = policy
        self.lines: list[str] = []
        self._logFormatter = lambda timestamp, request: (
            f"{request.getClientAddress().host} {request.code}")

    @property
    def _logFile(self) -> object:  # what Site.log writes to
        site = self

        class _File:
            def write(self, line: str) -> None:
                site.lines.append(line.strip())

        return _File()


def _request(code: int, quiet: bool, peer: str = "127.0.0.1",
             forwarded_for: str | None = None) -> DummyRequest:
    request = DummyRequest([b""])
    request.code = code
    request.client = IPv4Address("TCP", peer, 5000)
    if forwarded_for is not None:
        request.requestHeaders.setRawHeaders(b"x-forwarded-for", [forwarded_for.encode()])
    if quiet:
        request._wsdaemon_quiet = True
    return request


def test_quiet_resources_logged_only_on_errors_or_when_asked() -> None:
    """A quiet resource's 200 is not logged, its 404/503 are; others always; all when asked."""
    site = _Site(AccessLogPolicy())
    for code, quiet in ((200, True), (503, True), (200, False)):
        site.log(_request(code, quiet))
    assert site.lines == ["127.0.0.1 503", "127.0.0.1 200"]
    site.access_log.every_request = True
    site.log(_request(200, True))
    assert site.lines[-1] == "127.0.0.1 200" and len(site.lines) == 3


def test_access_line_names_the_forwarded_client_of_a_trusted_proxy_only() -> None:
    """X-Forwarded-For is believed from a trusted proxy, not from anyone else."""
    site = _Site(AccessLogPolicy(proxies=TrustedProxies(parse_trusted_proxies("127.0.0.1"))))
    site.log(_request(404, False, forwarded_for="1.2.3.4, 203.0.113.8"))
    site.log(_request(404, False, peer="198.51.100.7", forwarded_for="203.0.113.8"))
    assert site.lines == ["203.0.113.8 404", "198.51.100.7 404"]


def test_quiet_resource_marked_when_found() -> None:
    """The site marks a request answered by one of its quiet resources."""
    root = Resource()
    root.putChild(b"a.js", _Asset())
    site = _Site(AccessLogPolicy())
    site.resource = root
    request = DummyRequest([b"a.js"])
    site.getResourceFor(request)
    assert getattr(request, "_wsdaemon_quiet", False)


def test_setting(write_config: Callable[..., Path]) -> None:
    """log_every_request: default no, yes accepted, anything else a clear error."""
    def load(line: str) -> bool:
        path = write_config(f"[wsdaemon]\nlisten = tcp:8080\n{line}\n\n"
                            "[route:/echo]\nstrategy = echo\n")
        config = load_config(path, clock=Clock(),
                             check_endpoint=lambda d: check_endpoint(d, Clock()))
        return config.log_every_request

    assert load("") is False
    assert load("log_every_request = yes") is True
    with pytest.raises(ConfigError) as info:
        load("log_every_request = sometimes")
    assert ".ini:3: [wsdaemon] log_every_request: expected yes or no" in str(info.value)
