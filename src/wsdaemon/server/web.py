"""
The HTTP resource tree: the demo page at C{/} and one WebSocket resource
per route, all on one port.
"""

from __future__ import annotations

import re
from html import escape
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
from wsdaemon.forwarded import TrustedProxies
from wsdaemon.interfaces import Contribution
from wsdaemon.pages import (
    ASSET_TYPES,
    CONTENT_SECURITY_POLICY,
    StaticPage,
    WidgetAsset,
    inbox_assets,
)
from wsdaemon.pages import NoIndexResource as _NoIndexResource
from wsdaemon.pages import render_page as _page
from wsdaemon.server.access_log import AccessLogPolicy, QuietAccessLog

__all__ = ["CONTENT_SECURITY_POLICY", "StaticPage", "WebRoot", "build_site", "demo_page",
           "inbox_assets"]


def widget_tag(config: DaemonConfig) -> str:
    """
    @return: the tag that embeds the chat widget (whose files the
        conversations' component serves) for the config's first route
        served by conversations (C{strategy = operator}, which the config
        accepts only with an C{[operator]} section), or an empty string if
        there is none.
    """
    for route in config.routes:
        if route.strategy_name == "operator":
            return (f'<script src="{ASSETS_PATH}/widget.js" data-route="{escape(route.path)}" '
                    'data-color="#0f5f58" data-title="Acme Shoes support" async></script>')
    return ""


def demo_page(config: DaemonConfig) -> bytes:
    """
    @return: the demo page: a sample shop embedding the chat widget (for
        the first conversations route), the config's routes to try below
        but those that need a token the page cannot give (identity = jwt),
        listed apart with why.
    """
    page = _page("demo.html", {
        "routes": [{"path": r.path, "strategy": r.strategy_name}
                   for r in config.routes if r.protocol.identity.mode != "jwt"],
        "token_routes": [r.path for r in config.routes if r.protocol.identity.mode == "jwt"]})
    # The template's own placeholder comes first, before the data.
    return page.replace(b"__WIDGET__", widget_tag(config).encode("utf-8"), 1)


#: Where the pages' scripts and style sheets are served (no route may lie
#: there).
ASSETS = ASSETS_PATH


def assets() -> Resource:
    """
    @return: the pages' scripts and style sheets, at L{ASSETS}.
    """
    folder = _NoIndexResource()
    for name in ("demo.js", "demo.css"):
        body = files("wsdaemon").joinpath(f"static/{name}").read_bytes()
        folder.putChild(name.encode(), StaticPage(body, ASSET_TYPES[name[name.rindex("."):]]))
    return folder


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
        #: Whose X-Forwarded-For every route believes (changed by a reload).
        self.trusted_proxies = TrustedProxies()
        #: What the sites leave out of their access logs (changed by a reload).
        self.access_log = AccessLogPolicy(proxies=self.trusted_proxies)
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
              contribution: Contribution | None = None) -> Resource:
        """
        @param routes: C{config}'s routes, built.
        @param contribution: what a component contributes (its resources
            are mounted at their paths; its operator channel is counted in
            /metrics and closed on a stop), or None.

        @return: the root resource for C{config}.
        """
        self.limits.total = config.max_connections_total
        self.limits.per_ip = config.max_connections_per_ip
        self.trusted_proxies.networks = config.trusted_proxies
        self.access_log.every_request = config.log_every_request
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
            factory.trusted_proxies = self.trusted_proxies
            factories[route.path] = factory
            _put(root, route.path, WebSocketResource(factory))
        self.factories = factories
        self.channel = contribution.channel if contribution is not None else None
        if self.channel is not None:  # operators behind the same proxies as visitors
            self.channel.trusted_proxies = self.trusted_proxies
        for path, resource in (contribution.resources if contribution is not None else {}).items():
            _put(root, path, resource)
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


def build_site(root: Resource, handshake_timeout: float,
               access_log: AccessLogPolicy | None = None) -> Site:
    """
    @param handshake_timeout: seconds a connection has to send a request's
        headers (however slowly), see L{wsdaemon.connections.limits.HandshakeDeadlineChannel}.
    @param access_log: what the access log leaves out (its WebRoot's).
    """
    site = _Site(root, logFormatter=redacting_log_formatter)
    if access_log is not None:
        site.access_log = access_log
    site.displayTracebacks = False
    site.handshake_timeout = handshake_timeout
    return site


class _Site(QuietAccessLog):
    #: Paced, and WebSocket handshakes straight to their route (issue #26).
    protocol = UpgradeChannel  # type: ignore[assignment]
    #: Pages, scripts and style sheets: a page view is not 14 access lines.
    quiet_resources = (StaticPage, WidgetAsset)
    handshake_timeout = 5.0
