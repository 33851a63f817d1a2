"""
The command strategy on a fake process reactor and a test clock: options,
the environment, lines both ways, closes, slots, stopping, bounds.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.interfaces import IReactorCore, IReactorProcess
from twisted.internet.task import Clock
from twisted.logger import LogEvent, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import classImplements, implementer

from wsdaemon.config import ConfigError, load_config
from wsdaemon.interfaces import IFlowControl
from wsdaemon.records import HandshakeRefused, HandshakeRequest, MessageLimits
from wsdaemon.strategies.api import OptionError
from wsdaemon.strategies.command.options import CommandSettings, check_options
from wsdaemon.strategies.command.process import CommandProcess
from wsdaemon.strategies.command.strategy import CommandStrategy
from wsdaemon.testing import RecordingSession

CAT = "/bin/cat"


class FakeTransport:
    """A process's transport: records writes and signals."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.written: list[bytes] = []
        self.signals: list[str] = []
        self.stdin_closed = False
        self.stdout_closed = False
        self.producer: Any = None
        self.exited = False
        self.reading = True

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def closeStdin(self) -> None:
        self.stdin_closed = True

    def closeStdout(self) -> None:
        self.stdout_closed = True

    def pauseProducing(self) -> None:
        self.reading = False

    def resumeProducing(self) -> None:
        self.reading = True

    def signalProcess(self, name: str) -> None:
        if self.exited:
            raise ProcessExitedAlready()
        self.signals.append(name)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer


class FlowSession(RecordingSession):
    """A recording session with flow control: keeps the producer."""

    producer: Any = None

    def register_producer(self, producer: Any) -> None:
        self.producer = producer


classImplements(FlowSession, IFlowControl)


@implementer(IReactorProcess, IReactorCore)
class FakeProcessReactor:
    """Starts nothing: keeps what it was asked to start, and its shutdown
    triggers."""

    def __init__(self) -> None:
        self.spawned: list[dict[str, Any]] = []
        self.triggers: dict[int, Any] = {}

    def addSystemEventTrigger(self, phase: str, event: str, callable: Any) -> int:
        assert (phase, event) == ("before", "shutdown")
        handle = len(self.triggers) + 1
        self.triggers[handle] = callable
        return handle

    def removeSystemEventTrigger(self, handle: int) -> None:
        del self.triggers[handle]

    def shut_down(self) -> Any:
        """Fire the shutdown triggers once, as the reactor stopping does."""
        (handle,) = self.triggers
        return self.triggers.pop(handle)()

    def spawnProcess(self, processProtocol: Any, executable: Any, args: Any = (),
                     env: Any = None, path: Any = None, uid: Any = None, gid: Any = None,
                     usePTY: Any = False, childFDs: Any = None) -> Any:
        transport = FakeTransport(1000 + len(self.spawned))
        self.spawned.append({"protocol": processProtocol, "executable": executable,
                             "args": args, "env": env, "path": path, "transport": transport})
        processProtocol.makeConnection(transport)
        return transport


def settings(**changes: Any) -> CommandSettings:
    values: dict[str, Any] = {"executable": CAT, "argv": ("cat",), "working_dir": "/"}
    values.update(changes)
    return CommandSettings(**values)


def request(session_id: str = "s1", **changes: Any) -> HandshakeRequest:
    values: dict[str, Any] = {
        "session_id": session_id, "path": "/cmd", "query": "a=1&b=2",
        "headers": {"user-agent": "tester", "cookie": "secret=1", "x-trace": "t-1"},
        "subprotocols": (), "peer": "tcp:127.0.0.1:50312"}
    values.update(changes)
    return HandshakeRequest(**values)


