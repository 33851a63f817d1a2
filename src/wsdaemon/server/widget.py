"""
The embeddable chat widget's files (issue 23): C{/_wsdaemon/widget.js}, the
one script a site's page includes, and the modules and style sheet it
imports from C{/_wsdaemon/widget/}; and C{/_wsdaemon/shared/}, the modules
the widget and the operators' inbox both import (the link rule).

They are loaded by pages of other origins: the modules through C{import()},
which needs CORS (C{Access-Control-Allow-Origin: *}; they hold nothing
secret, and the visitor's identity travels in the WebSocket handshake, not
in these requests), and all of them under a page's own Content-Security-
Policy, which then names this daemon in C{script-src}, C{style-src} and
C{connect-src}.
"""

from __future__ import annotations

from html import escape
from importlib.resources import files

from twisted.web.resource import Resource
from twisted.web.server import Request

from wsdaemon.config import ASSETS_PATH, DaemonConfig
from wsdaemon.pages import NoIndexResource

__all__ = ["SHARED_MODULES", "WIDGET_MODULES", "WidgetAsset", "widget_tag", "widget_assets"]

#: What C{/_wsdaemon/widget/} serves, from C{static/widget/}.
WIDGET_MODULES = ("app.js", "api.js", "connection.js", "thread.js", "view.js", "offline.js",
                  "dom.js", "preview.js", "typing.js", "texts.js", "saved.js", "widget.css")
#: What C{/_wsdaemon/shared/} serves, from C{static/shared/}: modules both the
#: widget (other sites' pages, so with CORS) and the inbox import.
SHARED_MODULES = ("links.js",)
_TYPES = {".js": b"text/javascript; charset=utf-8", ".css": b"text/css; charset=utf-8"}
#: Browsers may keep them a few minutes: a page view loads fourteen files.
_CACHE = b"public, max-age=300"


class WidgetAsset(Resource):
    """
    One of the widget's files, loadable by any origin's page.
    """

    isLeaf = True

    def __init__(self, body: bytes, content_type: bytes) -> None:
        super().__init__()
        self._body = body
        self._type = content_type

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", self._type)
        request.setHeader(b"cache-control", _CACHE)
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"access-control-allow-origin", b"*")
        request.setHeader(b"cross-origin-resource-policy", b"cross-origin")
        request.setHeader(b"referrer-policy", b"no-referrer")
        return self._body

    render_HEAD = render_GET


def _asset(name: str, folder: str = "widget") -> WidgetAsset:
    body = files("wsdaemon").joinpath(f"static/{folder}/{name}").read_bytes()
    return WidgetAsset(body, _TYPES[name[name.rindex("."):]])


def widget_assets(assets: Resource, folder: Resource) -> None:
    """
    Put C{widget.js} in C{assets} (the folder at L{ASSETS_PATH}), the
    modules in C{folder}, mounted there as C{widget}, and the shared modules
    in a folder mounted as C{shared}.
    """
    assets.putChild(b"widget.js", _asset("widget.js"))
    for name in WIDGET_MODULES:
        folder.putChild(name.encode(), _asset(name))
    assets.putChild(b"widget", folder)
    shared = NoIndexResource()
    for name in SHARED_MODULES:
        shared.putChild(name.encode(), _asset(name, "shared"))
    assets.putChild(b"shared", shared)


def widget_tag(config: DaemonConfig) -> str:
    """
    @return: the tag that embeds the widget for the config's first route
        served by conversations (C{strategy = operator}, which the config
        accepts only with an C{[operator]} section), or an empty string if
        there is none.
    """
    for route in config.routes:
        if route.strategy_name == "operator":
            return (f'<script src="{ASSETS_PATH}/widget.js" data-route="{escape(route.path)}" '
                    'data-color="#0f5f58" data-title="Acme Shoes support" async></script>')
    return ""
