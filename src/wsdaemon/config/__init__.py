"""
Reading the INI file into immutable values.

All validation happens here, once: every later part of the daemon works on
L{DaemonConfig} and never sees a raw string. Every error is a L{ConfigError}
naming the file, the line where it can, the section, the key and what was
expected.

A component's own section (C{[operator]}) is read by the parser the
component provides (L{wsdaemon.interfaces.ISectionParser}, handed over by
the entry point: L{wsdaemon.components.SECTIONS}), through a
L{SectionView} of the section; what it returns is kept in
L{DaemonConfig.sections}, by section name.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from twisted.internet.interfaces import IReactorTime

from wsdaemon.config._broker import BROKER_SECTION, broker_settings
from wsdaemon.config._credentials import expand_endpoint, refuse_exposed_examples
from wsdaemon.config._identity_keys import IDENTITY_KEYS
from wsdaemon.config._model import (
    MODES,
    AdminSettings,
    ConfigError,
    DaemonConfig,
    IdentityPolicy,
    JwtSettings,
    ProtocolSettings,
    RouteConfig,
    StrategySpec,
)
from wsdaemon.config._reader import ROUTE_PREFIX, _parse, _read_file, _Reader
from wsdaemon.config._sections import (
    ADMIN_SECTION,
    ASSETS_PATH,
    URL_PATH,
    _admin_settings,
    _protocol_settings,
    _route,
    _route_path,
)
from wsdaemon.config._services import BrokerSettings
from wsdaemon.config._values import _PROTOCOL_KEYS, _bool, _count, _count_in, _seconds, _size
from wsdaemon.config._view import SectionView
from wsdaemon.cores import usable_cores
from wsdaemon.forwarded import parse_trusted_proxies
from wsdaemon.interfaces import ISectionParser, SectionContext, SectionSettings
from wsdaemon.spelling import did_you_mean
from wsdaemon.strategies.registry import StrategyRegistry

__all__ = [
    "ASSETS_PATH",
    "BUILTIN_SECTIONS",
    "URL_PATH",
    "MODES",
    "AdminSettings",
    "BrokerSettings",
    "ConfigError",
    "DaemonConfig",
    "IdentityPolicy",
    "JwtSettings",
    "ProtocolSettings",
    "RouteConfig",
    "SectionView",
    "StrategySpec",
    "builtin_sections",
    "load_config",
    "parse_bool",
    "parse_count",
    "parse_count_in",
    "parse_seconds",
    "parse_size",
    "refuse_exposed_examples",
]

# What a component's section parser may use to read its values: each takes
# the raw string and returns the value or raises ValueError saying what was
# expected (L{SectionView.convert} turns that into the error naming the key).
parse_bool = _bool
parse_count = _count
parse_count_in = _count_in
parse_seconds = _seconds
parse_size = _size

#: The component sections a config is read with when the caller names none
#: (tests, tools): section -> "module:attribute" of its parser, imported
#: lazily (the entry point hands the same over: L{wsdaemon.components.SECTIONS}).
BUILTIN_SECTIONS = {"operator": "wsdaemon.support.settings:OperatorSection"}

MAIN_SECTION = "wsdaemon"
#: The most worker processes one daemon runs.
MAX_WORKERS = 256
PROTOCOL_SECTION = "protocol"
_MAIN_KEYS = {"listen", "demo_page", "max_connections_total", "max_connections_per_ip", "workers",
              "trusted_proxies", "log_every_request", "log_level"}
_SECTIONS = (MAIN_SECTION, PROTOCOL_SECTION, ADMIN_SECTION, BROKER_SECTION)


#: C{[wsdaemon] log_level}'s values, lowest first (L{wsdaemon.server.loglevel}).
LOG_LEVELS = ("debug", "info", "warn", "error", "critical")


def _log_level(reader: _Reader) -> str:
    values = reader.parser[MAIN_SECTION]
    if "log_level" not in values:
        return "info"
    raw = values["log_level"].strip().lower()
    if raw not in LOG_LEVELS:
        raise reader.error(MAIN_SECTION, "log_level",
                           f"expected one of {', '.join(LOG_LEVELS)}, got "
                           f"{values['log_level'].strip()!r}{did_you_mean(raw, LOG_LEVELS)}")
    return raw


def _unknown_section(reader: _Reader, section: str, known: Sequence[str]) -> ConfigError:
    # [rout:/chat], [route/chat], [/chat]: the route section it may have meant.
    slash = section.find("/")
    route = (ROUTE_PREFIX + section[slash:],) if slash >= 0 else ()
    return reader.error(
        section, None,
        f"unknown section{did_you_mean(section, (*known, *route), '[{}]')}; expected "
        f"{', '.join(f'[{name}]' for name in known)} or [{ROUTE_PREFIX}/path]",
    )


def builtin_sections() -> dict[str, ISectionParser]:
    """
    @return: the parsers of L{BUILTIN_SECTIONS}, by section.
    """
    parsers: dict[str, ISectionParser] = {}
    for name, spec in BUILTIN_SECTIONS.items():
        module, _, attribute = spec.partition(":")
        parsers[name] = getattr(importlib.import_module(module), attribute)()
    return parsers


def load_config(
    path: Path | str,
    *,
    registry: StrategyRegistry | None = None,
    listen_override: Sequence[str] = (),
    admin_listen_override: Sequence[str] = (),
    check_endpoint: Callable[[str], None] | None = None,
    clock: IReactorTime | None = None,
    workers_override: str | None = None,
    environ: Mapping[str, str] | None = None,
    sections: Mapping[str, ISectionParser] | None = None,
) -> DaemonConfig:
    """
    Read and validate the daemon's config into values. Nothing is built
    and nothing starts: L{wsdaemon.server.assembly} does that.

    @param registry: finds each route's strategy factory, whose option
        check validates the route's options.
    @param listen_override: endpoint strings replacing C{[wsdaemon] listen}.
    @param admin_listen_override: endpoint strings replacing C{[admin] listen}.
    @param check_endpoint: validates one endpoint string, raising
        ValueError with the reason (see L{wsdaemon.endpoints}).
    @param clock: only for factories without an option check, which are
        checked by building one strategy on it (default: a stopped clock).
    @param workers_override: C{--workers} (a count or C{auto}), replacing
        C{[wsdaemon] workers}.
    @param environ: where C{${CREDENTIALS_DIRECTORY}} (systemd's
        credentials) is looked up; default: this process's environment.
    @param sections: the components' sections, by name, and their parsers
        (default: L{builtin_sections}).

    @raise ConfigError: on the first mistake found.
    """
    path = Path(path)
    text = _read_file(path)
    parser = _parse(path, text)
    reader = _Reader(path, text, parser, os.environ if environ is None else environ)
    registry = registry if registry is not None else StrategyRegistry()
    parsers = builtin_sections() if sections is None else dict(sections)
    known = (*_SECTIONS, *parsers)

    route_sections = []
    for section in parser.sections():
        if section in known:
            continue
        if section.startswith(ROUTE_PREFIX):
            route_sections.append(section)
            continue
        raise _unknown_section(reader, section, known)
    if MAIN_SECTION not in parser:
        raise ConfigError(path, f"missing section [{MAIN_SECTION}]")
    reader.check_keys(MAIN_SECTION, _MAIN_KEYS)

    if listen_override:
        listen = tuple(listen_override)
        listen_source: tuple[str, str | None] = ("command line", None)
    else:
        raw = parser[MAIN_SECTION].get("listen", "")
        listen = tuple(expand_endpoint(reader, MAIN_SECTION, "listen", line.strip())
                       for line in raw.splitlines() if line.strip())
        listen_source = (MAIN_SECTION, "listen")
        if not listen:
            raise reader.error(
                MAIN_SECTION, "listen",
                "missing; expected one or more Twisted endpoint strings, one per line, "
                "e.g. tcp:8080:interface=127.0.0.1",
            )
    if check_endpoint is not None:
        for endpoint in listen:
            try:
                check_endpoint(endpoint)
            except ValueError as e:
                if listen_source[1] is None:
                    raise ConfigError("--listen", f"{endpoint!r}: {e}") from None
                raise reader.error(MAIN_SECTION, "listen", f"{endpoint!r}: {e}") from None

    demo_page = True
    if "demo_page" in parser[MAIN_SECTION]:
        demo_page = reader.convert(MAIN_SECTION, "demo_page", _bool)
    caps = {key: reader.convert(MAIN_SECTION, key, _count)
            for key in ("max_connections_total", "max_connections_per_ip")
            if key in parser[MAIN_SECTION]}
    log_every_request = False
    if "log_every_request" in parser[MAIN_SECTION]:
        log_every_request = reader.convert(MAIN_SECTION, "log_every_request", _bool)
    log_level = _log_level(reader)
    trusted_proxies: tuple[Any, ...] = ()
    if "trusted_proxies" in parser[MAIN_SECTION]:
        trusted_proxies = reader.convert(MAIN_SECTION, "trusted_proxies", parse_trusted_proxies)
    if workers_override is not None:
        try:
            caps["workers"] = _workers(workers_override)
        except ValueError as e:
            raise ConfigError("--workers", str(e)) from None
    elif "workers" in parser[MAIN_SECTION]:
        caps["workers"] = reader.convert(MAIN_SECTION, "workers", _workers)

    defaults = ProtocolSettings()
    if PROTOCOL_SECTION in parser:
        reader.check_keys(PROTOCOL_SECTION, set(_PROTOCOL_KEYS) | IDENTITY_KEYS)
        defaults = _protocol_settings(reader, PROTOCOL_SECTION, defaults)

    broker = broker_settings(reader) if BROKER_SECTION in parser else None
    admin = (_admin_settings(reader, check_endpoint, tuple(admin_listen_override))
             if ADMIN_SECTION in parser else None)
    if admin_listen_override and admin is None:
        raise ConfigError("--admin-listen", "the config has no [admin] section to move")
    if admin is not None:
        refuse_exposed_examples(SectionView(reader, ADMIN_SECTION), "api_keys", admin.api_keys,
                                admin.listen)

    if not route_sections:
        raise ConfigError(
            path, f"no routes; expected at least one [{ROUTE_PREFIX}/path] section"
        )
    routes: list[RouteConfig] = []
    seen: dict[str, str] = {}
    for section in route_sections:
        route_path = _route_path(reader, section)
        if route_path in seen:
            raise reader.error(
                section, None, f"duplicate route {route_path!r} (also [{seen[route_path]}])"
            )
        for other in seen:
            inner, outer = sorted((route_path, other), key=len, reverse=True)
            if inner.startswith(outer + "/"):
                raise reader.error(
                    section, None,
                    f"route {inner!r} lies inside route {outer!r}; a WebSocket route has "
                    "no sub-paths",
                )
        seen[route_path] = section
        protocol = _protocol_settings(reader, section, defaults)
        routes.append(_route(reader, section, route_path, protocol, registry,
                             sections=frozenset(reader.parser.sections()), clock=clock))
    context = SectionContext(listen=listen, routes=tuple(r.path for r in routes),
                             shared=broker is not None)
    found: dict[str, SectionSettings] = {
        name: section_parser.parse(SectionView(reader, name), context)
        for name, section_parser in parsers.items() if name in parser}

    _check_workers(reader, caps.get("workers", 1), listen, routes, broker, workers_override)
    return DaemonConfig(path=path, listen=listen, demo_page=demo_page, routes=tuple(routes),
                        protocol=defaults, sections=MappingProxyType(found), admin=admin,
                        broker=broker, trusted_proxies=trusted_proxies,
                        log_every_request=log_every_request, log_level=log_level, **caps)



def _workers(raw: str) -> int:
    """
    @return: a number of worker processes; C{auto}: one per core this
        process may use (its CPU affinity, capped by a cgroup CPU quota).
    """
    value = raw.strip().lower()
    if value == "auto":
        return min(MAX_WORKERS, usable_cores().usable)
    try:
        count = int(value)
    except ValueError:
        raise ValueError(f"expected a number of worker processes (1 or more) or auto, "
                         f"got {raw!r}") from None
    if not 1 <= count <= MAX_WORKERS:
        raise ValueError(f"expected 1 to {MAX_WORKERS} worker processes or auto, got {raw!r}")
    return count


def _check_workers(reader: _Reader, workers: int, listen: Sequence[str],
                   routes: Sequence[RouteConfig], broker: BrokerSettings | None,
                   override: str | None) -> None:
    """
    Refuse what several workers cannot do, naming the fix.
    """
    if workers == 1:
        return

    def refuse(message: str) -> ConfigError:
        if override is not None:
            return ConfigError("--workers", message)
        return reader.error(MAIN_SECTION, "workers", message)

    operator_routes = [r.path for r in routes if r.strategy.name == "operator"]
    if operator_routes and broker is None:
        raise refuse(f"{workers} workers cannot share one embedded conversation store "
                     f"(route {operator_routes[0]}): add [broker] backend = redis, or set "
                     "workers = 1")
    for endpoint in listen:
        if endpoint.split(":", 1)[0] not in ("tcp", "tcp6", "unix", "systemd"):
            raise refuse(f"{endpoint!r}: with several workers, listen on tcp:, tcp6:, unix: or "
                         "systemd: (terminate TLS in front, e.g. HAProxy), or set workers = 1")