class Route:
    """A strategy, its clock and reactor, and one connection opened on it."""

    def __init__(self, **changes: Any) -> None:
        self.clock = Clock()
        self.reactor = FakeProcessReactor()
        self.strategy = CommandStrategy(settings(**changes), self.clock, self.reactor)

    def open(self, session_id: str = "s1", session_class: type[RecordingSession] = RecordingSession,
             **request_changes: Any) -> Any:
        answer = self.strategy.connecting(request(session_id, **request_changes))
        answer.addErrback(lambda f: pytest.fail(str(f)))
        session = session_class(session_id=session_id, route="/cmd",
                                client_id=f"client-of-{session_id}")
        self.strategy.connection_opened(session)
        return session

    def process(self, index: int = -1) -> CommandProcess:
        protocol: CommandProcess = self.reactor.spawned[index]["protocol"]
        return protocol

    def transport(self, index: int = -1) -> FakeTransport:
        transport: FakeTransport = self.reactor.spawned[index]["transport"]
        return transport


def ended(process: CommandProcess, code: int | None = 0, signal: int | None = None) -> None:
    process.transport.exited = True  # type: ignore[union-attr]
    reason = (Failure(ProcessDone(0)) if code == 0 and signal is None
              else Failure(ProcessTerminated(code, signal)))
    process.processEnded(reason)


@pytest.fixture
def logged() -> Any:
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def texts(events: list[LogEvent]) -> list[str]:
    from twisted.logger import formatEvent

    return [formatEvent(e) for e in events if e.get("log_namespace") == "wsdaemon.command"]


# -- options ---------------------------------------------------------------


def test_a_missing_executable_is_a_config_error_naming_file_line_section_key(
        tmp_path: Path) -> None:
    """The executable is looked for when the config is read: one that is not
    there is a ConfigError naming the file, the line, the route and the key."""
    config = tmp_path / "wsdaemon.ini"
    config.write_text("[wsdaemon]\nlisten = tcp:0\n\n[route:/cmd]\nstrategy = command\n"
                      "command = ./no-such-program --flag\n")
    with pytest.raises(ConfigError) as error:
        load_config(config)
    assert error.value.section == "route:/cmd"
    assert error.value.key == "command"
    assert error.value.line == 6
    assert "no-such-program" in str(error.value) and str(config) in str(error.value)


def test_the_command_is_split_as_a_shell_would_with_no_shell(tmp_path: Path) -> None:
    """Quotes group words; a relative program is found from the config's
    directory, a bare name on the passed PATH; nothing runs a shell."""
    program = tmp_path / "bin" / "reply"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    checked = check_options({"command": "bin/reply 'two words' $HOME"}, tmp_path)
    assert checked.executable == str(program)
    assert checked.argv == ("bin/reply", "two words", "$HOME")
    checked = check_options({"command": "cat -u"}, tmp_path, environ={"PATH": "/usr/bin:/bin"})
    assert Path(checked.executable).name == "cat" and checked.argv == ("cat", "-u")


@pytest.mark.parametrize(("options", "key"), [
    ({"command": ""}, "command"),
    ({"command": "'unclosed"}, "command"),
    ({"command": "no-such-program-xyz"}, "command"),
    ({"command": "cat", "max_processes": "0"}, "max_processes"),
    ({"command": "cat", "max_processes": "１０"}, "max_processes"),
    ({"command": "cat", "max_line": "lots"}, "max_line"),
    ({"command": "cat", "kill_grace": "-1"}, "kill_grace"),
    ({"command": "cat", "binary": "maybe"}, "binary"),
    ({"command": "cat", "pass_headers": "sec-websocket-key"}, "pass_headers"),
    ({"command": "cat", "working_dir": "no/such/dir"}, "working_dir"),
    ({"command": "cat", "shell": "yes"}, "shell"),
])
def test_wrong_options_name_their_key(options: dict[str, str], key: str,
                                      tmp_path: Path) -> None:
    """Each wrong option is an OptionError naming it."""
    with pytest.raises(OptionError) as error:
        check_options(options, tmp_path, environ={"PATH": "/usr/bin:/bin"})
    assert error.value.key == key


