"""
The HTTP resource tree: the demo page at C{/} and one WebSocket resource
per route, all on one port.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from importlib.resources import files
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from twisted.internet.interfaces import IReactorTime
from twisted.web.http import combinedLogFormatter
from twisted.web.iweb import IAccessLogFormatter
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from zope.interface import provider

from wsdaemon.config import ASSETS_PATH, DaemonConfig
from wsdaemon.connections.index import SessionIndex
from wsdaemon.connections.journal import Journal, Sequence
from wsdaemon.connections.limits import ConnectionLimits
from wsdaemon.connections.protocol import RouteFactory
from wsdaemon.connections.route import Route
from wsdaemon.connections.upgrade import UpgradeChannel
from wsdaemon.server.widget import widget_assets, widget_tag
from wsdaemon.strategies.operator.channel import OperatorChannelFactory
from wsdaemon.strategies.operator.ports import IOperatorQueue
from wsdaemon.support.component import SupportComponent

__all__ = ["WebRoot", "build_site", "console_page", "demo_page"]


def _page(name: str, data: object) -> bytes:
    template = files("wsdaemon").joinpath(f"static/{name}").read_text(encoding="utf-8")
    # Inside <script>, "</" and "<!--" must not appear literally.
    data_json = json.dumps(data).replace("<", "\\u003c")
    return template.replace("__DATA__", data_json).encode("utf-8")


def demo_page(config: DaemonConfig) -> bytes:
    """
    @return: the demo page: a sample shop embedding the chat widget (for
        the first conversations route), the config's routes to try below.
    """
    page = _page("demo.html", {"routes": [{"path": r.path, "strategy": r.strategy_name}
                                          for r in config.routes]})
    # The template's own placeholder comes first, before the data.
    return page.replace(b"__WIDGET__", widget_tag(config).encode("utf-8"), 1)


def console_page(channel_path: str) -> bytes:
    """
    @return: the operators' web console, talking to C{channel_path}.
    """
    return _page("console.html", {"channel": channel_path})


#: Where the pages' scripts and style sheets are served (no route may lie
#: there).
ASSETS = ASSETS_PATH
_ASSET_TYPES = {".js": b"text/javascript; charset=utf-8", ".css": b"text/css; charset=utf-8"}
#: Scripts and styles only from our own files (no inline script runs, so an
#: injected one would not either); WebSockets to this origin; never framed.
CONTENT_SECURITY_POLICY = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    b"img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def security_headers(request: Request) -> None:
    """
    What every page and asset is sent with.
    """
    request.setHeader(b"content-security-policy", CONTENT_SECURITY_POLICY)
    request.setHeader(b"x-frame-options", b"DENY")
    request.setHeader(b"x-content-type-options", b"nosniff")
    # The console accepts ?token=: it must never leave in a Referer.
    request.setHeader(b"referrer-policy", b"no-referrer")


class StaticPage(Resource):
    """
    An HTML page (or one of its scripts or style sheets) rendered once at
    startup.
    """

    isLeaf = True

    def __init__(self, body: bytes, content_type: bytes = b"text/html; charset=utf-8") -> None:
        super().__init__()
        self._body = body
        self._type = content_type

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", self._type)
        request.setHeader(b"cache-control", b"no-store")
        security_headers(request)
        return self._body

    render_HEAD = render_GET


def assets() -> Resource:
    """
    @return: the pages' scripts and style sheets, at L{ASSETS}.
    """
    folder = _NoIndexResource()
    for name in ("demo.js", "demo.css", "console.js", "console.css"):
        body = files("wsdaemon").joinpath(f"static/{name}").read_bytes()
        folder.putChild(name.encode(), StaticPage(body, _ASSET_TYPES[name[name.rindex("."):]]))
    widget_assets(folder, _NoIndexResource())
    return folder


class _NoIndexResource(Resource):
    """
    An inner path segment: has children, answers 404 itself.
    """

    def render(self, request: Request) -> bytes:
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"Not found\n"


def _put(root: Resource, path: str, resource: Any) -> None:
    *parents, leaf = path.strip("/").split("/")
    node = root
    for segment in parents:
        child = node.children.get(segment.encode())
        if child is None:
            child = _NoIndexResource()
            node.putChild(segment.encode(), child)
        node = child
    node.putChild(leaf.encode(), resource)


def inbox_assets() -> Resource:
    """
    @return: the operators' web inbox's modules and style sheets (static/inbox/),
        served at C{ASSETS}/inbox/ with the conversations.
    """
    folder = _NoIndexResource()
    for entry in files("wsdaemon").joinpath("static/inbox").iterdir():
        suffix = entry.name[entry.name.rfind("."):]
        if suffix in _ASSET_TYPES:
            folder.putChild(entry.name.encode(), StaticPage(entry.read_bytes(),
                                                            _ASSET_TYPES[suffix]))
    return folder


class WebRoot:
    """
    The resource tree and the factories behind it; rebuilt on a reload,
    keeping the factory of every route that stays (its counters and open
    connections carry on).
    """

    def __init__(self, clock: IReactorTime, reactor: Any, index: SessionIndex,
                 timed_journal: bool = False, worker: int = 0, workers: int = 1) -> None:
        self.clock = clock
        self.reactor = reactor
        self.index = index
        self.factories: dict[str, RouteFactory] = {}
        self.channel: Any = None
        self.limits = ConnectionLimits(total=0, per_ip=0)
        #: Numbers every route's journal entries in one order (a worker's: on
        #: the clock's time line, shared with the other workers, none of
        #: which gives the same number).
        self.sequence = Sequence(clock.seconds, worker, workers) if timed_journal else Sequence()

    def journals(self) -> dict[str, Journal]:
        """
        @return: each route's journal, by path.
        """
        return {path: factory.journal for path, factory in self.factories.items()}

    def build(self, config: DaemonConfig, routes: tuple[Route, ...],
              queue: IOperatorQueue | None, support: SupportComponent | None = None) -> Resource:
        """
        @param routes: C{config}'s routes, built.
        @param queue: the operator queue, when C{config} has an [operator]
            section of the queue model.
        @param support: the conversations, when the [operator] section
            chooses them: their operator channel is mounted instead.

        @return: the root resource for C{config}.
        """
        self.limits.total = config.max_connections_total
        self.limits.per_ip = config.max_connections_per_ip
        root = _NoIndexResource()
        root.putChild(ASSETS.strip("/").encode(), assets())
        if config.demo_page:
            root.putChild(b"", StaticPage(demo_page(config)))
        factories: dict[str, RouteFactory] = {}
        for route in routes:
            factory = self.factories.get(route.path)
            if factory is None:
                factory = RouteFactory(route, clock=self.clock, reactor=self.reactor,
                                       index=self.index, limits=self.limits,
                                       sequence=self.sequence)
            else:
                factory.update(route)
            factories[route.path] = factory
            _put(root, route.path, WebSocketResource(factory))
        self.factories = factories
        operator = config.operator
        if operator is not None and queue is not None:
            # The channel's own limits, independent of the client routes'.
            settings = replace(config.protocol, max_message_size=operator.max_message_size,
                               max_frame_size=operator.max_message_size,
                               max_outbound_buffer=operator.max_outbound_buffer)
            channel = self.channel
            if channel is None:
                channel = OperatorChannelFactory(queue, dict(operator.tokens), settings,
                                                 reactor=self.reactor)
            else:
                channel.update(queue, dict(operator.tokens), settings)
            channel.path = operator.path
            self.channel = channel
            _put(root, operator.path, WebSocketResource(channel))
            _put(root, operator.console_path, StaticPage(console_page(operator.path)))
        elif operator is not None and support is not None:
            channel = support.channel(config.protocol)
            self.channel = channel
            _put(root, operator.path, WebSocketResource(channel))
            _put(root, f"{ASSETS}/inbox", inbox_assets())
            _put(root, operator.console_path,
                 StaticPage(_page("inbox/inbox.html", {"channel": operator.path})))
        return root


#: Query parameters that carry credentials: never written to the access log.
_SECRET_PARAMS = re.compile(r"([?&](?:client_token|access_token)=)[^&\s\"]*")


@provider(IAccessLogFormatter)
def redacting_log_formatter(timestamp: str, request: Request) -> str:
    """
    Twisted's combined access-log line, with the values of credential
    query parameters (C{client_token}, C{access_token}) replaced by C{***}.
    """
    line: str = combinedLogFormatter(timestamp, request)
    return _SECRET_PARAMS.sub(r"\1***", line)


def build_site(root: Resource, handshake_timeout: float) -> Site:
    """
    @param handshake_timeout: seconds a connection has to send a request's
        headers (however slowly), see L{wsdaemon.connections.limits.HandshakeDeadlineChannel}.
    """
    site = _Site(root, logFormatter=redacting_log_formatter)
    site.displayTracebacks = False
    site.handshake_timeout = handshake_timeout
    return site


class _Site(Site):
    #: Paced, and WebSocket handshakes straight to their route (issue #26).
    protocol = UpgradeChannel  # type: ignore[assignment]
    handshake_timeout = 5.0
