"""
The HTTP access log, fit for journald: a page view is one line, not one per
script and style sheet, and a monitor's C{/healthz} and C{/metrics} probes
(every few seconds) write nothing, unless C{[wsdaemon] log_every_request}
is on. WebSocket handshakes (who connected), API calls and every answer
of 400 or more are logged as before.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.python.components import proxyForInterface
from twisted.web.iweb import IRequest
from twisted.web.server import Request, Site

from wsdaemon.forwarded import TrustedProxies

__all__ = ["AccessLogPolicy", "QuietAccessLog"]

#: The request attribute marking an answer from a quiet resource.
_QUIET = "_wsdaemon_quiet"


class AccessLogPolicy:
    """
    What a site leaves out of its access log (one object shared by the
    daemon's sites, changed by a reload).

    @ivar every_request: log every request, quiet resources included.
    """

    def __init__(self, every_request: bool = False,
                 proxies: TrustedProxies | None = None) -> None:
        self.every_request = every_request
        #: Whose X-Forwarded-For names the client in the access line.
        self.proxies = proxies if proxies is not None else TrustedProxies()

    def logs(self, request: Request) -> bool:
        """
        @return: whether C{request}'s access line is written.
        """
        if self.every_request or not getattr(request, _QUIET, False):
            return True
        return int(request.code) >= 400


class QuietAccessLog(Site):
    """
    A site whose access log leaves out the successful answers of its
    C{quiet_resources} (static assets, probes), per its C{access_log}.
    """

    #: Resource types whose successful answers are not logged.
    quiet_resources: tuple[type, ...] = ()
    access_log = AccessLogPolicy()
    #: Twisted's "Starting factory <..._Site object at 0x7f...>": the
    #: service says what listens where.
    noisy = False
    #: What Twisted's "... starting on 8080" and "(... Port 8080 Closed)" call it.
    log_name = "wsdaemon"

    def logPrefix(self) -> str:
        return self.log_name

    def getResourceFor(self, request: Any) -> Any:
        resource = super().getResourceFor(request)
        if isinstance(resource, self.quiet_resources):
            setattr(request, _QUIET, True)
        return resource

    def log(self, request: Any) -> None:
        policy = self.access_log
        if policy.logs(request):
            super().log(_client_seen(request, policy.proxies) if policy.proxies else request)


class _ForwardedRequest(proxyForInterface(IRequest, "_request")):  # type: ignore[misc]
    """
    A request as the access log shows it: from the client a trusted proxy
    named (Twisted's C{proxiedLogFormatter} believes any peer's header).
    """

    def __init__(self, request: Any, address: IPv4Address | IPv6Address) -> None:
        super().__init__(request)
        self._address = address

    def getClientAddress(self) -> IPv4Address | IPv6Address:
        return self._address

    # Read by the access log's formatter, missing from IRequest.
    clientproto = property(lambda self: self._request.clientproto)
    code = property(lambda self: self._request.code)
    sentLength = property(lambda self: self._request.sentLength)


def _client_seen(request: Any, proxies: TrustedProxies) -> Any:
    host = proxies.host_of(request.getClientAddress())
    if not proxies.trusts(host):
        return request
    headers = request.requestHeaders
    forwarded = proxies.client(
        host, b", ".join(headers.getRawHeaders(b"x-forwarded-for", [])).decode("latin-1"))
    if not forwarded.forwarded:
        return request
    kind = IPv6Address if ":" in forwarded.host else IPv4Address
    return _ForwardedRequest(request, kind("TCP", forwarded.host, 0))
