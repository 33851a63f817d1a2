"""
Building the running daemon from the config's values, in one place.

L{wsdaemon.config} reads the INI file into values and nothing else. This
module turns them into the running parts: each route's strategy (from the
registry), the operator component (L{wsdaemon.interfaces.IComponent}, made
by the factory the entry point hands over: this module knows no feature by
name), the Redis link, the push bus, the web and admin sites, the
listeners, and the service that runs them.

A reload is the same step again: read new values, build what they describe
(strategies, routes, settings), keep what must persist (the component and
its store, the Redis link, every open connection and each route's factory),
swap. Changes only a restart can make are refused, and the running daemon
is left exactly as it was.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import txaio
from twisted.logger import Logger

from wsdaemon.broker.bus import IPushBus
from wsdaemon.broker.link import RedisLink
from wsdaemon.broker.local import LocalPushBus
from wsdaemon.broker.push import RedisPushBus
from wsdaemon.config import (
    BrokerSettings,
    ConfigError,
    DaemonConfig,
    RouteConfig,
)
from wsdaemon.connections import accel, directwrite, frames
from wsdaemon.connections.identity import with_secret
from wsdaemon.connections.index import SessionIndex
from wsdaemon.connections.route import Route
from wsdaemon.interfaces import Contribution, IComponent, IReplyStrategy
from wsdaemon.internals import Reach, check
from wsdaemon.server import poll
from wsdaemon.server.admin import AdminSite
from wsdaemon.server.metrics import make_registry
from wsdaemon.server.reloads import ReloadCollector
from wsdaemon.server.service import Parts, WsDaemonService
from wsdaemon.server.web import WebRoot, build_site
from wsdaemon.strategies.api import StrategyContext
from wsdaemon.strategies.registry import StrategyRegistry

__all__ = ["Assembly", "ComponentFactory", "check_reloadable"]

#: Makes the component that runs the config's component section (not
#: started), given the config, the reactor and the broker's link (None: no
#: Redis); None when the config has no section for it
#: (L{wsdaemon.components.operator_component}).
# (A string: zope.interface before 6.1 cannot make "IComponent | None" at run time.)
ComponentFactory = Callable[[DaemonConfig, Any, RedisLink | None], "IComponent | None"]

_LISTEN_KEY = "[wsdaemon] listen (or --listen)"
_ADMIN_LISTEN_KEY = "[admin] listen (or --admin-listen)"


_log = Logger(namespace="wsdaemon.service")


def install_speed_paths(reactor: Any) -> dict[str, Reach]:
    """
    Check the speed paths against the installed Twisted and Autobahn
    (L{wsdaemon.internals}) and turn on those that may run; each one that
    may not gets a warning naming what was missing (the libraries' own code
    then does its work: slower, not different).

    @return: each path's check, by name.
    """
    reaches = check(reactor)
    accel.install(reaches["accel"])
    frames.enable(reaches["frames"])
    directwrite.enable(reaches["directwrite"])
    poll.install(reactor, reaches["poll"])
    for reach in reaches.values():
        if reach.missing:
            _log.warn("speed path {path} off, the libraries' own code does its work: {why}",
                      path=reach.path, why=reach.describe())
        elif not reach.usable:
            _log.info("speed path {path} off: {why}", path=reach.path, why=reach.describe())
    return reaches


class Assembly:
    """
    Builds a daemon from config values, and rebuilds it on a reload.

    @param reactor: every part's reactor and clock.
    @param read_config: reads the config file (again), raising
        L{ConfigError}; a reload calls it (None: the daemon cannot reload).
    @param registry: where strategy factories are found by name.
    @param components: makes the component that runs an [operator]
        section; None: a config with one is refused.
    """

    def __init__(self, reactor: Any, read_config: Callable[[], DaemonConfig] | None = None,
                 registry: StrategyRegistry | None = None, worker: int | None = None,
                 components: ComponentFactory | None = None) -> None:
        self.reactor = reactor
        self.components = components
        #: This process's number among a supervisor's workers, or None.
        self.worker = worker
        self.read_config = read_config
        self.registry = registry if registry is not None else StrategyRegistry()
        self.service: WsDaemonService | None = None

    # -- the parts ---------------------------------------------------------------

    def link(self, settings: BrokerSettings | None) -> RedisLink | None:
        """
        @return: a Redis link for C{settings} (not started), or None for the
            embedded store.
        """
        if settings is None:
            return None
        if not settings.daemon_id:
            # A name among the others: host, process and a random part (a
            # restarted daemon is a new member).
            settings = replace(settings, daemon_id=f"{socket.gethostname()}-{os.getpid()}-"
                                                   f"{secrets.token_hex(2)}")
        elif self.worker is not None:
            # Each worker is a member of its own: the configured name, numbered.
            settings = replace(settings, daemon_id=f"{settings.daemon_id}-w{self.worker}")
        return RedisLink(settings, self.reactor)

    def component(self, config: DaemonConfig, link: RedisLink | None) -> IComponent | None:
        """
        @return: the component that runs C{config}'s component section
            (C{[operator]}; not started), or None without one.
        @raise ConfigError: there is a section, but this daemon was given
            no way to run it.
        """
        if not config.sections:
            return None
        if self.components is None:
            section = next(iter(config.sections))
            raise ConfigError(config.path, f"this daemon was built without the {section} "
                              "component: run it through twistd wsdaemon (wsdaemon.tap)",
                              section=section, key=None)
        return self.components(config, self.reactor, link)

    def route(self, config: DaemonConfig, route: RouteConfig,
              contribution: Contribution | None = None) -> Route:
        """
        @return: C{route} with its strategy built by its factory, given what
            the factory's option check found when the config was read, and
            its identity secret (the secret file is created if missing).
        @raise ConfigError: if the factory fails now (e.g. a rules file
            that a plugin reads only here), or the secret file cannot be
            created.
        """
        try:
            identity = with_secret(route.protocol.identity)
        except OSError as e:
            raise ConfigError(config.path, f"cannot read or create "
                              f"{route.protocol.identity.secret_file}: {e.strerror or e}",
                              section=route.section, key="identity_secret_file") from None
        spec = route.strategy
        context = StrategyContext(clock=self.reactor, config_dir=config.path.parent,
                                  route=route.path, checked=spec.checked)
        # A component serves its own strategies, bound to it.
        served = contribution.strategies if contribution is not None else {}
        try:
            factory = served.get(spec.name) or self.registry.resolve(spec.name)
            strategy = factory.create(spec.options, context)
        except Exception as e:
            raise ConfigError(config.path, f"cannot build strategy {spec.name!r}: {e}",
                              section=route.section, key="strategy") from None
        if not IReplyStrategy.providedBy(strategy):
            raise ConfigError(config.path, f"strategy factory {spec.name!r} returned "
                              f"{strategy!r}, which does not provide IReplyStrategy",
                              section=route.section, key="strategy")
        return Route(path=route.path, strategy=strategy,
                     protocol=replace(route.protocol, identity=identity),
                     strategy_name=spec.name, section=route.section)

    def parts(self, config: DaemonConfig, component: IComponent | None,
              link: RedisLink | None) -> Parts:
        """
        @return: C{config}'s routes built, around C{component} and C{link},
            with what the component contributes; once every route is
            built, the component takes C{config} (a failure before leaves it
            as it was).
        """
        contribution = component.contribute(config) if component is not None else None
        routes = tuple(self.route(config, route, contribution) for route in config.routes)
        if component is not None:
            component.update(config)
        return Parts(config=config, routes=routes, link=link, component=component,
                     contribution=contribution)

    def fresh(self, config: DaemonConfig) -> Parts:
        """
        @return: everything C{config} describes, built new (nothing started).
        """
        link = self.link(config.broker)
        return self.parts(config, self.component(config, link), link)

    # -- the daemon ----------------------------------------------------------------

    def build(self, config: DaemonConfig, handle_signals: bool = True,
              inherited: Sequence[tuple[int, str]] = (),
              on_ready: Callable[[], None] | None = None,
              admin_socket: str | None = None) -> WsDaemonService:
        """
        @param inherited: a worker's listening sockets (fd, family), served
            instead of C{config.listen}.
        @param admin_socket: a worker's private admin socket (its
            supervisor's admin API asks it), instead of C{[admin] listen}.
        @param on_ready: called once the daemon is ready.
        @return: the daemon's service for C{config}, listeners included (it
            listens once started).
        @raise ConfigError: if a strategy cannot be built.
        """
        reactor = self.reactor
        # Autobahn's own timers (handshake timeouts, auto-ping) run on
        # txaio's loop, not on the factory's reactor: point it at ours.
        txaio.use_twisted()
        txaio.config.loop = reactor  # type: ignore[attr-defined]
        install_speed_paths(reactor)
        parts = self.fresh(config)
        index = SessionIndex()
        bus: IPushBus = (LocalPushBus(index) if parts.link is None
                         else RedisPushBus(index, parts.link, reactor))
        webroot = WebRoot(clock=reactor, reactor=reactor, index=index,
                          timed_journal=bool(inherited), worker=self.worker or 0,
                          workers=max(config.workers, (self.worker or 0) + 1))
        site = build_site(webroot.build(config, parts.routes, parts.contribution),
                          handshake_timeout=config.protocol.open_handshake_timeout,
                          access_log=webroot.access_log)
        service = WsDaemonService(parts, reactor, index=index, bus=bus, webroot=webroot,
                                  site=site,
                                  rebuild=self.reload if self.read_config is not None else None,
                                  handle_signals=handle_signals)
        service.on_ready = on_ready
        if inherited:
            for (fd, family), description in zip(inherited, config.listen, strict=True):
                service.adopt(fd, family, site, description)
        else:
            for description in config.listen:
                service.listen(description, site, _LISTEN_KEY)
        if config.admin is not None:
            admin = config.admin
            registry = make_registry(service, service.push_counters)
            if parts.contribution is not None:
                for collector in parts.contribution.collectors:
                    registry.register(collector)
            if self.worker is None:
                # A worker's reloads are its supervisor's to report: it
                # decides (L{wsdaemon.server.supervisor}).
                registry.register(ReloadCollector(service.reloads))
            service.admin_site = AdminSite(
                service, admin.api_keys, admin.max_body, registry, service.push_counters,
                admin.request_timeout, admin.max_connections, admin.allowed_hosts,
                clock=reactor)
            service.admin_site.access_log = webroot.access_log
            if admin_socket is not None:
                service.listen(f"unix:{admin_socket}:mode=600", service.admin_site,
                               _ADMIN_LISTEN_KEY,
                               announce="admin API for the supervisor on {endpoint}")
            else:
                for description in admin.listen:
                    service.listen(description, service.admin_site, _ADMIN_LISTEN_KEY,
                                   announce="admin API listening on {endpoint}")
        self.service = service
        return service

    def reload(self) -> Parts:
        """
        Read the config again, build what it describes around what persists,
        and swap it in.

        @return: what now runs.
        @raise ConfigError: the new config is wrong, or changes what only a
            restart can; nothing changed.
        """
        service = self.service
        if service is None or self.read_config is None:
            raise RuntimeError("reload before build, or without a way to read the config")
        old = service.parts
        new = self.read_config()
        check_reloadable(old.config, new)
        parts = self.parts(new, old.component, old.link)
        service.site.resource = service.webroot.build(new, parts.routes, parts.contribution)
        admin_site = service.admin_site
        if admin_site is not None and new.admin is not None:
            admin_site.api_keys = dict(new.admin.api_keys)
            admin_site.max_body = new.admin.max_body
            admin_site.handshake_timeout = new.admin.request_timeout
            admin_site.max_connections = new.admin.max_connections
            admin_site.allowed_hosts = new.admin.allowed_hosts
        service.parts = parts
        return parts


def check_reloadable(old: DaemonConfig, new: DaemonConfig) -> None:
    """
    @raise ConfigError: for changes only a restart can make.
    """
    if new.listen != old.listen:
        raise ConfigError(new.path, "listen endpoints changed: restart to apply",
                          section="wsdaemon", key="listen")
    if (old.admin is None) != (new.admin is None) or (
            old.admin is not None and new.admin is not None
            and old.admin.listen != new.admin.listen):
        raise ConfigError(new.path, "the admin listener changed: restart to apply",
                          section="admin", key="listen")
    added = sorted(set(old.sections) ^ set(new.sections))
    if added:
        # (What else of a component's section only a restart can change,
        # its component says: L{IComponent.contribute} refuses it.)
        raise ConfigError(new.path, f"the [{added[0]}] section was added or removed: restart "
                          "to apply", section=added[0], key=None)
    if old.broker != new.broker:
        raise ConfigError(new.path, "the [broker] section changed: restart to apply",
                          section="broker", key=None)
