"""
The command strategy: each connection gets its own process (the route's
C{command}, no shell), started once the client's connection is open.

Slots: a handshake takes one of the route's C{max_processes} before it is
accepted, and gives it back when its process has ended (a process that
ignores SIGTERM keeps its slot until SIGKILL). With every slot taken, the
handshake is refused with 503: no process is started for a client that
would only be closed.

Stopping the daemon: before the reactor stops, every process still running
gets SIGTERM, and the daemon waits for them up to C{kill_grace} seconds
(then SIGKILL, and one more second), so none outlives the daemon.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorCore, IReactorProcess, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from wsdaemon.strategies import (
    HandshakeAnswer,
    HandshakeRefused,
    HandshakeRequest,
    IHandshakeHook,
    IOptionCheck,
    IReplyStrategy,
    ISession,
    IStrategyFactory,
    OptionContext,
    StrategyContext,
    public_headers,
    public_query,
)
from wsdaemon.strategies.command.options import CommandSettings, check_options
from wsdaemon.strategies.command.process import INTERNAL_ERROR, CommandProcess

__all__ = ["CommandStrategy", "CommandStrategyFactory", "process_environment"]

_log = Logger(namespace="wsdaemon.command")

SERVER_SOFTWARE = "wsdaemon"


def _address(peer: str) -> tuple[str, str]:
    """
    @return: host and port of Autobahn's peer (C{tcp:127.0.0.1:50312},
        C{tcp6:::1:50312}); empty strings for anything else.
    """
    kind, _, rest = peer.partition(":")
    if kind not in ("tcp", "tcp4", "tcp6") or ":" not in rest:
        return "", ""
    host, _, port = rest.rpartition(":")
    return host.strip("[]"), port


def process_environment(settings: CommandSettings, request: HandshakeRequest,
                        session: ISession) -> dict[str, str]:
    """
    @return: the process's whole environment: the daemon's variables named
        by C{pass_env}, CGI's, the allowed headers as C{HTTP_*}, and the
        client's and session's ids. Nothing else of the daemon's.
    """
    host, port = _address(request.peer)
    env = dict(settings.environ)
    env.update({
        "GATEWAY_INTERFACE": "websocketd-CGI/0.1",
        "SERVER_SOFTWARE": SERVER_SOFTWARE,
        "REQUEST_METHOD": "GET",
        "REMOTE_ADDR": host,
        "REMOTE_PORT": port,
        "PATH_INFO": request.path,
        "QUERY_STRING": public_query(request.query),
        "WSDAEMON_ROUTE": session.route,
        "WSDAEMON_CLIENT_ID": str(session.client_id),
        "WSDAEMON_SESSION_ID": session.session_id,
    })
    for name, value in public_headers(settings.pass_headers, request.headers).items():
        if "\0" not in value:
            env["HTTP_" + name.upper().replace("-", "_")] = value
    return env


@implementer(IReplyStrategy, IHandshakeHook)
class CommandStrategy:
    """
    Runs one process per connection.

    @param reactor: where processes are started; None when the daemon's
        clock cannot start them (a test's L{task.Clock}): every connection
        is then closed with 1011.
    """

    def __init__(self, settings: CommandSettings, clock: IReactorTime,
                 reactor: IReactorProcess | None) -> None:
        self.settings = settings
        self.clock = clock
        self.reactor = reactor
        #: Slots taken: handshakes accepted and processes not yet ended.
        self.slots = 0
        self._requests: dict[str, HandshakeRequest] = {}
        self._processes: dict[str, CommandProcess] = {}
        #: Every process not yet ended, its client there or not.
        self._running: set[CommandProcess] = set()
        #: The reactor's shutdown trigger, while processes run.
        self._trigger: Any = None
        self._all_ended: Deferred[None] | None = None

    @property
    def processes(self) -> list[CommandProcess]:
        """The processes of open connections."""
        return list(self._processes.values())

    def connecting(self, request: HandshakeRequest) -> Deferred[HandshakeAnswer]:
        if self.slots >= self.settings.max_processes:
            _log.warn("command {route}: refused {peer} with 503: {count} processes "
                      "(max_processes)", route=request.path, peer=request.peer,
                      count=self.slots)
            return fail(HandshakeRefused(503, "too many processes"))
        self.slots += 1
        self._requests[request.session_id] = request
        return succeed(HandshakeAnswer())

    def abandoned(self, session_id: str) -> None:
        if self._requests.pop(session_id, None) is not None:
            self.slots -= 1

    def connection_opened(self, session: ISession) -> None:
        request = self._requests.pop(session.session_id, None)
        if request is None:
            session.close(INTERNAL_ERROR, "no process")  # opened without our handshake
            return
        if self.reactor is None:
            self.slots -= 1
            _log.error("command {route}: this reactor cannot start processes",
                       route=session.route)
            session.close(INTERNAL_ERROR, "cannot start the process")
            return
        limit = self.settings.max_line
        if request.limits.max_message_size:
            limit = min(limit, request.limits.max_message_size)
        process = CommandProcess(session, self.settings, self.clock, limit, self._ended)
        settings = self.settings
        try:
            self.reactor.spawnProcess(process, settings.executable, list(settings.argv),
                                      env=process_environment(settings, request, session),
                                      path=settings.working_dir)
        except Exception:
            self.slots -= 1
            _log.failure("command {route}: cannot start {executable} for session {session_id}",
                         route=session.route, executable=settings.executable,
                         session_id=session.session_id)
            session.close(INTERNAL_ERROR, "cannot start the process")
            return
        self._processes[session.session_id] = process
        self._running.add(process)
        self._watch_shutdown()

    def message_received(self, session: ISession, message: str | bytes) -> None:
        process = self._processes.get(session.session_id)
        if process is not None:
            process.write(message)

    def connection_closed(self, session: ISession, code: int | None, reason: str) -> None:
        process = self._processes.pop(session.session_id, None)
        if process is not None:
            process.stop()

    def _ended(self, process: CommandProcess) -> None:
        self.slots -= 1
        session_id = process.session.session_id
        if self._processes.get(session_id) is process:
            del self._processes[session_id]
        self._running.discard(process)
        if not self._running:
            if self._trigger is not None:
                core: Any = self.reactor
                core.removeSystemEventTrigger(self._trigger)
                self._trigger = None
            self._finish_shutdown()

    # -- the daemon stopping -------------------------------------------------

    def _watch_shutdown(self) -> None:
        if self._trigger is None and IReactorCore.providedBy(self.reactor):
            core: Any = self.reactor
            self._trigger = core.addSystemEventTrigger("before", "shutdown",
                                                       self._shutting_down)

    def _shutting_down(self) -> Deferred[None] | None:
        """
        The reactor is about to stop: end every process, and hold the stop
        until they have ended, at most C{kill_grace} seconds and one more.
        """
        self._trigger = None  # fired: nothing to remove
        if not self._running:
            return None
        _log.info("command: stopping {count} processes", count=len(self._running))
        self._all_ended = Deferred()
        waiting = self._all_ended
        timeout = self.clock.callLater(self.settings.kill_grace + 1.0, self._finish_shutdown)
        waiting.addBoth(lambda result: timeout.cancel() if timeout.active() else None)
        for process in list(self._running):
            process.stop()
        return waiting

    def _finish_shutdown(self) -> None:
        waiting, self._all_ended = self._all_ended, None
        if waiting is not None:
            if self._running:
                _log.warn("command: {count} processes still there as the daemon stops",
                          count=len(self._running))
            waiting.callback(None)


@implementer(IStrategyFactory, IOptionCheck)
class CommandStrategyFactory:
    name = "command"
    description = "runs a process per connection: messages are lines on its stdin and stdout"

    def check(self, options: Mapping[str, str], context: OptionContext) -> CommandSettings:
        return check_options(options, context.config_dir)

    def create(self, options: Mapping[str, str], context: StrategyContext) -> CommandStrategy:
        settings = context.checked
        if not isinstance(settings, CommandSettings):
            settings = check_options(options, context.config_dir)
        clock: Any = context.clock
        reactor = clock if IReactorProcess.providedBy(clock) else None
        return CommandStrategy(settings, context.clock, reactor)