def test_a_program_that_is_not_executable_is_refused(tmp_path: Path) -> None:
    """A file without the execute bit is a config error, not a failure later."""
    (tmp_path / "script").write_text("#!/bin/sh\n")
    with pytest.raises(OptionError, match="not executable"):
        check_options({"command": "./script"}, tmp_path)


def test_defaults(tmp_path: Path) -> None:
    """The documented defaults; only PATH and LANG of the daemon's environment."""
    checked = check_options({"command": "cat"}, tmp_path,
                            environ={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8",
                                     "SECRET": "x"})
    assert checked.environ == (("PATH", "/usr/bin:/bin"), ("LANG", "C.UTF-8"))
    assert (checked.max_processes, checked.kill_grace, checked.max_line,
            checked.max_stdin_buffer, checked.stderr_lines_per_second, checked.binary) == (
        64, 2.0, 65536, 1048576, 20, False)
    assert checked.working_dir == str(tmp_path.resolve())
    sized = check_options({"command": "cat", "max_line": "2KiB", "max_stdin_buffer": "1 MiB"},
                          tmp_path, environ={"PATH": os.defpath})
    assert (sized.max_line, sized.max_stdin_buffer) == (2048, 1048576)


# -- starting: the process and its environment -----------------------------


def test_a_process_starts_when_the_connection_opens_with_only_its_environment() -> None:
    """argv as written, the checked executable, the working directory, and an
    environment of CGI variables, the allowed headers, the ids and the passed
    variables: nothing else of the daemon's."""
    route = Route(pass_headers=("user-agent", "x-trace", "x-absent"),
                  environ=(("PATH", "/usr/bin"),))
    route.open()
    spawned = route.reactor.spawned[0]
    assert (spawned["executable"], spawned["args"], spawned["path"]) == (CAT, ["cat"], "/")
    assert spawned["env"] == {
        "PATH": "/usr/bin", "GATEWAY_INTERFACE": "websocketd-CGI/0.1",
        "SERVER_SOFTWARE": "wsdaemon", "REQUEST_METHOD": "GET",
        "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "50312", "PATH_INFO": "/cmd",
        "QUERY_STRING": "a=1&b=2", "WSDAEMON_ROUTE": "/cmd",
        "WSDAEMON_CLIENT_ID": "client-of-s1", "WSDAEMON_SESSION_ID": "s1",
        "HTTP_USER_AGENT": "tester", "HTTP_X_TRACE": "t-1"}


def test_credentials_never_reach_the_process() -> None:
    """The client's credential (?client_token=, ?access_token=, the daemon's
    cookie, an Authorization header) is left out of QUERY_STRING and HTTP_*,
    whatever pass_headers allows; the rest of the query and cookie stay."""
    route = Route(pass_headers=("cookie", "authorization", "x-trace"))
    route.open(query="a=1&client_token=SECRET1&access_token=SECRET2&b=2",
               headers={"cookie": "theme=dark; wsdaemon_client=SECRET3",
                        "authorization": "Bearer SECRET4", "x-trace": "t-1"})
    env = route.reactor.spawned[0]["env"]
    assert env["QUERY_STRING"] == "a=1&b=2"
    assert env["HTTP_COOKIE"] == "theme=dark" and env["HTTP_X_TRACE"] == "t-1"
    assert "HTTP_AUTHORIZATION" not in env
    assert not any("SECRET" in value for value in env.values())


def test_an_ipv6_peer() -> None:
    """REMOTE_ADDR of an IPv6 client is its address, without the port."""
    route = Route()
    route.open(peer="tcp6:::1:4000")
    env = route.reactor.spawned[0]["env"]
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("::1", "4000")


def test_without_a_process_reactor_connections_close_with_1011() -> None:
    """A clock that cannot start processes (a test's Clock): 1011, slot given back."""
    strategy = CommandStrategy(settings(), Clock(), None)
    strategy.connecting(request())
    session = RecordingSession(session_id="s1")
    strategy.connection_opened(session)
    assert session.closed == (1011, "cannot start the process")
    assert strategy.slots == 0


