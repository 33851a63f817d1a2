"""
wsdaemon-replay: a recording into rules that replay the server's side.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from wsdaemon.strategies.proxy.recording import Recorder, read_recording
from wsdaemon.strategies.proxy.replay import conversations, main, to_rules
from wsdaemon.strategies.scripted.rules import parse_rules
from wsdaemon.strategies.scripted.strategy import ScriptedStrategy
from wsdaemon.testing import RecordingSession


def record(path: Path) -> None:
    """A conversation: greeting, a text exchange, a binary one, a server close."""
    clock = Clock()
    recorder = Recorder(path, 1 << 20, clock.seconds)
    talk = recorder.conversation("/live", "v2", "ws://upstream/")
    clock.advance(0.1)
    talk.message("server", "hi {you} \x7f")
    clock.advance(0.4)
    talk.message("client", 'say "x"')
    clock.advance(0.2)
    talk.message("server", "x")
    clock.advance(1.0)
    talk.message("server", "x again")
    talk.message("client", b"\xca\xfe")
    talk.message("server", b"\x00")
    talk.closed("server", 4001, "done")
    recorder.close()


def test_rules_replay_the_server_in_order_with_timing(tmp_path: Path) -> None:
    """Greeting with its delay; each client message matched by position (nth)
    and content; the server's answers with their delays (halved at 2x); the
    server's close on the last rule; braces and DEL survive as text."""
    path = tmp_path / "r.jsonl"
    record(path)
    (talk,) = conversations(read_recording(path)).values()
    text = to_rules(talk, "r.jsonl", speed=2)
    rules = parse_rules(text.encode(), tmp_path / "replay.toml")
    assert rules.handshake is not None and rules.handshake.subprotocols == ("v2",)
    assert rules.greetings[0].delay == pytest.approx(0.05)
    first, second = rules.rules
    assert (first.nth, first.matcher.text if first.matcher else None) == (1, 'say "x"')
    assert [m.delay for m in first.messages] == [pytest.approx(0.1), pytest.approx(0.5)]
    assert second.nth == 2 and second.matcher is not None
    assert second.matcher.prefix == b"\xca\xfe"
    assert second.close is not None and (second.close.code, second.close.reason) == (4001,
                                                                                     "done")
    clock = Clock()
    strategy = ScriptedStrategy(rules, clock)
    session = RecordingSession()
    strategy.connection_opened(session)
    clock.advance(0.05)
    assert session.sent == ["hi {you} \x7f"]
    assert strategy.message_received(session, "out of order") is None
    strategy.message_received(session, b"\xca\xfe")  # the 2nd message: answered
    assert session.sent[-1] == b"\x00" and session.closed == (4001, "done")


def test_out_of_order_messages_get_no_answer(tmp_path: Path) -> None:
    """Rule nth: the first rule answers only a first message."""
    path = tmp_path / "r.jsonl"
    record(path)
    (talk,) = conversations(read_recording(path)).values()
    rules = parse_rules(to_rules(talk).encode(), tmp_path / "replay.toml")
    strategy = ScriptedStrategy(rules, Clock())
    session = RecordingSession()
    strategy.connection_opened(session)
    strategy.message_received(session, "something else")
    strategy.message_received(session, 'say "x"')  # right text, but second
    assert session.sent == []


