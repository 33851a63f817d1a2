"""
Pages rendered once from the package's files (C{static/}): what the web root
serves and what a component contributes to it (the operators' web inbox).

Here, below every layer that serves a page, so that a component mounts its
own pages without reaching into L{wsdaemon.server}.
"""

from __future__ import annotations

import json
from importlib.resources import files

from twisted.web.resource import Resource
from twisted.web.server import Request

__all__ = ["ASSET_TYPES", "CONTENT_SECURITY_POLICY", "NoIndexResource", "StaticPage",
           "inbox_assets", "render_page", "security_headers"]

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
