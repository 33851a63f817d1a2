"""
Reading the INI file into immutable values.

All validation happens here, once: every later part of the daemon works on
L{DaemonConfig} and never sees a raw string. Every error is a L{ConfigError}
naming the file, the line where it can, the section, the key and what was
expected.
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any

from twisted.internet.interfaces import IReactorTime

from wsdaemon.credentials import parse_tokens
from wsdaemon.interfaces import IReplyStrategy
from wsdaemon.operators.queue import OperatorQueue, OperatorSettings
from wsdaemon.operators.store import SQLiteStore
from wsdaemon.origin import OriginPolicy
from wsdaemon.registry import StrategyRegistry, UnknownStrategyError
from wsdaemon.strategy import OptionError, StrategyContext

__all__ = [
    "ConfigError",
    "DaemonConfig",
    "ProtocolSettings",
    "RouteConfig",
    "load_config",
]

MAIN_SECTION = "wsdaemon"
PROTOCOL_SECTION = "protocol"
OPERATOR_SECTION = "operator"
ADMIN_SECTION = "admin"
ROUTE_PREFIX = "route:"

_ROUTE_PATH = re.compile(r"^(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)+$")


class ConfigError(Exception):
    """
    The config is wrong; C{str()} is one line a user can act on.
    """

    def __init__(
        self,
        path: Path | str,
        message: str,
        *,
        section: str | None = None,
        key: str | None = None,
        line: int | None = None,
    ) -> None:
        self.path = str(path)
        self.section = section
        self.key = key
        self.line = line
        self.message = message
        where = self.path if line is None else f"{self.path}:{line}"
        if section is not None:
            where += f": [{section}]"
            if key is not None:
                where += f" {key}"
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class ProtocolSettings:
    """
    WebSocket limits and policies for one route.
    """

    max_message_size: int = 65536
    max_frame_size: int = 65536
    open_handshake_timeout: float = 5.0
    close_handshake_timeout: float = 1.0
    auto_ping_interval: float = 30.0
    auto_ping_timeout: float = 10.0
    max_connections: int = 1000
    compression: bool = False
    max_message_rate: float = 1000.0
    max_fragments: int = 1024
    max_outbound_buffer: int = 1024 * 1024
    origins: OriginPolicy = field(default_factory=OriginPolicy.local_only)


@dataclass(frozen=True)
class RouteConfig:
    """
    One URL path, its strategy and its protocol settings.

    @ivar options: the strategy's own options, as given (read-only).
    """

    path: str
    section: str
    strategy_name: str
    strategy: IReplyStrategy
    options: Mapping[str, str]
    protocol: ProtocolSettings


@dataclass(frozen=True)
class AdminSettings:
    """
    The C{[admin]} section: the push API, /clients, /metrics and /healthz.

    @ivar api_keys: key -> name of who holds it.
    """

    listen: tuple[str, ...]
    api_keys: Mapping[str, str]
    max_body: int = 1024 * 1024


@dataclass(frozen=True)
class DaemonConfig:
    """
    The whole daemon's configuration.
    """

    path: Path
    listen: tuple[str, ...]
    demo_page: bool
    routes: tuple[RouteConfig, ...]
    max_connections_total: int = 10000
    max_connections_per_ip: int = 0
    protocol: ProtocolSettings = field(default_factory=ProtocolSettings)
    operator: OperatorSettings | None = None
    operator_queue: OperatorQueue | None = None
    admin: AdminSettings | None = None

    def summary(self) -> str:
        """
        @return: one line naming the listeners, the routes and their strategies.
        """
        routes = ", ".join(f"{r.path} ({r.strategy_name})" for r in self.routes)
        summary = (
            f"{self.path}: OK; listen {', '.join(self.listen)}; "
            f"{len(self.routes)} route(s): {routes}"
        )
        if self.admin is not None:
            summary += (f"; admin API on {', '.join(self.admin.listen)} with "
                        f"{len(self.admin.api_keys)} key(s)")
        if self.operator is not None:
            summary += (f"; operators: {len(self.operator.tokens)} token(s), channel "
                        f"{self.operator.path}, console {self.operator.console_path}, store "
                        f"{self.operator.store_path}")
        return summary


# -- value parsers: each takes the raw string and returns the value or raises
# -- ValueError whose text says what was expected.

_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off"}


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"expected yes or no (true/false, on/off, 1/0), got {raw!r}")


def _size(raw: str) -> int:
    value = raw.strip().lower()
    units = {"kib": 1024, "k": 1024, "mib": 1024 * 1024, "m": 1024 * 1024}
    multiplier = 1
    for suffix, factor in units.items():
        if value.endswith(suffix):
            value, multiplier = value[: -len(suffix)].strip(), factor
            break
    try:
        number = int(value)
    except ValueError:
        raise ValueError(
            f"expected a size in bytes (e.g. 65536, 64KiB, 16MiB), got {raw!r}"
        ) from None
    if number <= 0:
        raise ValueError(f"expected a size greater than 0, got {raw!r}")
    return number * multiplier


def _seconds(raw: str, allow_zero: bool) -> float:
    try:
        number = float(raw.strip())
    except ValueError:
        raise ValueError(f"expected a number of seconds (e.g. 5 or 0.5), got {raw!r}") from None
    if number != number or number in (float("inf"), float("-inf")) or number < 0:
        raise ValueError(f"expected a finite, non-negative number of seconds, got {raw!r}")
    if number == 0 and not allow_zero:
        raise ValueError(f"expected a number of seconds greater than 0, got {raw!r}")
    return number


def _rate(raw: str) -> float:
    try:
        number = float(raw.strip())
    except ValueError:
        raise ValueError(f"expected messages per second (e.g. 100; 0 = no limit), got {raw!r}") \
            from None
    if number != number or number < 0 or number == float("inf"):
        raise ValueError(f"expected a finite number >= 0 of messages per second, got {raw!r}")
    return number


def _count(raw: str) -> int:
    try:
        number = int(raw.strip())
    except ValueError:
        raise ValueError(f"expected a whole number, got {raw!r}") from None
    if number < 0:
        raise ValueError(f"expected a whole number >= 0, got {raw!r}")
    return number


def _words(raw: str) -> list[str]:
    return raw.split()


_PROTOCOL_KEYS: dict[str, Callable[[str], Any]] = {
    "max_message_size": _size,
    "max_frame_size": _size,
    "open_handshake_timeout": lambda raw: _seconds(raw, allow_zero=False),
    "close_handshake_timeout": lambda raw: _seconds(raw, allow_zero=False),
    "auto_ping_interval": lambda raw: _seconds(raw, allow_zero=True),
    "auto_ping_timeout": lambda raw: _seconds(raw, allow_zero=False),
    "max_connections": _count,
    "compression": _bool,
    "max_message_rate": lambda raw: _rate(raw),
    "max_fragments": _count,
    "max_outbound_buffer": _size,
    "allowed_origins": _words,
    "allow_missing_origin": _bool,
}
_MAIN_KEYS = {"listen", "demo_page", "max_connections_total", "max_connections_per_ip"}
_OPERATOR_KEYS = {
    "path", "console_path", "store", "tokens", "tokens_file", "lease", "fallback_after",
    "fallback_message", "fallback_when_offline", "keep_after_fallback",
}
_ADMIN_KEYS = {"listen", "api_keys", "api_keys_file", "max_body"}
_URL_PATH = re.compile(r"^(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)+$")
_ROUTE_KEYS = {"strategy"}


class _Reader:
    """
    Reads values out of a parsed file and turns failures into L{ConfigError}.
    """

    def __init__(self, path: Path, text: str, parser: configparser.ConfigParser) -> None:
        self.path = path
        self.parser = parser
        self._lines = text.splitlines()

    def line_of(self, section: str, key: str | None = None) -> int | None:
        """
        @return: the 1-based line of C{[section]} (or of C{key} in it).
        """
        current: str | None = None
        key_pattern = re.compile(rf"^\s*{re.escape(key)}\s*[=:]", re.IGNORECASE) if key else None
        for number, line in enumerate(self._lines, start=1):
            stripped = line.strip()
            if stripped.startswith("[") and "]" in stripped:
                current = stripped[1 : stripped.index("]")].strip()
                if key is None and current == section:
                    return number
                continue
            if current == section and key_pattern is not None and key_pattern.match(line):
                return number
        return None

    def error(self, section: str, key: str | None, message: str) -> ConfigError:
        return ConfigError(
            self.path, message, section=section, key=key, line=self.line_of(section, key)
        )

    def check_keys(self, section: str, allowed: Sequence[str] | set[str]) -> None:
        for key in self.parser[section]:
            if key not in allowed:
                raise self.error(
                    section, key, f"unknown key; expected one of: {', '.join(sorted(allowed))}"
                )

    def convert(self, section: str, key: str, parse: Callable[[str], Any]) -> Any:
        try:
            return parse(self.parser[section][key])
        except ValueError as e:
            raise self.error(section, key, str(e)) from None


def _read_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, "config file not found") from None
    except UnicodeDecodeError as e:
        raise ConfigError(path, f"config file is not UTF-8 text ({e.reason})") from None
    except OSError as e:
        raise ConfigError(path, f"cannot read config file: {e.strerror}") from None


def _parse(path: Path, text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(
        interpolation=None, default_section="\x00no-defaults", inline_comment_prefixes=None
    )
    try:
        parser.read_string(text, source=str(path))
    except configparser.DuplicateSectionError as e:
        message = "duplicate section"
        if e.section.startswith(ROUTE_PREFIX):
            message = f"duplicate route {e.section[len(ROUTE_PREFIX):]!r}"
        raise ConfigError(path, message, section=e.section, line=e.lineno) from None
    except configparser.DuplicateOptionError as e:
        raise ConfigError(
            path, "key given twice in one section", section=e.section, key=e.option,
            line=e.lineno,
        ) from None
    except configparser.MissingSectionHeaderError as e:
        raise ConfigError(
            path, "expected a [section] header before the first key", line=e.lineno
        ) from None
    except configparser.ParsingError as e:
        lineno, line = e.errors[0]
        raise ConfigError(
            path, f"expected 'key = value', got {line.strip()!r}", line=lineno
        ) from None
    return parser


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
    settings = replace(base, origins=origins, **values)
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
    if not _ROUTE_PATH.match(path):
        raise reader.error(
            section, None,
            "expected a route section named [route:/path] with a URL path of one or more "
            f"non-empty segments, e.g. [route:/echo]; got {path!r}",
        )
    return path


def _build_route(
    reader: _Reader,
    section: str,
    path: str,
    protocol: ProtocolSettings,
    registry: StrategyRegistry,
    clock: IReactorTime,
    operator_queue: OperatorQueue | None = None,
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
    options = {
        key: value
        for key, value in reader.parser[section].items()
        if key not in _ROUTE_KEYS and key not in _PROTOCOL_KEYS
    }
    context = StrategyContext(clock=clock, config_dir=reader.path.parent, route=path,
                              operator_queue=operator_queue)
    try:
        strategy = factory.create(MappingProxyType(options), context)
    except OptionError as e:
        if e.path is not None:
            where = str(e.path) if e.line is None else f"{e.path}:{e.line}"
            raise reader.error(section, e.key, f"{where}: {e.expected}") from None
        raise reader.error(section, e.key, e.expected) from None
    if not IReplyStrategy.providedBy(strategy):
        raise reader.error(
            section, "strategy",
            f"strategy factory {name!r} returned {strategy!r}, which does not provide "
            "IReplyStrategy",
        )
    return RouteConfig(
        path=path,
        section=section,
        strategy_name=name,
        strategy=strategy,
        options=MappingProxyType(options),
        protocol=protocol,
    )


def load_config(
    path: Path | str,
    *,
    clock: IReactorTime,
    registry: StrategyRegistry | None = None,
    listen_override: Sequence[str] = (),
    check_endpoint: Callable[[str], None] | None = None,
    operator_queue: OperatorQueue | None = None,
) -> DaemonConfig:
    """
    Read, validate and build the daemon's config.

    @param clock: handed to strategies (their only source of time).
    @param listen_override: endpoint strings replacing C{[wsdaemon] listen}.
    @param check_endpoint: validates one endpoint string, raising
        ValueError with the reason (see L{wsdaemon.endpoints}).
    @param operator_queue: on a reload, the running queue, kept as it is
        (its store stays open; new [operator] settings apply to it).

    @raise ConfigError: on the first mistake found.
    """
    path = Path(path)
    text = _read_file(path)
    parser = _parse(path, text)
    reader = _Reader(path, text, parser)
    registry = registry if registry is not None else StrategyRegistry()

    route_sections = []
    for section in parser.sections():
        if section in (MAIN_SECTION, PROTOCOL_SECTION, OPERATOR_SECTION, ADMIN_SECTION):
            continue
        if section.startswith(ROUTE_PREFIX):
            route_sections.append(section)
            continue
        raise reader.error(
            section, None,
            f"unknown section; expected [{MAIN_SECTION}], [{PROTOCOL_SECTION}], "
            f"[{OPERATOR_SECTION}], [{ADMIN_SECTION}] or [{ROUTE_PREFIX}/path]",
        )
    if MAIN_SECTION not in parser:
        raise ConfigError(path, f"missing section [{MAIN_SECTION}]")
    reader.check_keys(MAIN_SECTION, _MAIN_KEYS)

    if listen_override:
        listen = tuple(listen_override)
        listen_source: tuple[str, str | None] = ("command line", None)
    else:
        raw = parser[MAIN_SECTION].get("listen", "")
        listen = tuple(line.strip() for line in raw.splitlines() if line.strip())
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

    defaults = ProtocolSettings()
    if PROTOCOL_SECTION in parser:
        reader.check_keys(PROTOCOL_SECTION, set(_PROTOCOL_KEYS))
        defaults = _protocol_settings(reader, PROTOCOL_SECTION, defaults)

    operator: OperatorSettings | None = None
    queue: OperatorQueue | None = None
    if OPERATOR_SECTION in parser:
        operator = _operator_settings(reader)
        if operator_queue is not None:
            queue = operator_queue  # a reload: keep the running queue and its store
        else:
            queue = OperatorQueue(operator, SQLiteStore(operator.store_path, clock), clock)
    admin = _admin_settings(reader, check_endpoint) if ADMIN_SECTION in parser else None

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
        routes.append(
            _build_route(reader, section, route_path, protocol, registry, clock, queue)
        )
    if operator is not None:
        for special in (operator.path, operator.console_path):
            clash = [r.path for r in routes
                     if special == r.path or special.startswith(r.path + "/")
                     or r.path.startswith(special + "/")]
            if clash:
                raise reader.error(
                    OPERATOR_SECTION, None,
                    f"{special} collides with route {clash[0]}; give the operator channel and "
                    "console paths of their own",
                )

    return DaemonConfig(path=path, listen=listen, demo_page=demo_page, routes=tuple(routes),
                        protocol=defaults, operator=operator, operator_queue=queue,
                        admin=admin, **caps)


def _secrets(reader: _Reader, section: str, inline_key: str, file_key: str,
             what: str) -> dict[str, str]:
    """
    C{name:secret} lines from an inline key and/or a file it names.
    """
    values = reader.parser[section]
    found: dict[str, str] = {}
    if inline_key in values:
        try:
            found.update(parse_tokens(values[inline_key].splitlines()))
        except ValueError as e:
            raise reader.error(section, inline_key,
                               f"{e} (counting lines of this value)") from None
    if file_key in values:
        secret_path = reader.path.parent / values[file_key].strip()
        try:
            lines = secret_path.read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise reader.error(section, file_key,
                               f"cannot read {secret_path}: {e.strerror}") from None
        try:
            for secret, name in parse_tokens(lines).items():
                if secret in found:
                    raise ValueError(f"{name!r} has the same {what} as {found[secret]!r}")
                found[secret] = name
        except ValueError as e:
            raise reader.error(section, file_key, f"{secret_path}: {e}") from None
    if not found:
        raise reader.error(section, inline_key,
                           f"no {what}s; expected {inline_key} = name:secret lines or "
                           f"{file_key} = a file of them")
    return found


def _admin_settings(reader: _Reader,
                    check_endpoint: Callable[[str], None] | None) -> AdminSettings:
    section = ADMIN_SECTION
    reader.check_keys(section, _ADMIN_KEYS)
    values = reader.parser[section]
    raw = values.get("listen", "tcp:8081:interface=127.0.0.1")
    listen = tuple(line.strip() for line in raw.splitlines() if line.strip())
    if not listen:
        raise reader.error(section, "listen", "expected one or more endpoint strings")
    if check_endpoint is not None:
        for endpoint in listen:
            try:
                check_endpoint(endpoint)
            except ValueError as e:
                raise reader.error(section, "listen", f"{endpoint!r}: {e}") from None
    keys = _secrets(reader, section, "api_keys", "api_keys_file", "API key")
    max_body = 1024 * 1024
    if "max_body" in values:
        max_body = reader.convert(section, "max_body", _size)
    return AdminSettings(listen=listen, api_keys=keys, max_body=max_body)


def _operator_settings(reader: _Reader) -> OperatorSettings:
    section = OPERATOR_SECTION
    reader.check_keys(section, _OPERATOR_KEYS)
    values = reader.parser[section]
    base = reader.path.parent
    tokens = _secrets(reader, section, "tokens", "tokens_file", "operator token")
    settings: dict[str, Any] = {}
    for key in ("path", "console_path"):
        if key in values:
            value = values[key].strip()
            if not _URL_PATH.match(value):
                raise reader.error(section, key, f"expected a URL path such as /operator, "
                                                 f"got {value!r}")
            settings[key] = value
    for key, allow_zero in (("lease", False), ("fallback_after", True)):
        if key in values:
            settings[key] = reader.convert(section, key, partial(_seconds, allow_zero=allow_zero))
    for key in ("fallback_when_offline", "keep_after_fallback"):
        if key in values:
            settings[key] = reader.convert(section, key, _bool)
    if "fallback_message" in values:
        settings["fallback_message"] = values["fallback_message"].strip()
        if not settings["fallback_message"]:
            raise reader.error(section, "fallback_message", "expected a message, got nothing")
    store = values.get("store", "wsdaemon-queue.sqlite3").strip()
    if not store:
        raise reader.error(section, "store", "expected the path of the SQLite file")
    return OperatorSettings(store_path=base / store, tokens=tokens, **settings)
