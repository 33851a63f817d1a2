"""
The C{[broker]} section: the embedded store (one daemon) or Redis (several
daemons forming one service).
"""

from __future__ import annotations

from functools import partial
from urllib.parse import unquote, urlsplit

from wsdaemon.config._reader import _Reader
from wsdaemon.config._services import BrokerSettings
from wsdaemon.config._values import _seconds
from wsdaemon.spelling import did_you_mean

__all__ = ["BROKER_SECTION", "broker_settings"]

BROKER_SECTION = "broker"
_KEYS = {"backend", "url", "prefix", "timeout", "heartbeat", "sweep_interval", "daemon_id"}
_REDIS_ONLY = _KEYS - {"backend"}
_BACKENDS = ("embedded", "redis")


def _redis_url(value: str) -> dict[str, object]:
    """
    @raise ValueError: naming what was expected.
    """
    expected = "expected redis://[:password@]host[:port][/db], e.g. redis://127.0.0.1:6379/0"
    try:
        parts = urlsplit(value)
        port = parts.port or 6379
    except ValueError:
        raise ValueError(f"{expected}, got {value!r}") from None
    if parts.scheme != "redis" or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"{expected}, got {value!r}")
    path = parts.path.strip("/")
    if path and not (path.isascii() and path.isdigit()):
        raise ValueError(f"the database must be a number, got {path!r}; {expected}")
    return {"host": parts.hostname, "port": port, "db": int(path or 0),
            "password": unquote(parts.password) if parts.password else None}


def broker_settings(reader: _Reader) -> BrokerSettings | None:
    """
    @return: the Redis settings, or None for the embedded store.
    """
    section = BROKER_SECTION
    reader.check_keys(section, _KEYS)
    values = reader.parser[section]
    backend = values.get("backend", "embedded").strip()
    if backend not in _BACKENDS:
        raise reader.error(section, "backend", f"expected embedded or redis, got {backend!r}"
                                               f"{did_you_mean(backend, _BACKENDS)}")
    if backend == "embedded":
        extra = sorted(_REDIS_ONLY & set(values))
        if extra:
            raise reader.error(section, extra[0], "only used with backend = redis")
        return None
    url = values.get("url", "").strip()
    if not url:
        raise reader.error(section, "url", "missing; expected redis://host:port/db")
    try:
        address = _redis_url(url)
    except ValueError as e:
        raise reader.error(section, "url", str(e)) from None
    prefix = values.get("prefix", "wsdaemon:").strip()
    if not prefix or any(c.isspace() for c in prefix):
        raise reader.error(section, "prefix", f"expected a key prefix without spaces, such as "
                                              f"wsdaemon:, got {prefix!r}")
    timings: dict[str, float] = {}
    for key in ("timeout", "heartbeat", "sweep_interval"):
        if key in values:
            timings[key] = reader.convert(section, key, partial(_seconds, allow_zero=False))
    daemon_id = values.get("daemon_id", "").strip()
    if any(c.isspace() for c in daemon_id):
        raise reader.error(section, "daemon_id", f"expected a name without spaces, got "
                                                 f"{daemon_id!r}")
    return BrokerSettings(url=url, prefix=prefix, daemon_id=daemon_id,
                          **address, **timings)  # type: ignore[arg-type]
