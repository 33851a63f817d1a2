"""
One connection's process: what goes to its standard input, what comes back
from its standard output, its standard error to the log, and its end.

Everything that could grow is bounded: a partial output line by
C{max_line} (then close 1009, and the process is stopped), what waits for a
process that does not read its input by C{max_stdin_buffer} (then close 1011),
what stderr puts in the log by line length and lines per second. While the
client is behind (what is sent to it piles up in its transport), the
process's output is not read: the pipe fills and the process blocks on its
next write, until the client catches up (L{IFlowControl}). A session without
flow control holds output to the route's C{max_outbound_buffer}, as any
reply.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from wsdaemon.strategies import IFlowControl, ISession, visible
from wsdaemon.strategies.command.options import CommandSettings

__all__ = ["STDERR_LINE", "CommandProcess"]

_log = Logger(namespace="wsdaemon.command")

#: Longest stderr line logged (bytes); the rest of the line is left out.
STDERR_LINE = 1024
NORMAL = 1000
UNSUPPORTED = 1003
INVALID = 1007
TOO_BIG = 1009
INTERNAL_ERROR = 1011


@implementer(IPushProducer)
class _StdinFlow:
    """
    Registered on the process's standard input: told when what we write to
    it piles up (the process is not reading) and when it drains.
    """

    def __init__(self, process: CommandProcess) -> None:
        self.process = process

    def pauseProducing(self) -> None:
        if not self.process.stdin_full:
            self.process.stdin_full = True
            self.process.stdin_backlog = 0

    def resumeProducing(self) -> None:
        self.process.stdin_full = False
        self.process.stdin_backlog = 0

    def stopProducing(self) -> None:
        self.process.stdin_full = False


@implementer(IPushProducer)
class _OutputFlow:
    """
    Registered on the client's session: told when the client falls behind
    and when it catches up.
    """

    def __init__(self, process: CommandProcess) -> None:
        self.process = process

    def pauseProducing(self) -> None:
        self.process.pause_output()

    def resumeProducing(self) -> None:
        self.process.resume_output()

    def stopProducing(self) -> None:
        pass


class CommandProcess(ProcessProtocol):
    """
    The process of one connection, from its start to its end.

    @ivar pid: the process id once started.
    @ivar ended: True once the process has exited and its pipes are closed.
    """

    def __init__(self, session: ISession, settings: CommandSettings, clock: IReactorTime,
                 max_line: int, on_ended: Callable[[CommandProcess], None]) -> None:
        self.session = session
        self.settings = settings
        self.clock = clock
        self.max_line = max_line
        self.on_ended = on_ended
        self.pid: int | None = None
        self.ended = False
        self.stopping = False
        self.stdin_full = False
        self.stdin_backlog = 0
        #: Whether the process's output is not being read (the client is behind).
        self.output_paused = False
        self._out = bytearray()
        self._err = bytearray()
        self._err_skipping = False
        self._err_window = -1
        self._err_logged = 0
        self._err_dropped = 0
        self._kill_call: IDelayedCall | None = None
        #: Set once the client is being closed for a reason of ours.
        self._closed_by_us = False

    def __repr__(self) -> str:
        return f"<CommandProcess {self.pid} {self.session.session_id}>"

    # -- the client's side -----------------------------------------------------

    def write(self, message: str | bytes) -> None:
        """
        One message from the client: a line on the process's input (text
        mode), or its bytes as they are (binary mode).
        """
        if self.stopping or self.ended:
            return
        if self.settings.binary:
            data = message.encode("utf-8") if isinstance(message, str) else bytes(message)
        elif isinstance(message, str):
            if "\n" in message or "\r" in message:
                self.fail(INVALID, "a message holds a line break",
                          "a message held a line break (CR or LF), which would be more than "
                          "one line on the process's input")
                return
            data = message.encode("utf-8") + b"\n"
        else:
            self.fail(UNSUPPORTED, "binary messages are not lines",
                      "a binary message came on a route of lines (binary = no)")
            return
        transport: Any = self.transport
        transport.write(data)
        if self.stdin_full:
            self.stdin_backlog += len(data)
            if self.stdin_backlog > self.settings.max_stdin_buffer:
                self.fail(INTERNAL_ERROR, "the process is not reading",
                          f"the process does not read its input ({self.stdin_backlog} bytes "
                          "waiting, max_stdin_buffer)")

    def stop(self) -> None:
        """
        The client has gone: end the process, SIGTERM first, SIGKILL after
        C{kill_grace} seconds if it is still there.
        """
        if self.stopping or self.ended:
            return
        self.stopping = True
        transport: Any = self.transport
        try:
            transport.closeStdin()
            # The client is gone: its output is of no use, and a process
            # blocked writing it (paused) would never see SIGTERM's end.
            transport.closeStdout()
        except Exception:  # pragma: no cover - a pipe already gone
            pass
        self.resume_output()  # stderr is still read, to the end
        grace = self.settings.kill_grace
        self._signal("TERM" if grace > 0 else "KILL")
        if grace > 0 and not self.ended:
            self._kill_call = self.clock.callLater(grace, self._kill)

    def pause_output(self) -> None:
        """
        The client is behind: stop reading the process's output.
        """
        if not self.output_paused and not self.stopping and not self.ended:
            self.output_paused = True
            transport: Any = self.transport
            transport.pauseProducing()

    def resume_output(self) -> None:
        """
        The client caught up (or is gone): read the output again.
        """
        if self.output_paused:
            self.output_paused = False
            if not self.ended:
                transport: Any = self.transport
                transport.resumeProducing()

    def _kill(self) -> None:
        self._kill_call = None
        if not self.ended:
            _log.warn("command {route}: process {pid} (session {session_id}) still there "
                      "{grace}s after SIGTERM: SIGKILL", route=self.session.route,
                      pid=self.pid, session_id=self.session.session_id,
                      grace=self.settings.kill_grace)
            self._signal("KILL")

    def _signal(self, name: str) -> None:
        transport: Any = self.transport
        try:
            transport.signalProcess(name)
        except ProcessExitedAlready:
            pass
        except OSError:  # pragma: no cover - gone between the check and the kill
            pass

    def fail(self, code: int, reason: str, why: str) -> None:
        """
        Close the client with C{code} and end the process, saying why in the log.
        """
        if not self._closed_by_us:
            self._closed_by_us = True
            _log.warn("command {route}: closing session {session_id} with {code}: {why}; "
                      "stopping process {pid}", route=self.session.route,
                      session_id=self.session.session_id, code=code, why=why, pid=self.pid)
            self.session.close(code, reason)
        self.stop()

    # -- the process's side ----------------------------------------------------

    def connectionMade(self) -> None:
        transport: Any = self.transport
        self.pid = transport.pid
        transport.registerProducer(_StdinFlow(self), True)
        if IFlowControl.providedBy(self.session):
            flow: Any = self.session
            flow.register_producer(_OutputFlow(self))
        _log.info("command {route}: started process {pid} for session {session_id}",
                  route=self.session.route, pid=self.pid, session_id=self.session.session_id)

    def outReceived(self, data: bytes) -> None:
        if self._closed_by_us:
            return
        try:
            if self.settings.binary:
                self._send_chunks(data)
            else:
                self._lines(data)
        except Exception:
            _log.failure("command {route}: failed relaying the output of process {pid}",
                         route=self.session.route, pid=self.pid)
            self.fail(INTERNAL_ERROR, "internal error", "relaying failed")

    def _send_chunks(self, data: bytes) -> None:
        step = self.max_line
        for start in range(0, len(data), step):
            self.session.send(data[start:start + step])

    def _lines(self, data: bytes) -> None:
        buffer = self._out
        buffer += data
        start = 0
        send = self.session.send
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            line = buffer[start:end]
            if line.endswith(b"\r"):
                del line[-1:]
            if len(line) > self.max_line:
                self._too_long(len(line))
                return
            send(line.decode("utf-8", "replace"))
            start = end + 1
        del buffer[:start]
        if len(buffer) > self.max_line:
            self._too_long(len(buffer))

    def _too_long(self, length: int) -> None:
        self._out.clear()
        self.fail(TOO_BIG, "output line over max_line",
                  f"the process wrote a line of more than {self.max_line} bytes "
                  f"({length} so far)")

    def errReceived(self, data: bytes) -> None:
        buffer = self._err
        buffer += data
        while True:
            end = buffer.find(b"\n")
            if end < 0:
                break
            if self._err_skipping:
                self._err_skipping = False
            else:
                self._stderr_line(bytes(buffer[:end]))
            del buffer[:end + 1]
        if len(buffer) > STDERR_LINE:
            if not self._err_skipping:
                self._stderr_line(bytes(buffer[:STDERR_LINE]), cut=True)
            self._err_skipping = True
            buffer.clear()

    def _stderr_line(self, line: bytes, cut: bool = False) -> None:
        window = int(self.clock.seconds())
        if window != self._err_window:
            self._flush_dropped()
            self._err_window = window
            self._err_logged = 0
        if self._err_logged >= self.settings.stderr_lines_per_second:
            self._err_dropped += 1
            return
        self._err_logged += 1
        if len(line) > STDERR_LINE:
            line, cut = line[:STDERR_LINE], True
        _log.warn("command {route}: process {pid} (session {session_id}) stderr: {line}",
                  route=self.session.route, pid=self.pid, session_id=self.session.session_id,
                  line=visible(line.decode("utf-8", "replace")) + (" [cut]" if cut else ""))

    def _flush_dropped(self) -> None:
        if self._err_dropped:
            _log.warn("command {route}: process {pid} (session {session_id}): {count} stderr "
                      "lines left out of the log (over stderr_lines_per_second)",
                      route=self.session.route, pid=self.pid,
                      session_id=self.session.session_id, count=self._err_dropped)
            self._err_dropped = 0

    def processEnded(self, reason: Failure) -> None:
        self.ended = True
        if self._kill_call is not None and self._kill_call.active():
            self._kill_call.cancel()
        self._kill_call = None
        try:
            if self._err and not self._err_skipping:
                self._stderr_line(bytes(self._err))
            self._flush_dropped()
            if self._out and not self._closed_by_us and not self.settings.binary:
                self.session.send(self._out.decode("utf-8", "replace"))  # no final newline
            self._out.clear()
            self._closed(reason)
        finally:
            self.on_ended(self)

    def _closed(self, reason: Failure) -> None:
        value = reason.value
        code = getattr(value, "exitCode", None)
        signal = getattr(value, "signal", None)
        if reason.check(ProcessDone) or code == 0:
            status, close, text = "exit status 0", NORMAL, "process exited"
        elif reason.check(ProcessTerminated) and signal is not None:
            status, close, text = (f"signal {signal}", INTERNAL_ERROR,
                                   f"process killed by signal {signal}")
        else:
            status, close, text = (f"exit status {code}", INTERNAL_ERROR,
                                   f"process exited with status {code}")
        _log.info("command {route}: process {pid} (session {session_id}) ended: {status}",
                  route=self.session.route, pid=self.pid, session_id=self.session.session_id,
                  status=status)
        if not self._closed_by_us and not self.stopping:
            self._closed_by_us = True
            self.session.close(close, text)