def test_a_spawn_failure_closes_with_1011_and_gives_the_slot_back() -> None:
    """spawnProcess raising (out of file descriptors, fork failing): 1011."""
    route = Route()

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError(24, "Too many open files")

    route.reactor.spawnProcess = broken  # type: ignore[method-assign]
    session = route.open()
    assert session.closed == (1011, "cannot start the process")
    assert route.strategy.slots == 0


# -- lines both ways -------------------------------------------------------


def test_messages_are_lines_on_stdin_and_stdout_lines_are_messages() -> None:
    """A message is written with a newline; output lines cut anywhere, CRLF or
    LF, come back one message each, decoded as UTF-8 (bad bytes replaced)."""
    route = Route()
    session = route.open()
    route.strategy.message_received(session, "héllo")
    assert route.transport().written == ["héllo\n".encode()]
    process = route.process()
    process.outReceived(b"one\ntw")
    process.outReceived(b"o\r\n\nthr\xffee\n")
    assert session.sent == ["one", "two", "", "thr\ufffdee"]


def test_a_line_break_in_a_message_closes_with_1007() -> None:
    """A message with CR or LF would be several lines: refused (1007), the
    process stopped, nothing written."""
    for text in ("two\nlines", "carriage\rreturn"):
        route = Route()
        session = route.open()
        route.strategy.message_received(session, text)
        assert session.closed == (1007, "a message holds a line break")
        assert route.transport().written == []
        assert route.transport().signals == ["TERM"]


def test_a_binary_message_on_a_line_route_closes_with_1003() -> None:
    """Binary messages are not lines: 1003."""
    route = Route()
    session = route.open()
    route.strategy.message_received(session, b"\x00\x01")
    assert session.closed == (1003, "binary messages are not lines")


def test_binary_mode_relays_bytes_both_ways() -> None:
    """binary = yes: a message's bytes are written as they are (text as
    UTF-8, no newline added); each read of stdout is one binary message, cut
    at the route's max_message_size."""
    route = Route(binary=True)
    session = route.open(limits=MessageLimits(max_message_size=4))
    route.strategy.message_received(session, b"\x00\n")
    route.strategy.message_received(session, "é")
    assert route.transport().written == [b"\x00\n", "é".encode()]
    route.process().outReceived(b"abcdefghij")
    assert session.sent == [b"abcd", b"efgh", b"ij"]


def test_a_line_over_max_line_closes_with_1009_and_stops_the_process() -> None:
    """At max_line a line goes through; one byte over (whole, or still
    without its newline) closes 1009 and stops the process."""
    route = Route(max_line=8)
    session = route.open()
    route.process().outReceived(b"12345678\n")
    assert session.sent == ["12345678"]
    route.process().outReceived(b"123456789")
    assert session.closed == (1009, "output line over max_line")
    assert route.transport().signals == ["TERM"]
    route.process().outReceived(b"more\n")
    assert session.sent == ["12345678"]


def test_max_line_is_at_most_the_routes_max_message_size() -> None:
    """A line the route could not send is over the limit too."""
    route = Route(max_line=100)
    session = route.open(limits=MessageLimits(max_message_size=5))
    route.process().outReceived(b"123456\n")
    assert session.closed is not None and session.closed[0] == 1009


# -- the end -----------------------------------------------------------------


@pytest.mark.parametrize(("code", "signal", "closed"), [
    (0, None, (1000, "process exited")),
    (3, None, (1011, "process exited with status 3")),
    (None, 9, (1011, "process killed by signal 9")),
])
def test_the_process_ending_closes_the_connection(code: int | None, signal: int | None,
                                                  closed: tuple[int, str]) -> None:
    """Exit 0: 1000; any other status or a signal: 1011. A last line without
    its newline is sent first; the slot is given back."""
    route = Route()
    session = route.open()
    route.process().outReceived(b"last words")
    ended(route.process(), code, signal)
    assert session.sent == ["last words"]
    assert session.closed == closed
    assert route.strategy.slots == 0


