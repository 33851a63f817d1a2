"""
What every resource of the admin API shares: the API-key check, JSON
answers, and request errors that become them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from wsdaemon.credentials import check_token

__all__ = ["ApiResource", "ApiRoot", "JsonResource", "RequestError", "check_unicode",
           "json_answer", "json_object", "path_of", "reject_unknown", "request_object",
           "too_big", "whole_number"]

#: The admin API's top-level paths, named in a 404.
PATHS = ("/push", "/clients", "/journal", "/routes", "/connections", "/metrics", "/healthz")


class RequestError(Exception):
    """
    Answered as C{{"error": message}} with the HTTP status C{code}.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def json_answer(request: Request, code: int, body: Mapping[str, Any]) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return (json.dumps(body, ensure_ascii=False) + "\n").encode("utf-8")


def _shown(request: Request) -> str:
    path = (request.path or b"/").decode("utf-8", "replace")
    return json.dumps(path, ensure_ascii=True)[1:-1]  # no control characters echoed


class JsonResource(Resource):
    """
    A leaf of the admin API that answers every error as JSON
    (C{{"error": ...}}): a L{RequestError}, a path below it that it does not
    serve (404), a method it does not take (405, with C{Allow}); never
    Twisted's HTML pages. HEAD is answered where GET is.
    """

    isLeaf = True
    #: Whether paths below this one are served (else they are 404).
    takes_subpaths = False

    def render(self, request: Request) -> bytes | int:
        try:
            if not self.takes_subpaths and path_of(request):
                raise RequestError(404, f"no such path {_shown(request)}; the admin API "
                                        f"serves {', '.join(PATHS)}")
            method = request.method.decode("latin-1")
            allowed = self._allowed()
            if method not in allowed:
                request.setHeader(b"allow", ", ".join(allowed).encode("ascii"))
                return json_answer(request, 405, {
                    "error": f"{json.dumps(method, ensure_ascii=True)[1:-1]} is not allowed "
                             f"on {_shown(request)}; allowed: {', '.join(allowed)}",
                    "allow": allowed})
            if method == "HEAD":
                return self._head(request)
            result: bytes | int = super().render(request)
            return result
        except RequestError as e:
            return json_answer(request, e.code, {"error": e.message})

    def _allowed(self) -> list[str]:
        """
        @return: the methods this resource takes: its C{render_*}, and HEAD
            where it takes GET.
        """
        names = {name[len("render_"):] for name in dir(self)
                 if name.startswith("render_") and name != "render_HEAD"}
        return sorted(names | ({"HEAD"} if "GET" in names else set()))

    def _head(self, request: Request) -> bytes | int:
        """
        GET's headers (its length too) without its body.
        """
        body: bytes | int = self.render_GET(request)  # type: ignore[attr-defined]
        if body is NOT_DONE_YET or not isinstance(body, bytes):
            return body
        request.setHeader(b"content-length", b"%d" % len(body))
        return b""


class NotFound(JsonResource):
    """
    Every path the admin API does not serve: 404, whatever the method.
    """

    def render(self, request: Request) -> bytes:
        return json_answer(request, 404, {"error": f"no such path {_shown(request)}; the "
                                                   f"admin API serves {', '.join(PATHS)}"})


class ApiRoot(Resource):
    """
    The admin API's root: its resources by name, a JSON 404 for any other
    path (the root itself included).
    """

    def getChild(self, path: bytes, request: Request) -> Resource:
        return NotFound()


class ApiResource(JsonResource):
    """
    A leaf of the admin API that may ask for the API key.
    """

    def __init__(self, site: Any) -> None:
        super().__init__()
        #: The admin site (L{wsdaemon.server.admin.AdminSite}): its API keys,
        #: body limit and daemon.
        self.admin = site

    def authorize(self, request: Request) -> None:
        raw = request.getHeader(b"authorization") or b""
        header = raw.decode("latin-1")
        key = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if not key or check_token(key, self.admin.api_keys) is None:
            request.setHeader(b"www-authenticate", b'Bearer realm="wsdaemon"')
            raise RequestError(401, "missing or wrong API key (Authorization: Bearer KEY)")


#: A whole number in a query string: ASCII digits only (C{str.isdigit()}
#: takes "²", which C{int()} then refuses; C{int()} takes "٣" and "１"),
#: and few enough that C{int()} never meets its 4,300-digit limit.
_DIGITS = re.compile(r"[0-9]{1,19}")
#: The largest number L{whole_number} takes (19 digits).
MAX_WHOLE_NUMBER = 10 ** 19 - 1


def whole_number(key: str, value: object, high: int = MAX_WHOLE_NUMBER) -> int:
    """
    @param value: a query parameter (text) or a JSON body's value.
    @return: C{value} as a whole number from 0 to C{high}.
    @raise RequestError: 400 naming C{key} and what it takes.
    """
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise RequestError(400, f'"{key}" must be a whole number from 0 to {high}, in '
                                "ASCII digits")
    return value


def too_big(size: int, route: str, limit: int) -> str:
    """
    @return: why a message of C{size} bytes is not sent on C{route} (a 413).
    """
    return (f"the message is {size} bytes; route {route} sends messages of at most {limit} "
            "bytes (max_message_size)")


def check_unicode(key: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise RequestError(400, f'"{key}" holds a lone surrogate (U+{ord(value[e.start]):04X} '
                                 f"at character {e.start}): not valid Unicode") from None




def json_object(body: bytes, what: str = "body") -> dict[str, Any]:
    """
    @return: C{body} parsed as a JSON object.
    @raise RequestError: 400 saying why it is not one.
    """
    try:
        data = json.loads(body or b"{}")
    except ValueError as e:
        raise RequestError(400, f"{what} is not JSON: {e}") from None
    except RecursionError:
        raise RequestError(400, f"{what} is not usable: JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise RequestError(400, f"{what} must be a JSON object")
    return data


def request_object(request: Request, max_body: int) -> dict[str, Any]:
    """
    @return: the request's body as a JSON object.
    @raise RequestError: 413 past C{max_body}, 400 if it is not one.
    """
    if getattr(request, "oversized", False):
        raise RequestError(413, f"body over {max_body} bytes")
    assert request.content is not None
    return json_object(request.content.read())


def reject_unknown(data: Mapping[str, Any], known: set[str]) -> None:
    """
    @raise RequestError: 400 naming the fields not in C{known}.
    """
    unknown = set(data) - known
    if unknown:
        raise RequestError(400, f"unknown field(s): {', '.join(sorted(unknown))}")


def path_of(request: Request) -> list[bytes]:
    """
    @return: the path segments below the resource.
    """
    return [segment for segment in request.postpath or [] if segment]
