"""
What every resource of the admin API shares: the API-key check, JSON
answers, and request errors that become them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Request

from wsdaemon.credentials import check_token

__all__ = ["ApiResource", "RequestError", "check_unicode", "json_answer"]


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


class ApiResource(Resource):
    isLeaf = True

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

    def render(self, request: Request) -> bytes | int:
        try:
            result: bytes | int = super().render(request)
            return result
        except RequestError as e:
            return json_answer(request, e.code, {"error": e.message})


def check_unicode(key: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise RequestError(400, f'"{key}" holds a lone surrogate (U+{ord(value[e.start]):04X} '
                                 f"at character {e.start}): not valid Unicode") from None


