"""
Several worker processes serving the same listening sockets.

With C{[wsdaemon] workers = N} the main process only supervises: it opens
every listener once (or takes systemd's), starts N workers that inherit
them (the kernel spreads new connections among the processes accepting on
one socket), restarts a worker that dies, passes SIGHUP on once it has
checked the new config itself (a bad config leaves every worker on the old
one), stops them all on SIGTERM (each closes its clients with 1001) and
tells systemd C{READY=1} only once every worker listens.

A worker is C{python -m twisted wsdaemon --config ... --worker N}: the same
daemon, listening on inherited sockets (C{WSDAEMON_LISTEN_FDS}) and saying
"ready" on a pipe (C{WSDAEMON_READY_FD}) instead of to systemd. It stops if
the supervisor is gone (C{WSDAEMON_SUPERVISOR_PID}, and the end of its stdin:
L{wsdaemon.server.lifeline}).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks, succeed
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from wsdaemon.config import ConfigError, DaemonConfig
from wsdaemon.cores import usable_cores
from wsdaemon.server import loglevel
from wsdaemon.server.aggregate import AggregateResource
from wsdaemon.server.assembly import check_reloadable
from wsdaemon.server.lifeline import PARENT_FD, SUPERVISOR_PID_ENV
from wsdaemon.server.reloads import ReloadStatus, with_reload_status
from wsdaemon.server.service import ignore_signals_while_stopping
from wsdaemon.server.systemd import notify, reloading_message

__all__ = ["ADMIN_SOCKET_ENV", "LISTEN_FDS_ENV", "READY_FD", "READY_FD_ENV", "Supervisor",
           "open_listener", "tag_worker_logs"]

_log = Logger(namespace="wsdaemon.supervisor")

#: The pipe on which a worker says it is ready (its fd in the worker).
READY_FD = 3
#: The first inherited listening socket's fd in a worker.
FIRST_LISTEN_FD = 4
LISTEN_FDS_ENV = "WSDAEMON_LISTEN_FDS"
READY_FD_ENV = "WSDAEMON_READY_FD"
#: Where a worker serves its admin API for the supervisor's to ask.
ADMIN_SOCKET_ENV = "WSDAEMON_ADMIN_SOCKET"
#: Restart delays after a worker dies: doubling from the first to the last.
RESTART_DELAYS = (0.5, 30.0)
#: A worker that ran this long resets its restart delay.
STABLE_AFTER = 60.0
#: How long a stop waits for workers before killing them.
STOP_WAIT = 15.0


def _parts(description: str) -> tuple[str, list[str], dict[str, str]]:
    """
    An endpoint string's type, positional and keyword arguments ("\\:"
    escapes a colon).
    """
    pieces = [p.replace("\\:", ":") for p in re.split(r"(?<!\\):", description)]
    kind, args, kwargs = pieces[0], [], {}
    for piece in pieces[1:]:
        if "=" in piece:
            key, _, value = piece.partition("=")
            kwargs[key] = value
        else:
            args.append(piece)
    return kind, args, kwargs


def open_listener(description: str, environ: Mapping[str, str] | None = None,
                  reuse_port: bool = False) -> tuple[socket.socket, str]:
    """
    Open (or take from systemd) the listening socket an endpoint string
    describes.

    @param reuse_port: a TCP socket of its own for one worker, on a port
        shared with the others' (SO_REUSEPORT: the kernel spreads new
        connections evenly among the sockets, where one shared socket lets
        the first worker to wake take most of a burst).

    @return: the socket and its family name for the worker (C{INET},
        C{INET6} or C{UNIX}).
    @raise ValueError: for an endpoint type workers cannot share.
    @raise OSError: if it cannot listen.
    """
    kind, args, kwargs = _parts(description)
    env = os.environ if environ is None else environ
    if kind == "systemd":
        passed = _systemd_descriptors(env)
        index = int(kwargs.get("index", "0"))
        if index >= len(passed):
            raise ValueError(f"systemd passed {len(passed)} socket(s) (LISTEN_FDS); index "
                             f"{index} is not one: is the .socket unit active?")
        family = kwargs.get("domain", "INET")
        number = {"INET": socket.AF_INET, "INET6": socket.AF_INET6,
                  "UNIX": socket.AF_UNIX}[family]
        return socket.socket(number, socket.SOCK_STREAM, fileno=passed[index]), family
    backlog = int(kwargs.get("backlog", "50"))
    if kind in ("tcp", "tcp6"):
        port = int(kwargs.get("port", args[0] if args else "0"))
        interface = kwargs.get("interface", "::" if kind == "tcp6" else "")
        family_name = "INET6" if kind == "tcp6" or ":" in interface else "INET"
        sock = socket.socket(socket.AF_INET6 if family_name == "INET6" else socket.AF_INET,
                             socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((interface, port))
    elif kind == "unix":
        path = kwargs.get("address", args[0] if args else "")
        family_name = "UNIX"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if os.path.exists(path) and kwargs.get("lockfile", "0") == "0":
            os.unlink(path)
        sock.bind(path)
        if "mode" in kwargs:
            os.chmod(path, int(kwargs["mode"], 8))
    else:
        raise ValueError(f"{kind}: workers share tcp, tcp6, unix and systemd listeners only")
    sock.listen(backlog)
    sock.setblocking(False)
    return sock, family_name


def _systemd_descriptors(env: Mapping[str, str]) -> list[int]:
    """
    The sockets systemd passed this process. Twisted reads (and removes)
    C{LISTEN_PID}/C{LISTEN_FDS} when its endpoints module is imported, so
    they are taken from what it found, or else from the environment.
    """
    from twisted.internet.endpoints import _SystemdParser

    found = list(_SystemdParser._sddaemon.inheritedDescriptors())
    if found:
        return found
    if env.get("LISTEN_PID") == str(os.getpid()):
        return list(range(3, 3 + int(env.get("LISTEN_FDS", "0"))))
    return []


class _Worker(ProcessProtocol):
    """
    One worker process, as the supervisor sees it.
    """

    def __init__(self, supervisor: Supervisor, number: int) -> None:
        self.supervisor = supervisor
        self.number = number
        self.ready = False
        self.started_at = 0.0
        self.ended: Deferred[None] = Deferred()
        self._said = b""

    def connectionMade(self) -> None:
        self.started_at = self.supervisor.reactor.seconds()

    def childDataReceived(self, fd: int, data: bytes) -> None:
        if fd != READY_FD:
            return
        self._said += data
        if b"ready\n" in self._said and not self.ready:
            self.ready = True
            self.supervisor.worker_ready(self)

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)
        self.supervisor.worker_ended(self, reason)


class _SupervisorAdmin(AggregateResource):
    """
    The workers' combined admin API, with the supervisor's reloads, and a
    worker's 405 with its C{Allow} header (which the relay does not carry:
    it is in the answer's body too).
    """

    def __init__(self, *args: Any, reloads: ReloadStatus, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reloads = reloads

    @inlineCallbacks
    def _answer(self, method: bytes, uri: bytes, headers: Any, body: bytes) -> Any:
        status, content_type, data = yield super()._answer(method, uri, headers, body)
        route = uri.split(b"?", 1)[0].rstrip(b"/")
        return with_reload_status(route, status, content_type, data, self.reloads)

    @staticmethod
    def _send(request: Any, status: int, content_type: bytes, body: bytes) -> None:
        if status == 405:
            try:
                allow = json.loads(body).get("allow")
            except (ValueError, AttributeError):
                allow = None
            if isinstance(allow, list) and all(isinstance(m, str) for m in allow):
                request.setHeader(b"allow", ", ".join(allow).encode("ascii", "replace"))
        AggregateResource._send(request, status, content_type, body)


class Supervisor(Service):
    """
    @param command: a worker's command line, given its number.
    @param read_config: reads the config again (a reload), raising
        L{ConfigError}.
    """

    def __init__(self, config: DaemonConfig, reactor: Any,
                 command: Callable[[int], Sequence[str]],
                 read_config: Callable[[], DaemonConfig] | None = None,
                 handle_signals: bool = True) -> None:
        self.config = config
        self.reactor = reactor
        self.command = command
        self.read_config = read_config
        self.handle_signals = handle_signals
        #: Listening sockets: each worker's own (tcp, with SO_REUSEPORT), or
        #: one shared by all (unix, systemd's), in the order of the listeners.
        self.sockets: dict[int, list[tuple[socket.socket, str]]] = {}
        self.workers: dict[int, _Worker] = {}
        self.delays: dict[int, float] = {}
        self.stopping = False
        self.ready = False
        self._opening = ""
        #: The workers' admin sockets live here (private to this user).
        self.admin_dir: str | None = None
        self.admin_site: Any = None
        self._admin_ports: list[Any] = []
        #: What the last reload did (the admin API's /metrics and /healthz).
        self.reloads = ReloadStatus(reactor)

    # -- start -----------------------------------------------------------------------

    def privilegedStartService(self) -> None:
        try:
            self._open_sockets()
        except (OSError, ValueError) as e:
            _log.critical("cannot listen on {endpoint} ([wsdaemon] listen (or --listen)): "
                          "{error}", endpoint=self._opening, error=str(e))
            raise SystemExit(1) from None
        super().privilegedStartService()

    def _open_sockets(self) -> None:
        """
        TCP listeners: one socket per worker on the shared port
        (SO_REUSEPORT); others: one socket all workers share.
        """
        count = self.config.workers
        self.sockets = {number: [] for number in range(count)}
        for description in self.config.listen:
            self._opening = description
            kind = description.split(":", 1)[0]
            if kind in ("tcp", "tcp6") and hasattr(socket, "SO_REUSEPORT"):
                first = open_listener(description, reuse_port=True)
                self.sockets[0].append(first)
                # tcp:0 picks a port: the others join the one the first got.
                port = first[0].getsockname()[1]
                same = re.sub(r"^(tcp6?):\d+", rf"\g<1>:{port}", description)
                same = re.sub(r"(:port=)\d+", rf"\g<1>{port}", same)
                for number in range(1, count):
                    self.sockets[number].append(open_listener(same, reuse_port=True))
            else:
                shared = open_listener(description)
                for number in range(count):
                    self.sockets[number].append(shared)

    def startService(self) -> None:
        if not self.sockets:
            self.privilegedStartService()
        super().startService()
        for description in self.config.listen:
            _log.info("listening on {endpoint}", endpoint=description)
        if self.config.admin is not None:
            self._start_admin()
        _log.info("starting {count} workers (this process may use {cores})",
                  count=self.config.workers, cores=str(usable_cores()))
        for number in range(self.config.workers):
            self.spawn(number)
        if self.handle_signals:
            reactor = self.reactor
            signal.signal(signal.SIGHUP, lambda *_: reactor.callFromThread(self.reload))
            reactor.callWhenRunning(self._install_stop_signal)

    def _install_stop_signal(self) -> None:
        # Like the daemon's own: exit 0 on SIGTERM; a second signal while
        # stopping is ignored, quietly.
        reactor = self.reactor
        asked: list[bool] = []

        def stop_once() -> None:
            if not asked and reactor.running:
                asked.append(True)
                reactor.stop()

        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, lambda *_: reactor.callFromThread(stop_once))

    def _start_admin(self) -> None:
        """
        Serve the admin API for the whole daemon: answered from every
        worker's own admin API, on private Unix sockets.
        """
        import tempfile

        from twisted.internet.endpoints import serverFromString

        from wsdaemon.server.admin import AdminSite, PushCounters
        from wsdaemon.server.aggregate import WorkerAdmin

        admin = self.config.admin
        assert admin is not None
        self.admin_dir = tempfile.mkdtemp(prefix="wsdaemon-workers-")
        workers = WorkerAdmin(self.reactor, self.admin_sockets, timeout=admin.request_timeout)
        root = _SupervisorAdmin(workers, lambda: self.config.workers,
                                shared_push=self.config.broker is not None,
                                reloads=self.reloads)
        self.admin_site = AdminSite(None, admin.api_keys, admin.max_body, None,  # type: ignore[arg-type]
                                    PushCounters(), admin.request_timeout,
                                    admin.max_connections, admin.allowed_hosts,
                                    clock=self.reactor, root=root)
        for description in admin.listen:
            endpoint = serverFromString(self.reactor, description)
            d = endpoint.listen(self.admin_site)
            d.addCallback(self._admin_ports.append)
            d.addErrback(self._admin_failed, description)
            _log.info("admin API listening on {endpoint} (for all workers)",
                      endpoint=description)

    def _admin_failed(self, failure: Failure, description: str) -> None:
        _log.critical("cannot listen on {endpoint} ([admin] listen (or --admin-listen)): "
                      "{error}", endpoint=description, error=failure.getErrorMessage())
        self.reactor.stop()

    def admin_sockets(self) -> dict[int, str]:
        """
        @return: each running worker's admin socket.
        """
        if self.admin_dir is None:
            return {}
        return {number: self._admin_socket(number) for number in self.workers}

    def _admin_socket(self, number: int) -> str:
        assert self.admin_dir is not None
        return os.path.join(self.admin_dir, f"worker-{number}.sock")

    def spawn(self, number: int) -> None:
        worker = _Worker(self, number)
        # PARENT_FD: a pipe only this process writes to; its end tells the
        # worker that this process is gone.
        child_fds: dict[int, Any] = {PARENT_FD: "w", 1: 1, 2: 2, READY_FD: "r"}
        inherited = []
        for offset, (sock, family) in enumerate(self.sockets[number]):
            child_fds[FIRST_LISTEN_FD + offset] = sock.fileno()
            inherited.append(f"{FIRST_LISTEN_FD + offset}:{family}")
        env = {key: value for key, value in os.environ.items()
               if key not in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")}
        env[LISTEN_FDS_ENV] = ",".join(inherited)
        env[READY_FD_ENV] = str(READY_FD)
        env[SUPERVISOR_PID_ENV] = str(os.getpid())
        if self.admin_dir is not None:
            env[ADMIN_SOCKET_ENV] = self._admin_socket(number)
        env["PYTHONUNBUFFERED"] = "1"
        command = list(self.command(number))
        self.reactor.spawnProcess(worker, command[0], command, env=env, childFDs=child_fds)
        self.workers[number] = worker
        _log.info("worker {number} started (pid {pid})", number=number,
                  pid=getattr(getattr(worker, "transport", None), "pid", "?"))

    def worker_ready(self, worker: _Worker) -> None:
        if self.ready or self.stopping:
            return
        if all(w.ready for w in self.workers.values()) and \
                len(self.workers) == self.config.workers:
            self.ready = True
            notify(f"READY=1\nSTATUS=serving with {self.config.workers} workers")
            _log.info("ready: {count} workers listening", count=self.config.workers)

    def worker_ended(self, worker: _Worker, reason: Failure) -> None:
        if self.workers.get(worker.number) is worker:
            del self.workers[worker.number]
        if self.stopping:
            return
        status = getattr(reason.value, "exitCode", None)
        signalled = getattr(reason.value, "signal", None)
        ran = self.reactor.seconds() - worker.started_at
        first, last = RESTART_DELAYS
        delay = first if ran >= STABLE_AFTER else min(last, self.delays.get(worker.number,
                                                                           first / 2) * 2)
        self.delays[worker.number] = delay
        _log.warn("worker {number} ended ({how}) after {ran:.1f} s; restarting it in "
                  "{delay:g} s", number=worker.number,
                  how=f"signal {signalled}" if signalled else f"exit status {status}",
                  ran=ran, delay=delay)
        self.reactor.callLater(delay, self._respawn, worker.number)

    def _respawn(self, number: int) -> None:
        if not self.stopping and number not in self.workers:
            self.spawn(number)

    # -- reload ----------------------------------------------------------------------

    def reload(self) -> bool:
        """
        Check the config here first; pass SIGHUP on only if it is good.
        """
        if self.read_config is None:
            return False
        notify(reloading_message())
        try:
            new = self.read_config()
            check_reloadable(self.config, new)
            if new.workers != self.config.workers:
                raise ConfigError(new.path, "the number of workers changed: restart to apply",
                                  section="wsdaemon", key="workers")
        except ConfigError as e:
            self.reloads.refused(e)
            _log.error("reload refused, every worker keeps the previous config: {error}",
                       error=str(e))
            notify("READY=1\nSTATUS=reload refused; running the previous config")
            return False
        self.config = new
        self.reloads.succeeded()
        loglevel.set_level(new.log_level)
        if self.admin_site is not None and new.admin is not None:
            self.admin_site.api_keys = dict(new.admin.api_keys)
            self.admin_site.max_body = new.admin.max_body
            self.admin_site.handshake_timeout = new.admin.request_timeout
            self.admin_site.max_connections = new.admin.max_connections
            self.admin_site.allowed_hosts = new.admin.allowed_hosts
        for worker in self.workers.values():
            self._signal(worker, signal.SIGHUP)
        _log.info("reload passed on to {count} workers", count=len(self.workers))
        notify("READY=1\nSTATUS=serving (reloaded)")
        return True

    @staticmethod
    def _signal(worker: _Worker, number: int) -> None:
        transport = worker.transport
        if transport is not None and getattr(transport, "pid", None):
            try:
                transport.signalProcess(number)
            except Exception:  # already gone: processEnded follows
                pass

    # -- stop ------------------------------------------------------------------------

    def stopService(self) -> Deferred[Any]:
        if self.handle_signals:
            ignore_signals_while_stopping()
        self.stopping = True
        notify("STOPPING=1")
        super().stopService()
        workers = list(self.workers.values())
        _log.info("stopping {count} workers", count=len(workers))
        for worker in workers:
            self._signal(worker, signal.SIGTERM)
        if not workers:
            self._close_sockets()
            return succeed(None)
        kill = self.reactor.callLater(STOP_WAIT, self._kill, workers)

        def done(_: Any) -> None:
            if kill.active():
                kill.cancel()
            self._close_sockets()
            _log.info("stopped")

        d: Deferred[Any] = DeferredList([w.ended for w in workers])
        d.addCallback(done)
        return d

    def _kill(self, workers: list[_Worker]) -> None:
        for worker in workers:
            if not worker.ended.called:
                _log.warn("worker {number} did not stop in time: killing it",
                          number=worker.number)
                self._signal(worker, signal.SIGKILL)

    def _close_sockets(self) -> None:
        closed = set()
        for sockets in self.sockets.values():
            for sock, _ in sockets:
                if id(sock) not in closed:
                    closed.add(id(sock))
                    sock.close()
        self.sockets = {}
        for port in self._admin_ports:
            port.stopListening()
        self._admin_ports = []
        if self.admin_dir is not None:
            import shutil

            shutil.rmtree(self.admin_dir, ignore_errors=True)
            self.admin_dir = None


def tag_worker_logs(observer: Callable[[dict[str, Any]], None],
                    number: int) -> Callable[[dict[str, Any]], None]:
    """
    Wrap a worker's log observer so that each line names the worker: the
    bracket of C{2026-11-29T01:02:03+0000 [wsdaemon.protocol#info worker 2]}.
    """
    tag = f" worker {number}"

    def tagged(event: dict[str, Any]) -> None:
        system = event.get("log_system")
        if system is None:
            level = event.get("log_level")
            system = (f"{event.get('log_namespace', '-')}#"
                      f"{level.name if level is not None else '-'}")
        event = dict(event, log_system=f"{system}{tag}")
        observer(event)

    return tagged


def worker_command(argv: Sequence[str], number: int) -> list[str]:
    """
    A worker's command line: this daemon's options, run by C{twist}.
    """
    # --log-level=debug: the worker's [wsdaemon] log_level decides, not twist.
    return [sys.executable, "-m", "twisted", "--log-format=text", "--log-level=debug",
            "wsdaemon", *argv,
            "--worker", str(number)]
