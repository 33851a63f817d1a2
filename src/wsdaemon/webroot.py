"""
The HTTP resource tree: the demo page at C{/} and one WebSocket resource
per route, all on one port.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from wsdaemon.config import DaemonConfig
from wsdaemon.protocol import RouteFactory

__all__ = ["build_site", "demo_page"]


def demo_page(config: DaemonConfig) -> bytes:
    """
    @return: the demo page, listing the config's routes.
    """
    template = files("wsdaemon").joinpath("static/demo.html").read_text(encoding="utf-8")
    routes = [{"path": r.path, "strategy": r.strategy_name} for r in config.routes]
    # Inside <script>, "</" and "<!--" must not appear literally.
    routes_json = json.dumps(routes).replace("<", "\\u003c")
    return template.replace("__ROUTES__", routes_json).encode("utf-8")


class DemoPage(Resource):
    """
    The demo page, rendered once at startup.
    """

    isLeaf = True

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self._body = body

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-content-type-options", b"nosniff")
        return self._body

    render_HEAD = render_GET


class _NoIndexResource(Resource):
    """
    An inner path segment: has children, answers 404 itself.
    """

    def render(self, request: Request) -> bytes:
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"Not found\n"


def build_site(
    config: DaemonConfig, clock: IReactorTime, reactor: Any = None
) -> tuple[Site, dict[str, RouteFactory]]:
    """
    @return: the Site and, by route path, the Autobahn factory serving it.
    """
    root = _NoIndexResource()
    if config.demo_page:
        root.putChild(b"", DemoPage(demo_page(config)))
    factories: dict[str, RouteFactory] = {}
    for route in config.routes:
        factory = RouteFactory(route, clock=clock, reactor=reactor)
        factories[route.path] = factory
        *parents, leaf = route.path.strip("/").split("/")
        node: Resource = root
        for segment in parents:
            child = node.children.get(segment.encode())
            if child is None:
                child = _NoIndexResource()
                node.putChild(segment.encode(), child)
            node = child
        node.putChild(leaf.encode(), WebSocketResource(factory))
    site = Site(root)
    site.displayTracebacks = False
    return site, factories
