"""
The README's tolerant replay and HAR commands, run as written on a
recording and a HAR file made for them.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from tests.unit.test_har import page_har
from wsdaemon.strategies.proxy.recording import Recorder
from wsdaemon.strategies.proxy.replay import main
from wsdaemon.strategies.scripted.rules import parse_rules

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_replay_commands_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Each wsdaemon-replay line of the README's tolerant replay block, split
    as a shell does, exits 0 (the rules it writes load; the HAR it writes
    reads back), and --list prints what the README shows."""
    found = re.search(r"```sh\n(# tolerant replay:.*?)```", README.read_text(encoding="utf-8"),
                      re.S)
    assert found is not None
    commands = [line for line in found.group(1).splitlines() if line.startswith("wsdaemon-")]
    assert len(commands) == 5
    clock = Clock()
    (tmp_path / "recordings").mkdir()
    recorder = Recorder(tmp_path / "recordings" / "live.jsonl", 1 << 20, clock.seconds)
    talk = recorder.conversation("/live", None, "ws://upstream/live")
    talk.message("client", json.dumps({"op": "sub", "id": 1, "ts": 2, "items": [{"ts": 3}]}))
    talk.message("server", "ok")
    recorder.close()
    (tmp_path / "page.har").write_text(json.dumps(page_har()))
    monkeypatch.chdir(tmp_path)
    outputs = []
    for line in commands:
        words = shlex.split(line)
        assert words[0] == "wsdaemon-replay"
        assert main(words[1:]) == 0, (line, capsys.readouterr().err)
        outputs.append(capsys.readouterr().out)
        if "-o replay.toml" in line:
            parse_rules((tmp_path / "replay.toml").read_bytes(), tmp_path / "replay.toml")
    shown = re.search(r"# (entry-1 .*)", found.group(1))
    assert shown is not None
    assert outputs[2].split() == shown.group(1).split()
    assert json.loads((tmp_path / "live.har").read_text())["log"]["entries"]
