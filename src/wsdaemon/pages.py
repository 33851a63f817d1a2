"""
Pages rendered once from the package's files (C{static/}): what the web root
serves and what a component contributes to it (the operators' web inbox, the
embeddable chat widget's files).

Here, below every layer that serves a page, so that a component mounts its
own pages without reaching into L{wsdaemon.server}.
"""

from __future__ import annotations

import json
from importlib.resources import files

from twisted.web.resource import Resource
from twisted.web.server import Request

__all__ = ["ASSET_TYPES", "CONTENT_SECURITY_POLICY", "SHARED_MODULES", "WIDGET_MODULES",
           "NoIndexResource", "StaticPage", "WidgetAsset", "inbox_assets", "render_page",
           "security_headers", "widget_assets"]

#: The content types of the pages' scripts and style sheets, by suffix.
ASSET_TYPES = {".js": b"text/javascript; charset=utf-8", ".css": b"text/css; charset=utf-8"}
#: Scripts and styles only from our own files (no inline script runs, so an
#: injected one would not either); WebSockets to this origin; never framed.
CONTENT_SECURITY_POLICY = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    b"img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def render_page(name: str, data: object) -> bytes:
    """
    @param name: the template under C{static/}; its C{__DATA__} is replaced.
    @return: the page, with C{data} as JSON in its data block.
    """
    template = files("wsdaemon").joinpath(f"static/{name}").read_text(encoding="utf-8")
    # Inside <script>, "</" and "<!--" must not appear literally.
    data_json = json.dumps(data).replace("<", "\\u003c")
    return template.replace("__DATA__", data_json).encode("utf-8")


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


class NoIndexResource(Resource):
    """
    An inner path segment: has children, answers 404 itself.
    """

    def render(self, request: Request) -> bytes:
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"Not found\n"


def inbox_assets() -> Resource:
    """
    @return: the operators' web inbox's modules and style sheets (static/inbox/),
        served at the assets' path + C{/inbox} with the conversations.
    """
    folder = NoIndexResource()
    for entry in files("wsdaemon").joinpath("static/inbox").iterdir():
        suffix = entry.name[entry.name.rfind("."):]
        if suffix in ASSET_TYPES:
            folder.putChild(entry.name.encode(), StaticPage(entry.read_bytes(),
                                                            ASSET_TYPES[suffix]))
    return folder


#: The chat widget's modules (issue 23), from C{static/widget/}, served at
#: the assets' path + C{/widget/}; C{widget.js}, the one script a site's page
#: includes, at the assets' path.
WIDGET_MODULES = ("app.js", "api.js", "connection.js", "thread.js", "view.js", "offline.js",
                  "dom.js", "preview.js", "typing.js", "texts.js", "saved.js", "widget.css")
#: Modules both the widget (other sites' pages, so with CORS) and the inbox
#: import (the link rule), from C{static/shared/}, at the assets' path +
#: C{/shared/}.
SHARED_MODULES = ("links.js",)
#: Browsers may keep the widget's files a few minutes: a page view loads fourteen.
_WIDGET_CACHE = b"public, max-age=300"


class WidgetAsset(Resource):
    """
    One of the widget's files, loadable by any origin's page: the modules
    through C{import()}, which needs CORS (C{Access-Control-Allow-Origin:
    *}; they hold nothing secret, and the visitor's identity travels in the
    WebSocket handshake, not in these requests), all of them under the
    embedding page's own Content-Security-Policy (which then names this
    daemon in C{script-src}, C{style-src} and C{connect-src}).
    """

    isLeaf = True

    def __init__(self, body: bytes, content_type: bytes) -> None:
        super().__init__()
        self._body = body
        self._type = content_type

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", self._type)
        request.setHeader(b"cache-control", _WIDGET_CACHE)
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"access-control-allow-origin", b"*")
        request.setHeader(b"cross-origin-resource-policy", b"cross-origin")
        request.setHeader(b"referrer-policy", b"no-referrer")
        return self._body

    render_HEAD = render_GET


def _widget_file(name: str, folder: str = "widget") -> WidgetAsset:
    body = files("wsdaemon").joinpath(f"static/{folder}/{name}").read_bytes()
    return WidgetAsset(body, ASSET_TYPES[name[name.rindex("."):]])


def widget_assets(under: str) -> dict[str, Resource]:
    """
    @param under: the assets' path (C{/_wsdaemon}).
    @return: the widget's files by the path each is mounted at:
        C{widget.js}, the folder of its modules (C{widget/}) and the
        folder of the modules it shares with the inbox (C{shared/}).
    """
    modules = NoIndexResource()
    for name in WIDGET_MODULES:
        modules.putChild(name.encode(), _widget_file(name))
    shared = NoIndexResource()
    for name in SHARED_MODULES:
        shared.putChild(name.encode(), _widget_file(name, "shared"))
    return {f"{under}/widget.js": _widget_file("widget.js"), f"{under}/widget": modules,
            f"{under}/shared": shared}