def test_the_client_leaving_sends_sigterm_then_sigkill_after_the_grace() -> None:
    """stdin closed and SIGTERM at once; SIGKILL kill_grace seconds later on
    the clock if the process is still there; the slot is held until it ends."""
    route = Route(kill_grace=2.0)
    session = route.open()
    route.strategy.connection_closed(session, 1000, "")
    transport = route.transport()
    assert transport.stdin_closed and transport.signals == ["TERM"]
    route.clock.advance(1.9)
    assert transport.signals == ["TERM"]
    assert route.strategy.slots == 1
    route.clock.advance(0.1)
    assert transport.signals == ["TERM", "KILL"]
    ended(route.process(), None, 9)
    assert route.strategy.slots == 0
    assert route.clock.getDelayedCalls() == []


def test_a_process_ending_on_sigterm_leaves_no_timer() -> None:
    """The SIGKILL timer is cancelled when the process ends within the grace."""
    route = Route()
    session = route.open()
    route.strategy.connection_closed(session, None, "")
    ended(route.process(), None, 15)
    assert route.clock.getDelayedCalls() == []
    assert route.transport().signals == ["TERM"]


def test_the_output_is_not_read_while_the_client_is_behind() -> None:
    """On a session with flow control, the process's output stops being read
    when the client falls behind and is read again when it catches up; once
    the client has gone, stdout is closed and the rest (stderr) read."""
    route = Route()
    session = route.open(session_class=FlowSession)
    transport = route.transport()
    session.producer.pauseProducing()
    assert not transport.reading and route.process().output_paused
    session.producer.resumeProducing()
    assert transport.reading
    session.producer.pauseProducing()
    route.strategy.connection_closed(session, None, "")
    assert transport.reading and transport.stdout_closed and transport.stdin_closed
    session.producer.pauseProducing()  # late: changes nothing
    assert transport.reading


def test_kill_grace_zero_is_sigkill_at_once() -> None:
    """kill_grace = 0: SIGKILL straight away, no timer."""
    route = Route(kill_grace=0.0)
    session = route.open()
    route.strategy.connection_closed(session, 1000, "")
    assert route.transport().signals == ["KILL"]
    assert route.clock.getDelayedCalls() == []


def test_the_daemon_stopping_waits_for_its_processes_up_to_the_grace() -> None:
    """A shutdown trigger is registered while processes run (removed once
    none does); when the reactor stops, every process gets SIGTERM, and the
    stop waits until they have ended, or SIGKILL at kill_grace and one more
    second at most."""
    route = Route(kill_grace=2.0)
    first = route.open("s1")
    route.open("s2")
    assert len(route.reactor.triggers) == 1
    route.strategy.connection_closed(first, 1000, "")
    ended(route.process(0), None, 15)
    assert len(route.reactor.triggers) == 1
    waiting = route.reactor.shut_down()
    assert route.transport(1).signals == ["TERM"]
    assert isinstance(waiting, Deferred) and not waiting.called
    route.clock.advance(2)
    assert route.transport(1).signals == ["TERM", "KILL"]
    ended(route.process(1), None, 9)
    assert waiting.called and route.clock.getDelayedCalls() == []

    route = Route(kill_grace=1.0)
    route.open()
    waiting = route.reactor.shut_down()
    route.clock.advance(2)  # SIGKILL did not end it: the daemon stops anyway
    assert waiting.called and route.transport().signals == ["TERM", "KILL"]
    ended(route.process(), None, 9)
    assert route.reactor.triggers == {}


def test_no_trigger_is_left_once_no_process_runs() -> None:
    """The last process ending removes the shutdown trigger: an old strategy
    (after a reload) is not kept alive by the reactor."""
    route = Route()
    session = route.open()
    route.strategy.connection_closed(session, 1000, "")
    ended(route.process(), None, 15)
    assert route.reactor.triggers == {}


