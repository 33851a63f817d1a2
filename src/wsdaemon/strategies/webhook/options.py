"""
A webhook route's options, checked when the config is read: values only.
The secrets are read from C{secret_file} here, so a missing or malformed
file is a config error, not a failure on the first connection.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from wsdaemon.strategies import OptionError, reject_unknown_options

__all__ = ["EVENTS", "WebhookSettings", "check_options", "trust_root"]

KiB = 1024
#: The events a route POSTs, each to C{url} unless C{url_<event>} says otherwise.
EVENTS = ("connect", "message", "disconnect")
#: The most secrets a secret file may hold (two suffice for a rotation).
MAX_SECRETS = 8
_NUMBER = re.compile(r"([0-9]+)\s*([a-z]*)")
_SIZES = {"": 1, "b": 1, "k": KiB, "kb": KiB, "kib": KiB, "m": KiB * KiB, "mb": KiB * KiB,
          "mib": KiB * KiB}
#: Headers that carry the handshake itself: never passed.
_NEVER_PASS = {"sec-websocket-key", "sec-websocket-accept", "upgrade", "connection"}
_OPTIONS = {"url", "url_connect", "url_message", "url_disconnect", "secret_file",
            "pass_headers", "timeout", "connect_timeout", "retries", "retry_backoff",
            "max_queue", "max_response", "max_state", "max_requests", "ca_file"}


@dataclass(frozen=True)
class WebhookSettings:
    """
    A webhook route's checked options.

    @ivar urls: event name -> the URL it is POSTed to.
    @ivar secrets: the signing keys (decoded), every one signing each request.
    @ivar timeout: seconds one attempt may take, answer read included.
    @ivar retries: further attempts for a request that never reached the
        backend (its connection refused); none for one that did.
    @ivar max_queue: messages of one connection waiting behind the one in
        flight before the client stops being read.
    @ivar max_requests: requests of the route in flight to the backend at
        once (each connection has at most one); more wait their turn, in
        order, and the pool keeps as many connections alive.
    """

    urls: tuple[tuple[str, str], ...]
    secrets: tuple[bytes, ...] = field(default=(), repr=False)
    pass_headers: tuple[str, ...] = ()
    timeout: float = 10.0
    connect_timeout: float = 3.0
    retries: int = 2
    retry_backoff: float = 0.2
    max_queue: int = 32
    max_response: int = 256 * KiB
    max_state: int = 4 * KiB
    max_requests: int = 256
    #: PEM certificates trusted for an https backend (None: the system's).
    ca_pem: bytes | None = field(default=None, repr=False)

    def url(self, event: str) -> str:
        """@return: where C{event} is POSTed."""
        return dict(self.urls)[event]


def _whole(options: Mapping[str, str], key: str, default: int, low: int, high: int,
           what: str) -> int:
    raw = options.get(key)
    if raw is None:
        return default
    match = _NUMBER.fullmatch(raw.strip().lower())
    unit = None if match is None else _SIZES.get(match.group(2))
    if match is None or unit is None or (what != "bytes" and match.group(2)):
        raise OptionError(key, f"expected {what} from {low} to {high}, got {raw!r}")
    value = int(match.group(1)) * unit
    if not low <= value <= high:
        raise OptionError(key, f"expected {what} from {low} to {high}, got {raw!r}")
    return value


def _seconds(options: Mapping[str, str], key: str, default: float, low: float,
             high: float) -> float:
    raw = options.get(key)
    if raw is None:
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        value = -1.0
    if not low <= value <= high:
        raise OptionError(key, f"expected seconds from {low:g} to {high:g}, got {raw!r}")
    return value


def _url(key: str, raw: str) -> str:
    url = raw.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OptionError(key, f"expected an http:// or https:// URL, got {raw!r}")
    if not url.isascii():
        # An international host name or path, as the URI the request names
        # (IDNA, percent-encoding), worked out once here.
        from hyperlink import URL

        try:
            url = URL.from_text(url).to_uri().to_text()
        except Exception:
            raise OptionError(key, f"expected a URL, got {raw!r}") from None
    if any(c in url for c in " \t\r\n"):
        raise OptionError(key, f"a URL has no spaces, got {raw!r}")
    return url


def read_secrets(path: Path) -> tuple[bytes, ...]:
    """
    @return: the keys in C{path}: one C{whsec_<base64>} a line; blank lines
        and lines starting with C{#} are skipped.
    @raise OptionError: naming the line that is wrong (never its text).
    """
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise OptionError("secret_file", f"cannot read {path}: {type(e).__name__}",
                          path=path) from None
    keys: list[bytes] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("whsec_"):
            raise OptionError("secret_file", "expected whsec_ and the key in base64",
                              path=path, line=number)
        try:
            key = base64.b64decode(line[6:], validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) < 16:
            raise OptionError("secret_file", "expected whsec_ and at least 16 bytes in base64",
                              path=path, line=number)
        keys.append(key)
    if not keys:
        raise OptionError("secret_file", f"{path} holds no secret (whsec_..., one a line)",
                          path=path)
    if len(keys) > MAX_SECRETS:
        raise OptionError("secret_file", f"expected at most {MAX_SECRETS} secrets", path=path)
    return tuple(keys)


def check_options(options: Mapping[str, str], config_dir: Path) -> WebhookSettings:
    """
    @return: the route's options, checked (its secrets read).
    @raise OptionError: naming the option that is wrong.
    """
    reject_unknown_options(options, _OPTIONS)
    base = options.get("url")
    urls = []
    for event in EVENTS:
        key = f"url_{event}"
        raw = options.get(key, base)
        if raw is None:
            raise OptionError("url", "expected the backend's URL, e.g. "
                                     "url = http://127.0.0.1:8000/ws-events")
        urls.append((event, _url(key if key in options else "url", raw)))
    secret_raw = options.get("secret_file", "").strip()
    if not secret_raw:
        raise OptionError("secret_file", "expected a file of signing secrets (whsec_..., one "
                                         "a line): requests are always signed")
    secrets = read_secrets(Path(config_dir, secret_raw))
    headers = tuple(n.lower() for n in options.get("pass_headers", "").replace(",", " ").split())
    blocked = [n for n in headers if n in _NEVER_PASS]
    if blocked:
        raise OptionError("pass_headers", f"{blocked[0]} belongs to the handshake itself")
    ca_pem = None
    if options.get("ca_file", "").strip():
        ca_path = Path(config_dir, options["ca_file"].strip())
        try:
            ca_pem = ca_path.read_bytes()
        except OSError as e:
            raise OptionError("ca_file", f"cannot read {ca_path}: {e.strerror or e}",
                              path=ca_path) from None
        try:
            trust_root(ca_pem)
        except Exception:
            raise OptionError("ca_file", f"{ca_path}: expected PEM certificates "
                                         "(-----BEGIN CERTIFICATE-----)", path=ca_path) from None
    return WebhookSettings(
        ca_pem=ca_pem,
        urls=tuple(urls), secrets=secrets, pass_headers=headers,
        timeout=_seconds(options, "timeout", 10.0, 0.01, 3600.0),
        connect_timeout=_seconds(options, "connect_timeout", 3.0, 0.01, 600.0),
        retries=_whole(options, "retries", 2, 0, 10, "a number"),
        retry_backoff=_seconds(options, "retry_backoff", 0.2, 0.0, 60.0),
        max_queue=_whole(options, "max_queue", 32, 1, 100_000, "a number"),
        max_requests=_whole(options, "max_requests", 256, 1, 100_000, "a number"),
        max_response=_whole(options, "max_response", 256 * KiB, 1, 64 * KiB * KiB, "bytes"),
        max_state=_whole(options, "max_state", 4 * KiB, 0, 1024 * KiB, "bytes"))


def trust_root(pem: bytes) -> Any:
    """
    @return: the certificates in C{pem}, as a trust root for TLS.
    @raise ValueError: if there is none.
    """
    from twisted.internet.ssl import Certificate, trustRootFromCertificates

    marker = b"-----END CERTIFICATE-----"
    blocks = [block + marker for block in pem.split(marker) if b"-----BEGIN" in block]
    if not blocks:
        raise ValueError("no certificate")
    return trustRootFromCertificates([Certificate.loadPEM(block) for block in blocks])
