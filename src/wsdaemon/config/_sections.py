"""
Building each section's settings from the parsed file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock

from wsdaemon.config._credentials import expand_endpoint, read_secrets
from wsdaemon.config._identity_keys import IDENTITY_KEYS, identity_policy
from wsdaemon.config._model import (
    AdminSettings,
    ConfigError,
    ProtocolSettings,
    RouteConfig,
    StrategySpec,
)
from wsdaemon.config._reader import ROUTE_PREFIX, _Reader
from wsdaemon.config._values import _PROTOCOL_KEYS, _count_in, _seconds, _size
from wsdaemon.endpoints import listen_interface
from wsdaemon.interfaces import IOptionCheck, IReplyStrategy, IStrategyFactory
from wsdaemon.spelling import did_you_mean
from wsdaemon.strategies.api import OptionContext, OptionError, StrategyContext
from wsdaemon.strategies.registry import StrategyRegistry, UnknownStrategyError

#: Where the web pages' scripts and style sheets are served.
ASSETS_PATH = "/_wsdaemon"
ADMIN_SECTION = "admin"
#: A URL path of one or more non-empty segments (routes, a component's paths).
#: Matched whole (fullmatch): `$` would accept a final newline.
URL_PATH = re.compile(r"(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)+")
_ADMIN_KEYS = {"listen", "api_keys", "api_keys_file", "max_body", "request_timeout",
               "max_connections", "allowed_hosts"}
#: Host names the admin API always answers to.
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_ROUTE_KEYS = {"strategy"}


def _protocol_settings(
    reader: _Reader, section: str, base: ProtocolSettings
) -> ProtocolSettings:
    values: dict[str, Any] = {}
    for key, parse in _PROTOCOL_KEYS.items():
        if key in reader.parser[section]:
            values[key] = reader.convert(section, key, parse)
    origins = base.origins
    if "allowed_origins" in values:
        try:
            origins = origins.with_patterns(values.pop("allowed_origins"))
        except ValueError as e:
            raise reader.error(section, "allowed_origins", str(e)) from None
    if "allow_missing_origin" in values:
        origins = origins.with_allow_missing(values.pop("allow_missing_origin"))
    identity = identity_policy(reader, section, base.identity)
    settings = replace(base, origins=origins, identity=identity, **values)
    if settings.max_frame_size > settings.max_message_size:
        raise reader.error(
            section, "max_frame_size",
            f"expected at most max_message_size ({settings.max_message_size}), "
            f"got {settings.max_frame_size}",
        )
    return settings


def _route_path(reader: _Reader, section: str) -> str:
    path = section[len(ROUTE_PREFIX):].strip()
    if path.endswith("/") and path != "/":
        path = path.rstrip("/")
    if not URL_PATH.fullmatch(path):
        raise reader.error(
            section, None,
            "expected a route section named [route:/path] with a URL path of one or more "
            f"non-empty segments, e.g. [route:/echo]; got {path!r}",
        )
    if _reserved(path):
        raise reader.error(section, None, f"{ASSETS_PATH} is where the pages' scripts are "
                                          "served; choose another path")
    return path


def _reserved(path: str) -> bool:
    return path == ASSETS_PATH or path.startswith(ASSETS_PATH + "/")


def _route(
    reader: _Reader,
    section: str,
    path: str,
    protocol: ProtocolSettings,
    registry: StrategyRegistry,
    *,
    sections: frozenset[str],
    clock: IReactorTime | None = None,
) -> RouteConfig:
    if "strategy" not in reader.parser[section]:
        raise reader.error(
            section, "strategy",
            f"missing; expected a strategy name, one of: {', '.join(registry.known_names())}",
        )
    name = reader.parser[section]["strategy"].strip()
    try:
        factory = registry.resolve(name)
    except UnknownStrategyError as e:
        raise reader.error(section, "strategy", str(e)) from None
    options = MappingProxyType({
        key: value
        for key, value in reader.parser[section].items()
        if key not in _ROUTE_KEYS and key not in _PROTOCOL_KEYS and key not in IDENTITY_KEYS
    })
    try:
        checked = _check_options(factory, options, reader.path.parent, path, sections, clock)
    except OptionError as e:
        if e.path is not None:
            where = str(e.path) if e.line is None else f"{e.path}:{e.line}"
            raise reader.error(section, e.key, f"{where}: {e.expected}") from None
        if e.key is not None and e.known is not None:
            # Every key the daemon does not read goes to the strategy: the
            # key meant may be the daemon's (max_conections) or the strategy's.
            hint = did_you_mean(e.key, (*e.known, *_ROUTE_KEYS, *_PROTOCOL_KEYS, *IDENTITY_KEYS))
            takes = ", ".join(e.known) or "no strategy options"
            raise reader.error(section, e.key,
                               f"unknown option{hint}; this strategy takes {takes}") from None
        raise reader.error(section, e.key, e.expected) from None
    except _NotAStrategyError as e:
        raise reader.error(
            section, "strategy",
            f"strategy factory {name!r} returned {e.args[0]!r}, which does not provide "
            "IReplyStrategy",
        ) from None
    except Exception as e:
        # A plugin's own check, or its trial build, failing its own way.
        raise reader.error(section, "strategy",
                           f"cannot build strategy {name!r}: {type(e).__name__}: {e}") from None
    return RouteConfig(path=path, section=section,
                       strategy=StrategySpec(name=name, options=options, checked=checked),
                       protocol=protocol)


class _NotAStrategyError(Exception):
    pass


def _check_options(factory: IStrategyFactory, options: Mapping[str, str], config_dir: Path,
                   route: str, sections: frozenset[str], clock: IReactorTime | None) -> object:
    """
    The factory's own option check; for a factory without one, build a
    strategy on a stopped clock and drop it (nothing it schedules runs).

    @raise OptionError: from the factory.
    """
    if IOptionCheck.providedBy(factory):
        checker: Any = factory
        return checker.check(options, OptionContext(config_dir, route, sections))
    trial = factory.create(options, StrategyContext(clock=clock or Clock(),
                                                    config_dir=config_dir, route=route))
    if not IReplyStrategy.providedBy(trial):
        raise _NotAStrategyError(trial)
    return None


def _admin_settings(reader: _Reader, check_endpoint: Callable[[str], None] | None,
                    override: tuple[str, ...] = ()) -> AdminSettings:
    section = ADMIN_SECTION
    reader.check_keys(section, _ADMIN_KEYS)
    values = reader.parser[section]
    raw = values.get("listen", "tcp:8081:interface=127.0.0.1")
    listen = override or tuple(expand_endpoint(reader, section, "listen", line.strip())
                               for line in raw.splitlines() if line.strip())
    if not listen:
        raise reader.error(section, "listen", "expected one or more endpoint strings")
    if check_endpoint is not None:
        for endpoint in listen:
            try:
                check_endpoint(endpoint)
            except ValueError as e:
                if override:
                    raise ConfigError("--admin-listen", f"{endpoint!r}: {e}") from None
                raise reader.error(section, "listen", f"{endpoint!r}: {e}") from None
    keys = read_secrets(reader, section, "api_keys", "api_keys_file", "API key")
    max_body = 1024 * 1024
    if "max_body" in values:
        max_body = reader.convert(section, "max_body", _size)
    extra: dict[str, Any] = {}
    if "request_timeout" in values:
        extra["request_timeout"] = reader.convert(section, "request_timeout",
                                                  partial(_seconds, allow_zero=False))
    if "max_connections" in values:
        extra["max_connections"] = reader.convert(
            section, "max_connections", partial(_count_in, low=1, high=None))
    hosts = set(_LOOPBACK_HOSTS) | {h for h in map(listen_interface, listen) if h}
    hosts |= {h.lower().strip("[]") for h in values.get("allowed_hosts", "").split()}
    return AdminSettings(listen=listen, api_keys=keys, max_body=max_body,
                         allowed_hosts=frozenset(hosts), **extra)
