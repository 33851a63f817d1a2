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
from wsdaemon.operators.channel import OperatorChannelFactory
from wsdaemon.protocol import RouteFactory

__all__ = ["build_site", "demo_page"]


def _page(name: str, data: object) -> bytes:
    template = files("wsdaemon").joinpath(f"static/{name}").read_text(encoding="utf-8")
    # Inside <script>, "</" and "<!--" must not appear literally.
    data_json = json.dumps(data).replace("<", "\\u003c")
    return template.replace("__DATA__", data_json).encode("utf-8")


def demo_page(config: DaemonConfig) -> bytes:
    """
    @return: the demo page, listing the config's routes.
    """
    return _page("demo.html", {"routes": [{"path": r.path, "strategy": r.strategy_name}
                                          for r in config.routes]})


def console_page(channel_path: str) -> bytes:
    """
    @return: the operators' web console, talking to C{channel_path}.
    """
    return _page("console.html", {"channel": channel_path})


class StaticPage(Resource):
    """
    An HTML page rendered once at startup.
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


def build_site(
    config: DaemonConfig, clock: IReactorTime, reactor: Any = None
) -> tuple[Site, dict[str, RouteFactory]]:
    """
    @return: the Site and, by route path, the Autobahn factory serving it.
    """
    root = _NoIndexResource()
    if config.demo_page:
        root.putChild(b"", StaticPage(demo_page(config)))
    factories: dict[str, RouteFactory] = {}
    for route in config.routes:
        factory = RouteFactory(route, clock=clock, reactor=reactor)
        factories[route.path] = factory
        _put(root, route.path, WebSocketResource(factory))
    operator = config.operator
    if operator is not None and config.operator_queue is not None:
        channel = OperatorChannelFactory(config.operator_queue, dict(operator.tokens),
                                         config.protocol, reactor=reactor)
        _put(root, operator.path, WebSocketResource(channel))
        _put(root, operator.console_path, StaticPage(console_page(operator.path)))
    site = Site(root)
    site.displayTracebacks = False
    return site, factories