# -- bounds -------------------------------------------------------------------


def test_max_processes_refuses_the_handshake_with_503_until_a_process_ends() -> None:
    """Slots are taken at the handshake and given back when the process has
    ended (not when the client leaves): over max_processes, 503."""
    route = Route(max_processes=2)
    first = route.open("s1")
    route.open("s2")
    refused: list[Failure] = []
    route.strategy.connecting(request("s3")).addErrback(refused.append)
    assert refused and isinstance(refused[0].value, HandshakeRefused)
    assert refused[0].value.status == 503
    route.strategy.connection_closed(first, 1000, "")
    route.strategy.connecting(request("s4")).addErrback(refused.append)
    assert len(refused) == 2
    ended(route.process(0), None, 15)
    answer: Deferred[Any] = route.strategy.connecting(request("s5"))
    results: list[object] = []
    answer.addBoth(results.append)
    assert len(refused) == 2 and not isinstance(results[0], Failure)  # accepted this time
    route.strategy.abandoned("s5")
    assert route.strategy.slots == 1


def test_a_process_not_reading_stdin_closes_with_1011_past_max_stdin_buffer(
        logged: list[LogEvent]) -> None:
    """Once stdin's buffer is full (the producer paused), more than
    max_stdin_buffer bytes written closes the client 1011 with a log line and
    stops the process; while it drains, nothing is counted."""
    route = Route(max_stdin_buffer=10)
    session = route.open()
    producer = route.transport().producer
    producer.pauseProducing()
    route.strategy.message_received(session, "12345")  # 6 bytes
    producer.resumeProducing()
    producer.pauseProducing()
    route.strategy.message_received(session, "12345")
    assert session.closed is None
    route.strategy.message_received(session, "12345")  # 12 bytes waiting
    assert session.closed == (1011, "the process is not reading")
    assert route.transport().signals == ["TERM"]
    assert any("does not read its input" in line for line in texts(logged))


def test_stderr_is_logged_escaped_cut_and_rate_bounded(logged: list[LogEvent]) -> None:
    """Each stderr line is one log line with control characters escaped;
    lines are cut at 1 KiB; past stderr_lines_per_second in one second the
    rest are counted, and the count logged."""
    route = Route(stderr_lines_per_second=2)
    route.open()
    process = route.process()
    process.errReceived(b"bad \x1b[31mred\x1b[0m\n" + b"x" * 3000 + b"\nthird\nfourth\n")
    route.clock.advance(1)
    process.errReceived(b"next second\n")
    lines = texts(logged)
    stderr = [line for line in lines if "stderr:" in line]
    assert "bad \\x1b[31mred\\x1b[0m" in stderr[0]
    assert stderr[1].endswith("x" * 1024 + " [cut]")
    assert "next second" in stderr[2] and len(stderr) == 3
    assert any("2 stderr lines left out" in line for line in lines)


def test_a_flood_without_newlines_on_stderr_stays_bounded() -> None:
    """stderr with no newline keeps at most 1 KiB, whatever comes."""
    route = Route()
    route.open()
    process = route.process()
    for _ in range(100):
        process.errReceived(b"y" * 8192)
    assert len(process._err) <= 1024  # noqa: SLF001 - the bound itself


def test_the_strategy_reads_options_through_the_factory(tmp_path: Path) -> None:
    """create() accepts check()'s result; without it, it checks the options."""
    from wsdaemon.strategies.api import OptionContext, StrategyContext
    from wsdaemon.strategies.command.strategy import CommandStrategyFactory

    factory = CommandStrategyFactory()
    options = MappingProxyType({"command": "cat"})
    checked = factory.check(options, OptionContext(config_dir=tmp_path, route="/c"))
    strategy = factory.create(options, StrategyContext(clock=Clock(), config_dir=tmp_path,
                                                       route="/c", checked=checked))
    assert strategy.settings is checked and strategy.reactor is None
