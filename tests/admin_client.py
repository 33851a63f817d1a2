"""
A small client of the admin API for tests (urllib: independent of the
daemon's own HTTP code).
"""

from __future__ import annotations

import json
import textwrap
import urllib.error
import urllib.request
from typing import Any

import pytest


def admin_config(port: int, key: str, routes: str, wsdaemon: str = "") -> str:
    """
    A daemon config for tests of the admin API: clients on any free port,
    the admin API on C{port} with the key C{tests:KEY}, clients naming
    themselves (C{identity = claimed}), then C{routes} (INI text, dedented).

    @param wsdaemon: more lines for the C{[wsdaemon]} section.
    """
    return (f"[wsdaemon]\nlisten = tcp:0:interface=127.0.0.1\n{wsdaemon}\n"
            f"[protocol]\nidentity = claimed\n\n"
            f"[admin]\nlisten = tcp:{port}:interface=127.0.0.1\napi_keys = tests:{key}\n\n"
            f"{textwrap.dedent(routes).strip()}\n")


class Admin:
    def __init__(self, port: int, key: str) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.key = key

    def call(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
             key: str | None = None) -> Any:
        """
        @return: the JSON answer.
        @raise urllib.error.HTTPError: for an error status.
        """
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(
            self.base + path, data=data, method=method,
            headers={"Authorization": f"Bearer {key if key is not None else self.key}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())

    def call_text(self, method: str, path: str) -> str:
        """
        @return: a text answer (e.g. /metrics).
        """
        request = urllib.request.Request(self.base + path, method=method,
                                         headers={"Authorization": f"Bearer {self.key}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            text: str = answer.read().decode("utf-8")
            return text

    def error(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
              key: str | None = None) -> tuple[int, str]:
        """
        @return: the status and the reason of a call that must fail.
        """
        with pytest.raises(urllib.error.HTTPError) as failure:
            self.call(method, path, body, raw, key)
        return failure.value.code, json.loads(failure.value.read())["error"]
