"""
The HTTP access log, fit for journald: a page view is one line, not one per
script and style sheet, and a monitor's C{/healthz} and C{/metrics} probes
(every few seconds) write nothing, unless C{[wsdaemon] log_every_request}
is on. WebSocket handshakes (who connected), API calls and every answer
of 400 or more are logged as before.
"""

from __future__ import annotations

from typing import Any

from twisted.web.server import Request, Site

__all__ = ["AccessLogPolicy", "QuietAccessLog"]

#: The request attribute marking an answer from a quiet resource.
_QUIET = "_wsdaemon_quiet"


class AccessLogPolicy:
    """
    What a site leaves out of its access log (one object shared by the
    daemon's sites, changed by a reload).

    @ivar every_request: log every request, quiet resources included.
    """

    def __init__(self, every_request: bool = False) -> None:
        self.every_request = every_request

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

    def getResourceFor(self, request: Any) -> Any:
        resource = super().getResourceFor(request)
        if isinstance(resource, self.quiet_resources):
            setattr(request, _QUIET, True)
        return resource

    def log(self, request: Any) -> None:
        if self.access_log.logs(request):
            super().log(request)