def test_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--list, -o, a missing conversation, a file that is no recording."""
    path = tmp_path / "r.jsonl"
    record(path)
    assert main([str(path), "--list"]) == 0
    assert "/live\t6 message(s)" in capsys.readouterr().out
    assert main([str(path), "-o", str(tmp_path / "out.toml")]) == 0
    assert "nth = 2" in (tmp_path / "out.toml").read_text()
    assert main([str(path), "--conversation", "nope"]) == 1
    (tmp_path / "bad.jsonl").write_text('{"not": "an event"}\n')
    assert main([str(tmp_path / "bad.jsonl")]) == 1
    assert "bad.jsonl:1: not a recorded event" in capsys.readouterr().err
    installed = shutil.which("wsdaemon-replay")
    assert installed, "the wsdaemon-replay command is installed with the package"
    run = subprocess.run([installed, str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "[[rule]]" in run.stdout


def test_recordings_are_bounded(tmp_path: Path) -> None:
    """Past record_max_bytes nothing more is written."""
    path = tmp_path / "r.jsonl"
    recorder = Recorder(path, 400, Clock().seconds)
    talk = recorder.conversation("/x", None, "ws://u/")
    for _ in range(20):
        talk.message("client", "y" * 50)
    recorder.close()
    assert path.stat().st_size <= 400
    assert [json.loads(line)["event"] for line in path.read_text().splitlines()][0] == "open"


def test_recordings_are_bounded_in_bytes(tmp_path: Path) -> None:
    """record_max_bytes counts bytes, not characters: non-ASCII text stops
    the file at the bound, never past it."""
    path = tmp_path / "r.jsonl"
    recorder = Recorder(path, 2100, Clock().seconds)
    talk = recorder.conversation("/x", None, "ws://u/")
    # About 1,100 characters, 2,100 bytes: fits if characters were bytes.
    talk.message("client", "é" * 1000)
    recorder.close()
    assert path.stat().st_size <= 2100
    assert [json.loads(line)["event"] for line in path.read_text().splitlines()] == ["open"]


def test_a_message_over_the_bound_is_not_encoded(tmp_path: Path) -> None:
    """A message that cannot fit is refused before it is encoded (base64,
    JSON): recording 16 MiB into a 4,000-byte file allocates next to nothing."""
    import tracemalloc

    path = tmp_path / "r.jsonl"
    recorder = Recorder(path, 4000, Clock().seconds)
    talk = recorder.conversation("/x", None, "ws://u/")
    data, text = bytes(16 << 20), "x" * (16 << 20)
    tracemalloc.start()
    try:
        talk.message("server", data)
        talk.message("server", text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    recorder.close()
    assert peak < 1 << 20
    assert [json.loads(line)["event"] for line in path.read_text().splitlines()] == ["open"]


def test_recordings_are_private(tmp_path: Path) -> None:
    """Conversations are content: a recording is created 0600 whatever the
    umask, and an existing one readable by others is made 0600 (like the
    operator store)."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        for name in ("new.jsonl", "old.jsonl"):
            path = tmp_path / "dir" / name
            if name == "old.jsonl":
                path.write_text("")
                path.chmod(0o644)
            recorder = Recorder(path, 1 << 20, Clock().seconds)
            recorder.conversation("/x", None, "ws://u/").message("client", "secret")
            recorder.close()
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
    finally:
        os.umask(old)


def test_a_recording_that_cannot_be_written_is_logged_not_raised(tmp_path: Path) -> None:
    """A recording path that cannot be written (here a directory) stops the
    recording, once, without failing the conversation."""
    recorder = Recorder(tmp_path, 1 << 20, Clock().seconds)
    talk = recorder.conversation("/x", None, "ws://u/")
    talk.message("client", "y")
    talk.closed("client", 1000, "")
    recorder.close()


def test_names_are_unique_across_recorders(tmp_path: Path) -> None:
    """Two recorders (two workers) appending to one file at the same moment
    never give two conversations one name."""
    path = tmp_path / "r.jsonl"
    clock = Clock()
    first, second = Recorder(path, 1 << 20, clock.seconds), Recorder(path, 1 << 20, clock.seconds)
    a = first.conversation("/x", None, "ws://u/")
    b = second.conversation("/x", None, "ws://u/")
    a.message("client", "from a")
    b.message("client", "from b")
    first.close()
    second.close()
    found = conversations(read_recording(path))
    assert len(found) == 2
    assert sorted(e["text"] for talk in found.values() for e in talk
                  if e["event"] == "message") == ["from a", "from b"]


