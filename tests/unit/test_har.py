"""
HAR files: a browser's WebSocket frames (Chromium's C{_webSocketMessages})
read as a recording and replayed, recordings exported as HAR that DevTools
loads, and the bounds on both.
"""

from __future__ import annotations

import base64
import json
import stat
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock

from wsdaemon.strategies.proxy import har
from wsdaemon.strategies.proxy.har import HarError, read_har, to_har
from wsdaemon.strategies.proxy.recording import Recorder, read_recording
from wsdaemon.strategies.proxy.replay import conversations, main, to_rules
from wsdaemon.strategies.scripted.rules import parse_rules
from wsdaemon.strategies.scripted.strategy import ScriptedStrategy
from wsdaemon.testing import RecordingSession

T0 = 1796000000.25


def page_har(frames: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """What Chromium's DevTools saves for a page with one WebSocket (cut
    down): the page's own GET, then the WebSocket's entry, answered 101."""
    if frames is None:
        frames = [
            {"type": "receive", "time": T0 + 0.1, "opcode": 1, "data": "welcome"},
            {"type": "send", "time": T0 + 0.5, "opcode": 1, "data": '{"op": "sub", "ts": 1}'},
            {"type": "receive", "time": T0 + 0.75, "opcode": 1, "data": "subscribed {x}"},
            {"type": "send", "time": T0 + 1.0, "opcode": 2,
             "data": base64.b64encode(b"\xca\xfe").decode()},
            {"type": "receive", "time": T0 + 1.5, "opcode": 2,
             "data": base64.b64encode(b"\x00\x01").decode()},
        ]
    return {"log": {
        "version": "1.2", "creator": {"name": "WebInspector", "version": "537.36"},
        "pages": [{"startedDateTime": "2026-11-30T10:00:00.000Z", "id": "page_1",
                   "title": "http://localhost:8000/", "pageTimings": {}}],
        "entries": [
            {"startedDateTime": "2026-11-30T10:00:00.000Z", "time": 5,
             "request": {"method": "GET", "url": "http://localhost:8000/"},
             "response": {"status": 200}, "_resourceType": "document"},
            {"startedDateTime": datetime.fromtimestamp(T0).astimezone().isoformat(),
             "time": 1500,
             "request": {"method": "GET", "url": "ws://localhost:8000/live?room=1"},
             "response": {"status": 101, "statusText": "Switching Protocols",
                          "headers": [{"name": "Sec-WebSocket-Protocol", "value": "v2"}]},
             "_resourceType": "websocket", "_webSocketMessages": frames},
        ]}}


def write(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_a_browsers_websocket_becomes_a_conversation(tmp_path: Path) -> None:
    """Only the entry answered 101 is read, named by its index; send is the
    client, receive the server; times count from the handshake; binary
    frames are base64; the subprotocol comes from the response."""
    events = read_har(write(tmp_path / "page.har", page_har()))
    (name, talk), = conversations(events).items()
    assert name == "entry-1"
    opening, *messages = talk
    assert opening["path"] == "/live?room=1" and opening["subprotocol"] == "v2"
    assert opening["upstream"] == "ws://localhost:8000/live?room=1"
    assert [(m["from"], m["at"]) for m in messages] == [
        ("server", 0.1), ("client", 0.5), ("server", 0.75), ("client", 1.0), ("server", 1.5)]
    assert base64.b64decode(messages[3]["base64"]) == b"\xca\xfe"


def test_an_imported_har_is_replayed(tmp_path: Path) -> None:
    """The rules made from it greet, answer each client message in order with
    its timing, and accept the subprotocol (as a recording's would)."""
    (talk,) = conversations(read_har(write(tmp_path / "page.har", page_har()))).values()
    rules = parse_rules(to_rules(talk).encode(), tmp_path / "replay.toml")
    assert rules.handshake is not None and rules.handshake.subprotocols == ("v2",)
    clock = Clock()
    strategy = ScriptedStrategy(rules, clock)
    session = RecordingSession()
    strategy.connection_opened(session)
    clock.advance(0.1)
    strategy.message_received(session, '{"op": "sub", "ts": 1}')
    clock.advance(0.25)
    strategy.message_received(session, b"\xca\xfe")
    clock.advance(0.5)
    assert session.sent == ["welcome", "subscribed {x}", b"\x00\x01"]


def test_url_filter_and_control_frames(tmp_path: Path) -> None:
    """--url-filter keeps the entries whose URL holds the text; close and
    ping frames (opcodes 8-10) are not messages."""
    document = page_har([{"type": "send", "time": T0, "opcode": 1, "data": "x"},
                         {"type": "receive", "time": T0 + 1, "opcode": 8, "data": ""}])
    path = write(tmp_path / "page.har", document)
    assert len(read_har(path, url_filter="/live")) == 2
    assert read_har(path, url_filter="/other") == []


@pytest.mark.parametrize(("frame", "why"), [
    ({"type": "send", "time": T0, "opcode": 2, "data": "not base64!"},
     "log.entries[1]._webSocketMessages[0]: data: a binary message (opcode 2) must be base64"),
    ({"type": "sent", "time": T0, "opcode": 1, "data": "x"},
     "log.entries[1]._webSocketMessages[0]: type: expected \"send\" or \"receive\""),
    ({"type": "send", "time": "soon", "opcode": 1, "data": "x"},
     "log.entries[1]._webSocketMessages[0]: time: expected seconds"),
    ({"type": "send", "time": T0, "opcode": 5, "data": "x"},
     "log.entries[1]._webSocketMessages[0]: expected opcode 1 (text) or 2 (binary)"),
])
def test_errors_name_the_file_and_the_entry(tmp_path: Path, frame: dict[str, Any],
                                            why: str) -> None:
    """A frame that cannot be read is refused naming the file, the entry and
    the frame."""
    path = write(tmp_path / "page.har", page_har([frame]))
    with pytest.raises(HarError) as refused:
        read_har(path)
    assert str(refused.value).startswith(f"{path}: {why}")


def test_files_that_are_not_har(tmp_path: Path) -> None:
    """Not JSON, or JSON without log.entries: refused naming the file."""
    (tmp_path / "a.har").write_text("{oops")
    with pytest.raises(HarError, match="a.har: not JSON"):
        read_har(tmp_path / "a.har")
    with pytest.raises(HarError, match="b.har: not a HAR file"):
        read_har(write(tmp_path / "b.har", {"log": {}}))


def test_a_file_over_the_bound_is_refused_unread(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A file over MAX_HAR_BYTES is refused before it is read; one at the
    bound is read."""
    path = write(tmp_path / "page.har", page_har())
    size = path.stat().st_size
    monkeypatch.setattr(har, "MAX_HAR_BYTES", size)
    assert read_har(path)
    monkeypatch.setattr(har, "MAX_HAR_BYTES", size - 1)
    with pytest.raises(HarError, match=f"{size} bytes, more than the {size - 1} bytes"):
        read_har(path)


def test_messages_per_connection_are_bounded(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """An entry of more frames than --max-messages is refused naming it; at
    the bound it is read."""
    path = write(tmp_path / "page.har", page_har())
    assert len(read_har(path, max_messages=5)) == 6
    with pytest.raises(HarError, match=r"log.entries\[1\]: 5 WebSocket messages, more than 4"):
        read_har(path, max_messages=4)
    assert main(["--from-har", str(path), "--max-messages", "4"]) == 1
    assert "more than 4 (--max-messages)" in capsys.readouterr().err
    assert main(["--from-har", str(path), "--max-messages", "5", "--list"]) == 0
    assert "entry-1\t/live?room=1\t5 message(s)" in capsys.readouterr().out


def devtools_would_load(document: dict[str, Any]) -> None:
    """What DevTools' HAR importer (front_end/models/har/HARFormat.ts)
    requires, or it throws: objects where it expects them, log.entries an
    array, dates and numbers it can parse; and what it reads of a
    WebSocket entry."""
    def number(value: Any) -> None:
        assert isinstance(value, int | float) and not isinstance(value, bool), value

    log = document["log"]
    assert log["version"] == "1.2" and isinstance(log["creator"], dict)
    assert isinstance(log["pages"], list) and isinstance(log["entries"], list)
    for entry in log["entries"]:
        datetime.fromisoformat(entry["startedDateTime"].replace("Z", "+00:00"))
        number(entry["time"])
        for part in ("request", "response"):
            number(entry[part]["headersSize"])
            number(entry[part]["bodySize"])
        assert isinstance(entry["request"]["url"], str)
        number(entry["response"]["status"])
        number(entry["response"]["content"]["size"])
        for key in ("send", "wait", "receive"):
            number(entry["timings"][key])
        assert entry["_resourceType"] == "websocket" and entry["response"]["status"] == 101
        for frame in entry["_webSocketMessages"]:
            assert frame["type"] in ("send", "receive") and frame["opcode"] in (1, 2)
            number(frame["time"])
            assert isinstance(frame["data"], str)


def recorded(path: Path) -> None:
    clock = Clock()
    clock.advance(T0)
    recorder = Recorder(path, 1 << 20, clock.seconds)
    talk = recorder.conversation("/live", "v2", "wss://upstream.example/live?x=1")
    clock.advance(0.25)
    talk.message("server", "hi")
    clock.advance(0.25)
    talk.message("client", "ping")
    talk.message("server", b"\x00\xff")
    talk.closed("server", 4001, "done")
    recorder.close()


def test_export_is_har_devtools_loads_and_survives_the_round_trip(
        tmp_path: Path) -> None:
    """--to-har writes HAR 1.2 with the _webSocketMessages extension (epoch
    times, base64 binary), private like the recording; read back, it
    replays as the recording does, close included."""
    path = tmp_path / "r.jsonl"
    recorded(path)
    out = tmp_path / "out.har"
    assert main([str(path), "--to-har", str(out)]) == 0
    document = json.loads(out.read_text())
    devtools_would_load(document)
    (entry,) = document["log"]["entries"]
    assert entry["request"]["url"] == "wss://upstream.example/live?x=1"
    assert entry["request"]["queryString"] == [{"name": "x", "value": "1"}]
    assert entry["startedDateTime"] == "2026-11-30T00:53:20.250Z"
    assert entry["_webSocketMessages"][2] == {"type": "receive", "time": T0 + 0.5,
                                              "opcode": 2, "data": "AP8="}
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    (original,) = conversations(read_recording(path)).values()
    (imported,) = conversations(read_har(out)).values()
    assert to_rules(imported).splitlines()[1:] == to_rules(original).splitlines()[1:]


def test_export_bounds_and_choice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--conversation exports one; a conversation over --max-messages is
    refused, naming it, and no file is written."""
    path = tmp_path / "r.jsonl"
    recorded(path)
    (name,) = conversations(read_recording(path))
    out = tmp_path / "out.har"
    assert main([str(path), "--to-har", str(out), "--conversation", name]) == 0
    assert len(json.loads(out.read_text())["log"]["entries"]) == 1
    out.unlink()
    assert main([str(path), "--to-har", str(out), "--max-messages", "2"]) == 1
    assert f"conversation {name}: 3 messages, more than 2" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(HarError):
        to_har(conversations(read_recording(path)), "1", max_messages=2)


def test_the_command_needs_one_source(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A recording or --from-har, not both, not neither; --url-filter only
    with --from-har; a HAR without WebSockets says so."""
    for argv in ([], ["r.jsonl", "--from-har", "x.har"], ["r.jsonl", "--url-filter", "x"]):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2
    path = write(tmp_path / "page.har", page_har())
    assert main(["--from-har", str(path), "--url-filter", "nothing-like-it"]) == 1
    assert "no WebSocket entry, answered 101, matched" in capsys.readouterr().err
