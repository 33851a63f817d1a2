"""
A proxy route's options, checked when the config is read: values only,
nothing that runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from wsdaemon.strategies.api import OptionError, reject_unknown_options
from wsdaemon.strategies.proxy.intercept import InterceptError, InterceptRules, load_intercepts

__all__ = ["DEFAULT_PASS", "ProxySettings", "check_options", "trust_root"]

#: Client headers passed on to the upstream unless C{pass_headers} says otherwise.
DEFAULT_PASS = ("authorization", "cookie", "origin", "user-agent")
#: Headers that belong to one hop or to the WebSocket handshake itself.
_NEVER_PASS = {"host", "upgrade", "connection", "sec-websocket-key", "sec-websocket-version",
               "sec-websocket-extensions", "sec-websocket-protocol", "content-length",
               "transfer-encoding", "te", "trailer", "keep-alive", "proxy-authorization"}
MiB = 1024 * 1024


class ProxySettings:
    """
    A proxy route's checked options.
    """

    def __init__(self, upstream: str, pass_headers: tuple[str, ...], record: Path | None,
                 record_max_bytes: int, connect_timeout: float,
                 ca_pem: bytes | None = None, intercepts: InterceptRules | None = None) -> None:
        self.upstream = upstream
        #: The route's interception rules (None: messages go through as they are).
        self.intercepts = intercepts
        #: PEM certificates trusted for the upstream (None: the system's).
        self.ca_pem = ca_pem
        self.pass_headers = pass_headers
        self.record = record
        self.record_max_bytes = record_max_bytes
        self.connect_timeout = connect_timeout


def check_options(options: Mapping[str, str], config_dir: Path) -> ProxySettings:
    """
    @return: the route's options, checked (the CA file read and parsed).
    @raise OptionError: naming the option that is wrong.
    """
    reject_unknown_options(options, {"upstream", "pass_headers", "record", "record_max_bytes",
                                     "connect_timeout", "upstream_ca", "intercept"})
    upstream = options.get("upstream", "").strip()
    parts = urlsplit(upstream)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise OptionError("upstream", "expected the upstream server's URL, ws://host[:port]/"
                                      f"path or wss://..., got {upstream!r}")
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise OptionError("upstream", f"bad port in {upstream!r}") from None
    names = options.get("pass_headers")
    pass_headers = DEFAULT_PASS if names is None else tuple(
        n.lower() for n in names.replace(",", " ").split())
    blocked = [n for n in pass_headers if n in _NEVER_PASS]
    if blocked:
        raise OptionError("pass_headers", f"{blocked[0]} belongs to the handshake itself and "
                                          "cannot be passed on")
    record = None
    if options.get("record", "").strip():
        record = Path(config_dir, options["record"].strip())
    max_bytes = 100 * MiB
    if "record_max_bytes" in options:
        try:
            max_bytes = int(options["record_max_bytes"])
        except ValueError:
            raise OptionError("record_max_bytes", "expected a number of bytes") from None
    timeout = 4.0
    if "connect_timeout" in options:
        try:
            timeout = float(options["connect_timeout"])
        except ValueError:
            timeout = -1.0
        if not 0 < timeout <= 60:
            raise OptionError("connect_timeout", "expected seconds, more than 0 and at most 60")
    ca_pem = None
    if options.get("upstream_ca", "").strip():
        ca_path = Path(config_dir, options["upstream_ca"].strip())
        try:
            ca_pem = ca_path.read_bytes()
        except OSError as e:
            raise OptionError("upstream_ca", f"cannot read {ca_path}: {e.strerror}") from None
        try:
            trust_root(ca_pem)
        except Exception:
            raise OptionError("upstream_ca", f"{ca_path}: expected PEM certificates "
                                             "(-----BEGIN CERTIFICATE-----)") from None
    intercepts = None
    if options.get("intercept", "").strip():
        try:
            intercepts = load_intercepts(Path(config_dir, options["intercept"].strip()))
        except InterceptError as e:
            raise OptionError("intercept", e.why, path=e.path, line=e.line) from None
    return ProxySettings(upstream, pass_headers, record, max_bytes, timeout, ca_pem, intercepts)


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