def test_a_name_opened_twice_is_never_merged(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A recording made before names were unique may hold two conversations
    under one name: the replay refuses to turn them into one, and --list says
    so; the other conversations still replay."""
    path = tmp_path / "r.jsonl"
    events = [
        {"event": "open", "conversation": "1795-1", "time": 1.0, "path": "/a"},
        {"event": "open", "conversation": "1795-1", "time": 1.0, "path": "/a"},
        {"event": "message", "conversation": "1795-1", "at": 0.1, "from": "server",
         "type": "text", "text": "to whom?"},
        {"event": "open", "conversation": "1795-2", "time": 1.0, "path": "/a"},
        {"event": "message", "conversation": "1795-2", "at": 0.1, "from": "server",
         "type": "text", "text": "hi"},
    ]
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    found = conversations(read_recording(path))
    with pytest.raises(ValueError, match="opened 2 times"):
        to_rules(found["1795-1"])
    assert main([str(path), "--conversation", "1795-1"]) == 1
    assert "opened 2 times" in capsys.readouterr().err
    assert main([str(path), "--list"]) == 0
    assert "opened 2 times" in capsys.readouterr().out
    assert main([str(path), "--conversation", "1795-2"]) == 0


def closing(path: Path, code: int | None, reason: str = "") -> None:
    """One exchange, then the server ends the connection with C{code}."""
    recorder = Recorder(path, 1 << 20, Clock().seconds)
    talk = recorder.conversation("/live", None, "ws://upstream/")
    talk.message("client", "hello")
    talk.message("server", "hi")
    talk.closed("server", code, reason)
    recorder.close()


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012,
                                  1013, 1014, 3000, 4999])
def test_a_server_close_is_replayed_with_its_code(tmp_path: Path, code: int) -> None:
    """Every code a server may send (1013 "try again later" among them) is
    replayed as it was, in rules the daemon accepts."""
    path = tmp_path / "r.jsonl"
    closing(path, code, "later")
    (talk,) = conversations(read_recording(path)).values()
    (rule,) = parse_rules(to_rules(talk).encode(), tmp_path / "replay.toml").rules
    assert rule.close is not None and (rule.close.code, rule.close.reason) == (code, "later")
    assert main([str(path), "-o", str(tmp_path / "out.toml")]) == 0


@pytest.mark.parametrize("code", [1006, 1015, None])
def test_a_dropped_server_is_replayed_as_a_drop(tmp_path: Path, code: int | None) -> None:
    """An upstream that went away without a close frame (1006) is replayed
    with drop = true, not a close code no rule may send."""
    path = tmp_path / "r.jsonl"
    closing(path, code)
    (talk,) = conversations(read_recording(path)).values()
    (rule,) = parse_rules(to_rules(talk).encode(), tmp_path / "replay.toml").rules
    assert rule.drop and rule.close is None
    assert main([str(path), "-o", str(tmp_path / "out.toml")]) == 0


def test_a_close_without_a_code_is_replayed_as_1000(tmp_path: Path) -> None:
    """A close frame with no code (1005) cannot be sent by a rule: 1000 is,
    said in a comment."""
    path = tmp_path / "r.jsonl"
    closing(path, 1005)
    (talk,) = conversations(read_recording(path)).values()
    text = to_rules(talk)
    (rule,) = parse_rules(text.encode(), tmp_path / "replay.toml").rules
    assert rule.close is not None and rule.close.code == 1000
    assert "without a code" in text


def test_rules_the_daemon_would_refuse_are_not_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever it makes is loaded with the daemon's own rules check first:
    rules it would refuse are an error (exit 1, the daemon's message with
    the line), and no file is written."""
    path = tmp_path / "r.jsonl"
    closing(path, 1000)
    monkeypatch.setattr("wsdaemon.strategies.proxy.replay.to_rules",
                        lambda *a, **k: '[[rule]]\ntext = "x"\nclose = 1005\n')
    out = tmp_path / "out.toml"
    assert main([str(path), "-o", str(out)]) == 1
    assert not out.exists()
    err = capsys.readouterr().err
    assert f"{out}:3: close: expected code 1000-1003, 1007-1014 or 3000-4999" in err
    assert main([str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "<stdout>:3: close" in captured.err
