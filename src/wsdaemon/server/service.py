"""
The daemon as a Twisted service: its life (start, reload on SIGHUP, graceful
stop on SIGTERM, systemd's notify protocol) around the parts
L{wsdaemon.server.assembly} built.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autobahn import __version__ as autobahn_version
from twisted import __version__ as twisted_version
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Site

from wsdaemon import __version__
from wsdaemon.broker.bus import IPushBus
from wsdaemon.broker.link import RedisLink
from wsdaemon.config import ConfigError, DaemonConfig
from wsdaemon.connections import accel, directwrite, frames
from wsdaemon.connections.index import SessionIndex
from wsdaemon.connections.journal import Journal
from wsdaemon.connections.route import Route
from wsdaemon.credentials import example_names
from wsdaemon.endpoints import build_endpoint
from wsdaemon.interfaces import Contribution, IComponent
from wsdaemon.server import loglevel, poll
from wsdaemon.server.admin import AdminSite, PushCounters
from wsdaemon.server.reloads import ReloadStatus
from wsdaemon.server.systemd import notify, reloading_message
from wsdaemon.server.web import WebRoot

__all__ = ["Parts", "WsDaemonService", "accelerations", "ignore_signals_while_stopping"]

_log = Logger(namespace="wsdaemon.service")

#: Close code for connections closed because the daemon stops (RFC 6455).
GOING_AWAY = 1001
#: The longest a stop waits for clients to answer their close frames.
MAX_CLOSE_WAIT = 5.0


def ignore_signals_while_stopping() -> None:
    """
    Ignore SIGTERM, SIGINT and SIGHUP from now on: the process is stopping.

    Our handlers already ignore a repeat, but Python puts back the default
    action (death) of every signal it handles as the interpreter shuts down,
    so a second SIGTERM in the ~0.2 s between the reactor's end and the
    process's killed it (exit 143 instead of 0). An ignored signal stays
    ignored to the end.
    """
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, signal.SIG_IGN)


def accelerations() -> str:
    """
    @return: which UTF-8 validator Autobahn's own parser uses (NVX, wsaccel
        or pure Python): fragmented and compressed text goes through it.
    """
    from autobahn.websocket import utf8validator

    where = getattr(utf8validator.Utf8Validator, "__module__", "")
    if "nvx" in where:
        return "Autobahn's UTF-8 validator: NVX"
    if "wsaccel" in where:
        return "Autobahn's UTF-8 validator: wsaccel"
    return ("Autobahn's UTF-8 validator: pure Python "
            "(NVX off or not built; slow for fragmented text)")


@dataclass(frozen=True)
class Parts:
    """
    What one config built; a reload swaps it whole.

    @ivar link: the Redis link (kept by every reload), or None.
    @ivar component: what runs the [operator] section (conversations; kept
        by every reload), or None without one.
    @ivar contribution: what the component contributes for C{config}.
    """

    config: DaemonConfig
    routes: tuple[Route, ...]
    link: RedisLink | None = None
    component: IComponent | None = None
    contribution: Contribution | None = None


class ListenError(Exception):
    """
    A listener could not bind: which endpoint, and the config key naming it.
    """

    def __init__(self, endpoint: str, key: str, error: Exception) -> None:
        super().__init__(f"{endpoint} ({key}): {error}")
        self.endpoint = endpoint
        self.key = key
        self.error = error


class _Listener(StreamServerEndpointService):
    key = ""

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except Exception as e:
            raise ListenError(str(self.name), self.key, e) from None

    def startService(self) -> None:
        try:
            super().startService()
        except Exception as e:
            raise ListenError(str(self.name), self.key, e) from None


class _AdoptedListener(Service):
    """
    Serves a listening socket this process inherited (a worker's).
    """

    def __init__(self, reactor: Any, fd: int, family: str, factory: Any) -> None:
        self.reactor = reactor
        self.fd = fd
        self.family = family
        self.factory = factory
        self.port: Any = None

    def startService(self) -> None:
        super().startService()
        os.set_blocking(self.fd, False)
        number = {"INET": socket.AF_INET, "INET6": socket.AF_INET6,
                  "UNIX": socket.AF_UNIX}[self.family]
        self.port = self.reactor.adoptStreamPort(self.fd, number, self.factory)

    def stopService(self) -> Deferred[Any] | None:
        super().stopService()
        if self.port is not None:
            d: Deferred[Any] = maybeDeferred(self.port.stopListening)
            return d
        return None


class WsDaemonService(MultiService):
    """
    @param rebuild: reads the config anew and, if it is valid, swaps what
        it built in (L{wsdaemon.server.assembly.Assembly.reload}); raises
        L{ConfigError} and changes nothing otherwise.
    @param handle_signals: install the SIGHUP (reload) and SIGTERM
        (graceful stop) handlers; off in tests that build many services.
    """

    def __init__(self, parts: Parts, reactor: Any, *, index: SessionIndex, bus: IPushBus,
                 webroot: WebRoot, site: Site, rebuild: Callable[[], Parts] | None = None,
                 handle_signals: bool = True) -> None:
        super().__init__()
        self.parts = parts
        self._reactor = reactor
        self._rebuild = rebuild
        self._handle_signals = handle_signals
        self._signals_installed = False
        self.ready = False
        self._exit_status = 0
        self._stopping = False
        self.index = index
        self.bus = bus
        self.push_counters = PushCounters()
        #: What the last reload did (/metrics, /healthz).
        self.reloads = ReloadStatus(reactor)
        self.webroot = webroot
        self.site = site
        self.admin_site: AdminSite | None = None
        #: Called once ready (a worker tells its supervisor).
        self.on_ready: Callable[[], None] | None = None
        #: What startService says it listens on: (log format, endpoint).
        self._announce: list[tuple[str, str]] = []

    @property
    def config(self) -> DaemonConfig:
        return self.parts.config

    def adopt(self, fd: int, family: str, factory: Any, description: str) -> None:
        """
        Serve C{factory} on the inherited listening socket C{fd} once started.

        @param description: the configured endpoint the socket was opened for.
        """
        listener = _AdoptedListener(self._reactor, fd, family, factory)
        listener.setName(f"inherited fd {fd}")
        listener.setServiceParent(self)
        self._announce.append(("listening on {endpoint}",
                               f"{description} (socket from the supervisor, fd {fd})"))

    def listen(self, description: str, factory: Any, key: str,
               announce: str = "listening on {endpoint}") -> None:
        """
        Serve C{factory} on the endpoint C{description} once started.

        @param key: the config key (or option) that names the endpoint.
        @param announce: the log line once listening.
        """
        self._announce.append((announce, description))
        listener = _Listener(build_endpoint(description, self._reactor), factory)
        listener.key = key
        # Fail the start (and the process) if we cannot listen.
        listener._raiseSynchronously = True
        listener.setName(description)
        listener.setServiceParent(self)

    # -- what the admin API and /metrics read ----------------------------------

    @property
    def factories(self) -> dict[str, Any]:
        return dict(self.webroot.factories)

    @property
    def operator_channel(self) -> Any:
        return self.webroot.channel

    def journals(self) -> dict[str, Journal]:
        return self.webroot.journals()

    def journal_mark(self) -> int:
        """
        @return: a journal number above every entry so far (of any route)
            and below every later one.
        """
        return self.webroot.sequence.mark()

    def broker_status(self) -> dict[str, Any]:
        link = self.parts.link
        if link is None:
            return {"backend": "embedded", "up": True}
        return link.status()

    def health(self) -> dict[str, Any]:
        component = self.parts.component
        broker = self.broker_status()
        return {
            # Still ready when Redis is down: echo and scripted routes serve,
            # and a load balancer should not take every daemon out at once.
            "status": "ok" if broker["up"] else "degraded", "ready": self.ready,
            "version": __version__, "broker": broker,
            "connections": len(self.index),
            "pending_timers": len(self._reactor.getDelayedCalls()),
            # The component's own, by its keys ("conversations").
            **(component.health() if component is not None else {}),
            "reload": self.reloads.describe(),
        }

    # -- start -----------------------------------------------------------------

    def privilegedStartService(self) -> None:
        # twistd binds here (before dropping privileges); `twist` binds in
        # startService. Either way, a listener that cannot bind ends the
        # process with one clear line instead of a traceback.
        self._install_reload_signal()
        try:
            super().privilegedStartService()
        except Exception as e:
            self._cannot_listen(e)

    def _cannot_listen(self, error: Exception) -> None:
        if isinstance(error, ListenError):
            _log.critical("cannot listen on {endpoint} ({key}): {error}",
                          endpoint=error.endpoint, key=error.key, error=str(error.error))
        else:
            _log.critical("cannot listen: {error}", error=str(error))
        raise SystemExit(1)

    def startService(self) -> None:
        self._install_reload_signal()
        if self._handle_signals:
            # From the start, not once ready: a SIGTERM while the store or
            # Redis is still opening stops cleanly too (exit 0), where the
            # reactor's own handler would have the process die of it.
            self._reactor.callWhenRunning(self._install_stop_signal)
        config = self.config
        _log.info(
            "wsdaemon {version} (Twisted {twisted}, Autobahn {autobahn}; {accel}; "
            "wsdaemon: {ours}) starting with {config}",
            version=__version__, twisted=twisted_version, autobahn=autobahn_version,
            accel=accelerations(),
            ours=", ".join(filter(None, (accel.describe(), frames.describe(),
                                         directwrite.describe(),
                                         poll.describe(self._reactor)))),
            config=str(config.path),
        )
        self._log_routes(config)
        self._warn_examples(config)
        component = self.parts.component
        started: Deferred[Any] = component.start() if component is not None else succeed(None)
        if self.parts.link is not None:
            self.parts.link.start()
        try:
            super().startService()
        except Exception as e:
            self._cannot_listen(e)
        for line, endpoint in self._announce:
            _log.info(line, endpoint=endpoint)
        started.addCallbacks(self._started, self._component_failed)

    def _warn_examples(self, config: DaemonConfig) -> None:
        # (A component warns of its own secrets when it starts.)
        names = example_names(config.admin.api_keys if config.admin is not None else {})
        if names:
            _log.warn("{names}: the shipped example API key(s), known to anyone who read "
                      "the README; fine on loopback for a try, refused on any other "
                      "listener: make your own (openssl rand -hex 24)", names=", ".join(names))

    def _log_routes(self, config: DaemonConfig) -> None:
        for route in config.routes:
            _log.info(
                "route {route}: strategy {strategy}, max message {max_message} bytes, "
                "compression {compression}, origins {origins}",
                route=route.path, strategy=route.strategy_name,
                max_message=route.protocol.max_message_size,
                compression="on" if route.protocol.compression else "off",
                origins=" ".join(route.protocol.origins.patterns) or "(none)",
            )

    def _started(self, _: Any) -> None:
        self.ready = True
        notify("READY=1\nSTATUS=serving")
        if self.on_ready is not None:
            self.on_ready()
        _log.info("ready")

    def _component_failed(self, failure: Failure) -> None:
        """
        The component cannot start (its store cannot be opened): one clear
        line, and exit status 1 (so systemd and scripts see the failure).
        """
        component = self.parts.component
        _log.critical("cannot start {component}: {why}",
                      component=component.name if component is not None else "?",
                      why=failure.getErrorMessage() or repr(failure.value))
        self._exit_status = 1
        self._reactor.addSystemEventTrigger("after", "shutdown", self._exit)
        self._reactor.stop()

    def _exit(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(self._exit_status)

    # -- signals -----------------------------------------------------------------

    def _install_reload_signal(self) -> None:
        # twistd installs no SIGHUP handler: without ours, SIGHUP kills.
        if not self._handle_signals or self._signals_installed:
            return
        self._signals_installed = True
        reactor = self._reactor
        signal.signal(signal.SIGHUP, lambda *_: reactor.callFromThread(self.reload))

    def _install_stop_signal(self) -> None:
        # The reactor's own SIGTERM handler makes twistd re-raise the signal
        # (the process then "dies of SIGTERM"); ours stops cleanly, exit 0.
        # A second signal (Ctrl-C twice, `timeout` sending two) while
        # stopping is ignored, quietly.
        reactor = self._reactor
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, lambda *_: reactor.callFromThread(self.stop_process))

    def stop_process(self) -> None:
        """
        Stop the reactor, and with it this service and the process (exit
        status 0); again while stopping, nothing.
        """
        if self._stopping:
            return
        self._stopping = True
        if self._reactor.running:
            self._reactor.stop()

    # -- reload ------------------------------------------------------------------

    def reload(self) -> bool:
        """
        Read the config again. If it is valid, new routes, strategies and
        settings serve new connections (open ones keep what they started
        with); if not, log why and keep the running config.

        @return: whether the new config took effect.
        """
        if self._rebuild is None:
            _log.warn("reload asked for, but this service cannot reload")
            return False
        notify(reloading_message())
        try:
            new = self._rebuild()
        except ConfigError as e:
            self.reloads.refused(e)
            _log.error("reload refused, still running the previous config: {error}",
                       error=str(e))
            notify("READY=1\nSTATUS=reload refused; running the previous config")
            return False
        except Exception as e:
            self.reloads.refused(e)
            _log.failure("reload failed, still running the previous config")
            notify("READY=1\nSTATUS=reload failed; running the previous config")
            return False
        self.reloads.succeeded()
        loglevel.set_level(new.config.log_level)
        # The summary starts with the file's path.
        _log.info("reloaded {summary}", summary=new.config.summary())
        self._log_routes(new.config)
        notify("READY=1\nSTATUS=serving (reloaded)")
        return True

    # -- stop --------------------------------------------------------------------

    def stopService(self) -> Deferred[Any]:
        """
        Stop listening, close every connection with 1001 (going away), wait
        for them (bounded), then let the store finish its writes.
        """
        if self._handle_signals:
            ignore_signals_while_stopping()
        notify("STOPPING=1")
        self.ready = False
        _log.info("stopping: closing {count} connection(s) with 1001",
                  count=len(self.index))
        d: Deferred[Any] = maybeDeferred(super().stopService)
        d.addCallback(lambda _: self._close_all())
        component = self.parts.component
        if component is not None:
            d.addCallback(lambda _: component.stop())
        link = self.parts.link
        if link is not None:
            d.addCallback(lambda _: link.stop())
        d.addCallback(lambda _: _log.info("stopped"))
        return d

    def _open_protocols(self) -> list[Any]:
        protocols: list[Any] = list(self.index.select_all())
        channel = self.webroot.channel
        if channel is not None:
            protocols.extend(channel.connections)
        return protocols

    def _close_all(self) -> Deferred[Any]:
        for protocol in self._open_protocols():
            if protocol.state == protocol.STATE_OPEN:
                protocol.sendCloseFrame(code=GOING_AWAY, reasonUtf8=b"server shutting down")
        waits = self.config.protocol.close_handshake_timeout
        deadline = self._reactor.seconds() + min(MAX_CLOSE_WAIT, waits + 0.5)
        done: Deferred[None] = Deferred()

        def check() -> None:
            remaining = [p for p in self._open_protocols() if p.state != p.STATE_CLOSED]
            if not remaining:
                done.callback(None)
            elif self._reactor.seconds() >= deadline:
                for protocol in remaining:
                    protocol.dropConnection(abort=True)
                done.callback(None)
            else:
                self._reactor.callLater(0.05, check)

        check()
        return DeferredList([done])
