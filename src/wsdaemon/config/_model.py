"""
The configuration's values: immutable, fully checked, and the error type.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

from wsdaemon.config._services import BrokerSettings
from wsdaemon.interfaces import SectionSettings
from wsdaemon.origin import OriginPolicy

__all__ = ["MODES", "AdminSettings", "ConfigError", "DaemonConfig", "IdentityPolicy",
           "JwtSettings", "ProtocolSettings", "RouteConfig", "StrategySpec"]

#: How a route knows who a client is (see L{wsdaemon.connections.identity}).
MODES = ("anonymous", "jwt", "claimed")


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
class JwtSettings:
    """
    @ivar key: the shared secret (HS*) or the PEM public key (RS*, ES*).
    """

    key: bytes = field(repr=False)
    algorithms: tuple[str, ...]
    audience: str | None = None
    issuer: str | None = None
    leeway: float = 0.0


@dataclass(frozen=True)
class IdentityPolicy:
    """
    Who a route's clients are (L{wsdaemon.connections.identity}).

    @ivar mode: one of L{MODES}.
    @ivar secret: signs issued ids: read from C{identity_secret_file}; None
        until the daemon is built when that file does not exist yet (it is
        created then), or when no file is configured (a secret of the
        process's own: ids survive reloads, not restarts).
    @ivar secret_file: the file C{secret} comes from, or None.
    """

    mode: str = "anonymous"
    secret: bytes | None = field(default=None, repr=False)
    secret_file: Path | None = None
    jwt: JwtSettings | None = None


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
    #: Journal: events kept per route (0: off) and bytes of messages kept.
    journal_entries: int = 1000
    journal_max_bytes: int = 1024 * 1024
    #: Who a client is (L{wsdaemon.connections.identity}).
    identity: IdentityPolicy = field(default_factory=IdentityPolicy)


@dataclass(frozen=True)
class StrategySpec:
    """
    Which strategy a route runs, as the config says: built by the assembly
    (L{wsdaemon.server.assembly}), never by the config.

    @ivar name: as written: a built-in, a plugin's name or a dotted path.
    @ivar options: the strategy's own options, as given (read-only).
    @ivar checked: what the factory's option check returned (e.g. the
        parsed rules file), handed to its C{create}; None if nothing.
    """

    name: str
    options: Mapping[str, str]
    checked: object = None


@dataclass(frozen=True)
class RouteConfig:
    """
    One URL path, its strategy and its protocol settings.
    """

    path: str
    section: str
    strategy: StrategySpec
    protocol: ProtocolSettings

    @property
    def strategy_name(self) -> str:
        return self.strategy.name

    @property
    def options(self) -> Mapping[str, str]:
        return self.strategy.options


@dataclass(frozen=True)
class AdminSettings:
    """
    The C{[admin]} section: the push API, /clients, /metrics and /healthz.

    @ivar api_keys: key -> name of who holds it.
    """

    listen: tuple[str, ...]
    api_keys: Mapping[str, str]
    max_body: int = 1024 * 1024
    #: Seconds a client has to send a whole request (headers and body).
    request_timeout: float = 10.0
    #: Open connections at most; more are closed at once.
    max_connections: int = 100
    #: Host header names (lower case, no port) answered; others get 421.
    allowed_hosts: frozenset[str] = frozenset({"localhost", "127.0.0.1", "::1"})


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
    #: Worker processes sharing the listeners (1: this process serves).
    workers: int = 1
    #: Reverse proxies whose X-Forwarded-For names the client (none: the
    #: peer is the client; "unix": any peer on a Unix socket), see
    #: L{wsdaemon.forwarded}.
    trusted_proxies: tuple[IPv4Network | IPv6Network | str, ...] = ()
    #: Whether static assets and /healthz, /metrics probes get an access
    #: log line (off: page views and probes do not flood the journal).
    log_every_request: bool = False
    #: The lowest level of event the daemon's output shows (debug, info,
    #: warn, error, critical; L{wsdaemon.server.loglevel}).
    log_level: str = "info"
    protocol: ProtocolSettings = field(default_factory=ProtocolSettings)
    #: The components' sections (C{operator}), as their parsers read them
    #: (L{wsdaemon.interfaces.ISectionParser}); each component reads its
    #: own back by its type.
    sections: Mapping[str, SectionSettings] = field(default_factory=dict)
    admin: AdminSettings | None = None
    #: Redis settings, or None for the embedded store (one daemon).
    broker: BrokerSettings | None = None

    def summary(self) -> str:
        """
        @return: one line naming the listeners, the routes and their strategies.
        """
        routes = ", ".join(f"{r.path} ({r.strategy_name})" for r in self.routes)
        summary = (
            f"{self.path}: OK; listen {', '.join(self.listen)}; "
            f"{len(self.routes)} route(s): {routes}"
        )
        if self.workers > 1:
            summary += f"; {self.workers} workers"
        if self.admin is not None:
            summary += (f"; admin API on {', '.join(self.admin.listen)} with "
                        f"{len(self.admin.api_keys)} key(s)")
        for settings in self.sections.values():
            summary += f"; {settings.summary()}"
        if self.broker is not None:
            summary += (f"; broker redis at {self.broker.host}:{self.broker.port}/"
                        f"{self.broker.db} prefix {self.broker.prefix}")
        return summary


# -- value parsers: each takes the raw string and returns the value or raises
# -- ValueError whose text says what was expected.
