"""
The README's worked example of conversations, run as written: its config
and canned replies file, its visitor script (a `websockets` client speaking
wsdaemon.chat.v1) and the operator's commands in `wsdaemon-operator`.
"""

from __future__ import annotations

import json
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.daemon import REPO, Daemon

TOKEN = "alice-example-token-change-me"


def section() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start = readme.index("#### Conversations\n")
    return readme[start:readme.index("#### Upgrading from the item queue", start)]


def blocks(text: str) -> list[tuple[str, str]]:
    """The fenced blocks of C{text}: (language, body)."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"```(\w*)\n(.*?)```", text, re.S)]


def test_the_readme_conversations_example_runs(tmp_path: Path) -> None:
    """The visitor gets the acknowledgement, the operator's canned reply
    with her display name, and the resolution, never the private note; the
    console shows what the README shows."""
    found = blocks(section())
    ini = next(body for lang, body in found if lang == "ini")
    canned = next(body for lang, body in found if body.startswith("# canned.txt"))
    script = next(body for lang, body in found if lang == "python")
    transcript = next(body for lang, body in found if "operator> open" in body)
    (tmp_path / "wsdaemon.ini").write_text(
        "[wsdaemon]\nlisten = tcp:0:interface=127.0.0.1\n\n" + ini, encoding="utf-8")
    (tmp_path / "operators.tokens").write_text(f"alice:{TOKEN}\n", encoding="utf-8")
    (tmp_path / "canned.txt").write_text(canned, encoding="utf-8")
    (tmp_path / "token").write_text(TOKEN + "\n", encoding="utf-8")
    daemon = Daemon(tmp_path / "wsdaemon.ini")
    visitor = None
    try:
        (tmp_path / "visitor.py").write_text(
            script.replace("127.0.0.1:8080", f"127.0.0.1:{daemon.port}"), encoding="utf-8")
        visitor = subprocess.Popen([sys.executable, "-u", "visitor.py"], cwd=tmp_path,
                                   stdout=subprocess.PIPE, text=True)
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in visitor.stdout or ()],
                         daemon=True).start()

        def frame(kind: str) -> dict[str, object]:
            deadline = time.monotonic() + 10
            while True:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
                assert line.startswith("< ")
                message = json.loads(line[2:])
                assert "Asked about order" not in line, "a private note reached the visitor"
                if message["type"] == kind:
                    return dict(message)

        assert frame("ack")["seq"] == 1
        operator = [sys.executable, "-m", "wsdaemon.support.terminal",
                    f"{daemon.url}/operator", "--token-file", str(tmp_path / "token")]
        listed = subprocess.run(operator, input="list\n", capture_output=True, text=True,
                                timeout=30)
        alias = re.search(r"Visitor (\d+)", listed.stdout)
        assert alias, listed.stdout + listed.stderr
        commands = [line.split("operator> ", 1)[1] for line in transcript.splitlines()
                    if line.startswith("operator> ")]
        assert commands[0] == "open #5263"
        commands[0] = f"open #{alias.group(1)}"
        ran = subprocess.run(operator, input="\n".join(commands) + "\n", capture_output=True,
                             text=True, timeout=30)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        name = f"Visitor {alias.group(1)}"
        for shown in (f"Alice Martin (alice): Hello {name}, this is Alice Martin. "
                      "How can I help?", "NOTE by alice (private): Asked about order 1042",
                      "resolved [orders]"):
            assert shown in ran.stdout, ran.stdout
        reply = frame("message")
        while reply["author"] != "operator":
            reply = frame("message")
        assert reply["name"] == "Alice Martin"
        assert reply["text"] == f"Hello {name}, this is Alice Martin. How can I help?"
        assert frame("status")["status"] == "resolved"
    finally:
        if visitor is not None:
            visitor.kill()
            visitor.wait()
        daemon.stop()
