"""
The twistd / twist entry point: command-line options and the service.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from wsdaemon.config import ConfigError, DaemonConfig, load_config
from wsdaemon.endpoints import check_endpoint

__all__ = ["Options", "makeService"]


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


class Options(usage.Options):
    synopsis = ("--config PATH [--listen ENDPOINT]... [--admin-listen ENDPOINT]... "
                "[--workers N|auto] [--check-config]")
    longdesc = (
        "Run the wsdaemon WebSocket messaging daemon. ENDPOINT is a Twisted endpoint "
        "string such as tcp:8080:interface=127.0.0.1, unix:/run/wsdaemon.sock, "
        "ssl:8443:privateKey=key.pem:certKey=cert.pem or systemd:domain=INET:index=0."
    )
    optParameters = [
        ["config", "c", None, "Path of the INI config file (required)."],
        ["workers", None, None, "Worker processes (a number, or auto: one per core), "
                                "replacing [wsdaemon] workers."],
        # Internal: this process is worker N of a supervisor.
        ["worker", None, None, None],
    ]
    optFlags = [
        ["check-config", None, "Validate the config, print a one-line summary and exit."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["admin-listen"] = []

    def opt_listen(self, endpoint: str) -> None:
        """
        Listen on ENDPOINT instead of the config's [wsdaemon] listen
        (repeatable).
        """
        self["listen"].append(endpoint)

    opt_l = opt_listen

    def opt_admin_listen(self, endpoint: str) -> None:
        """
        Serve the admin API on ENDPOINT instead of the config's [admin]
        listen (repeatable).
        """
        self["admin-listen"].append(endpoint)

    def postOptions(self) -> None:
        if not self["config"]:
            raise usage.UsageError("--config PATH is required")
        if self["worker"] is not None and not _digits(str(self["worker"])):
            raise usage.UsageError("--worker takes a number")

    def worker_argv(self) -> list[str]:
        """
        The options a worker gets: the same config and overrides.
        """
        argv = ["--config", os.path.abspath(self["config"])]
        for endpoint in self["listen"]:
            argv += ["--listen", endpoint]
        for endpoint in self["admin-listen"]:
            argv += ["--admin-listen", endpoint]
        if self["workers"] is not None:
            argv += ["--workers", self["workers"]]
        return argv


def load(options: Options | dict[str, Any], reactor: Any) -> DaemonConfig:
    """
    Read the config, its components' sections with their parsers.

    @raise ConfigError: if the config (or a --listen value) is wrong.
    """
    from wsdaemon.components import SECTIONS

    return load_config(
        options["config"],
        listen_override=options["listen"],
        admin_listen_override=options.get("admin-listen", ()),
        check_endpoint=lambda description: check_endpoint(description, reactor),
        workers_override=options.get("workers"),
        sections=SECTIONS,
    )


def makeService(options: Options, reactor: Any = None) -> IService:
    """
    Build the daemon, or exit: 0 after C{--check-config} succeeds, 1 with a
    one-line error for a wrong config (nothing listens in either case).
    """
    handle_signals = reactor is None
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    from wsdaemon.components import operator_component
    from wsdaemon.server.assembly import Assembly

    try:
        config = load(options, reactor)
        if options["check-config"]:
            sys.stdout.write(config.summary() + "\n")
            raise SystemExit(0)
        if handle_signals:
            _log_level(options, config, reactor)
        if config.workers > 1 and options.get("worker") is None:
            from wsdaemon.server.supervisor import Supervisor, worker_command

            argv = options.worker_argv()
            return Supervisor(config, reactor, lambda n: worker_command(argv, n),
                              read_config=lambda: load(options, reactor),
                              handle_signals=handle_signals)
        if options.get("worker") is not None:
            return _worker(options, config, reactor)
        return Assembly(reactor, lambda: load(options, reactor),
                        components=operator_component).build(
            config, handle_signals=handle_signals)
    except ConfigError as e:
        sys.stderr.write(f"wsdaemon: config error: {e}\n")
        raise SystemExit(1) from None


def _log_level(options: Options, config: DaemonConfig, reactor: Any) -> None:
    """
    Filter this process's output at C{[wsdaemon] log_level} once logging
    has begun (twistd and twist begin it before the reactor runs); under
    twist, its own filter (C{--log-level}, info by default) lets all through
    so that the config alone decides.
    """
    from wsdaemon.server import loglevel

    twist = getattr(options, "parent", None)
    if twist is not None and "fileLogObserverFactory" in twist and "logLevel" in twist:
        from twisted.logger import LogLevel

        twist["logLevel"] = LogLevel.debug
    reactor.callWhenRunning(loglevel.install, config.log_level)


def _worker(options: Options, config: DaemonConfig, reactor: Any) -> IService:
    """
    Worker N of a supervisor: the daemon on inherited listening sockets,
    saying "ready" on the supervisor's pipe, and stopping when the
    supervisor is gone (L{wsdaemon.server.lifeline}).
    """
    from wsdaemon.components import operator_component
    from wsdaemon.server.assembly import Assembly
    from wsdaemon.server.lifeline import SUPERVISOR_PID_ENV, SupervisorLifeline, die_with_parent
    from wsdaemon.server.supervisor import (
        ADMIN_SOCKET_ENV,
        LISTEN_FDS_ENV,
        READY_FD_ENV,
        tag_worker_logs,
    )

    number = int(options["worker"])
    # First: the sooner the parent death signal is asked for, the shorter
    # the time a dead supervisor's worker would serve.
    supervisor = os.environ.get(SUPERVISOR_PID_ENV, "")
    supervisor_pid = int(supervisor) if supervisor.isascii() and supervisor.isdigit() else None
    if supervisor_pid is not None and not die_with_parent(supervisor_pid):
        sys.stderr.write(f"wsdaemon: worker {number}: its supervisor (pid {supervisor_pid}) "
                         "is gone; not starting\n")
        raise SystemExit(1)
    # twist starts logging after makeService, with this factory: each line
    # the worker writes names it.
    twist = getattr(options, "parent", None)
    if twist is not None and twist.get("fileLogObserverFactory") is not None:
        plain = twist["fileLogObserverFactory"]
        twist["fileLogObserverFactory"] = lambda out: tag_worker_logs(plain(out), number)

    inherited = []
    for item in os.environ.get(LISTEN_FDS_ENV, "").split(","):
        if item:
            fd, _, family = item.partition(":")
            inherited.append((int(fd), family))
    if len(inherited) != len(config.listen):
        sys.stderr.write(f"wsdaemon: worker {number}: {len(inherited)} inherited "
                         f"socket(s) for {len(config.listen)} listener(s)\n")
        raise SystemExit(1)
    ready_fd = int(os.environ.get(READY_FD_ENV, "-1"))

    def ready() -> None:
        if ready_fd >= 0:
            try:
                os.write(ready_fd, b"ready\n")
            except OSError:
                pass

    service = Assembly(reactor, lambda: load(options, reactor), worker=number,
                       components=operator_component).build(
        config, handle_signals=True, inherited=inherited, on_ready=ready,
        admin_socket=os.environ.get(ADMIN_SOCKET_ENV) or None)
    if supervisor_pid is not None:
        SupervisorLifeline(reactor, service.stop_process, supervisor_pid).setServiceParent(
            service)
    return service
