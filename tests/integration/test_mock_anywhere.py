"""
The mock for test suites in any language: C{wsdaemon-mock} (C{python -m
wsdaemon.mock}) prints where it listens once it does, serves ws:// and
wss:// (its throwaway CA verified for real), takes rules, stops and cleans
up on SIGTERM; and the README's shell example (curl on the admin API) runs
as written.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"
RULES = '[[rule]]\ntext = "ping"\nreply = "pong"\n'


def first_line(process: subprocess.Popen[str], timeout: float = 30) -> str:
    """The first line of the process's stdout, or fail saying what it wrote."""
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    if not selector.select(timeout):
        process.kill()
        pytest.fail(f"wsdaemon-mock printed nothing within {timeout} s")
    return process.stdout.readline()


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    """Start wsdaemon-mock with these arguments; stopped at the end."""
    started: list[subprocess.Popen[str]] = []

    def run(*args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen([sys.executable, "-m", "wsdaemon.mock", *args],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   cwd=tmp_path)
        started.append(process)
        return process

    yield run
    for process in started:  # as a test suite stops it: its daemon and files go too
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def admin(found: dict[str, str], method: str, path: str, body: bytes | None = None) -> Any:
    request = urllib.request.Request(found["admin_url"] + path, data=body, method=method,
                                     headers={"Authorization": f"Bearer {found['key']}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def test_it_prints_where_it_listens_serves_both_and_cleans_up(start: Any,
                                                              tmp_path: Path) -> None:
    """One JSON line once listening: ws:// and wss:// answer by the rules
    (the certificate verified against the printed CA), the admin API takes
    the printed key; SIGTERM stops it with 0 and removes its files."""
    (tmp_path / "rules.toml").write_text(RULES)
    process = start("--rules", "rules.toml")
    found = json.loads(first_line(process))
    assert set(found) == {"url", "echo_url", "admin_url", "key", "tls_url", "tls_echo_url",
                          "ca"}
    with connect(found["url"]) as ws:
        ws.send("ping")
        assert ws.recv(timeout=5) == "pong"
    context = ssl.create_default_context(cafile=found["ca"])
    with connect(found["tls_url"], ssl=context) as ws:
        ws.send("ping")
        assert ws.recv(timeout=5) == "pong"
    with connect(found["tls_echo_url"], ssl=context) as ws:
        ws.send("echo")
        assert ws.recv(timeout=5) == "echo"
    counted = admin(found, "POST", "/journal/count",
                    json.dumps({"route": "/mock", "direction": "in"}).encode())
    assert counted["count"] == 2
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert not Path(found["ca"]).parent.exists()


def test_env_format_and_no_tls(start: Any) -> None:
    """--format env: NAME=value lines; --no-tls: no wss:// and no CA."""
    process = start("--format", "env", "--no-tls")
    lines = [first_line(process)]
    while len(lines) < 4:
        lines.append(process.stdout.readline())  # type: ignore[union-attr]
    values = dict(line.rstrip("\n").split("=", 1) for line in lines)
    assert set(values) == {"WSMOCK_URL", "WSMOCK_ECHO_URL", "WSMOCK_ADMIN_URL", "WSMOCK_KEY"}
    with connect(values["WSMOCK_ECHO_URL"]) as ws:
        ws.send("x")
        assert ws.recv(timeout=5) == "x"
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0


def test_rules_the_daemon_refuses(start: Any, tmp_path: Path) -> None:
    """A rules file the daemon refuses: exit 1 with its line, nothing on
    stdout, no daemon left behind."""
    (tmp_path / "bad.toml").write_text('[[rule]]\nregex = "(a"\n')
    process = start("--rules", "bad.toml")
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1 and out == ""
    assert "bad.toml: wsdaemon refused PUT /routes/rules?route=/mock: 400 rules:2: regex" in err


def _readme_block(marker: str) -> str:
    text = README.read_text(encoding="utf-8")
    found = re.search(r"```sh\n(" + re.escape(marker) + r".*?)```", text, re.S)
    assert found is not None, f"README: no sh block starting with {marker!r}"
    return found.group(1)


def test_the_readme_json_line_has_the_printed_keys(start: Any) -> None:
    """The README's sample of the printed line names the same keys, in the
    same order, as the command prints."""
    block = _readme_block("wsdaemon-mock --rules rules.toml\n")
    sample = json.loads(block.splitlines()[1].removeprefix("# "))
    process = start()
    assert list(json.loads(first_line(process))) == list(sample)


def test_the_readme_shell_example_runs(tmp_path: Path) -> None:
    """The README's mock-anywhere.sh runs as written under bash -e (curl for
    the admin API; wsdaemon-mock on PATH, a shim for python -m wsdaemon.mock
    when the console script is not installed), printing what its comments
    say, and leaves no daemon behind."""
    script = _readme_block("# mock-anywhere.sh")
    for tool in ("bash", "curl"):
        assert shutil.which(tool), f"{tool} is needed"
    shims = tmp_path / "bin"
    shims.mkdir()
    if shutil.which("wsdaemon-mock") is None:
        shim = shims / "wsdaemon-mock"
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m wsdaemon.mock "$@"\n')
        shim.chmod(0o755)
    python3 = shims / "python3"
    python3.symlink_to(sys.executable)
    (tmp_path / "mock-anywhere.sh").write_text("set -e\n" + script)
    env = dict(os.environ, PATH=f"{shims}{os.pathsep}{os.environ['PATH']}")
    run = subprocess.run(["bash", "mock-anywhere.sh"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr + run.stdout
    lines = run.stdout.splitlines()
    assert lines[0] == '{"op": "subscribed"}'
    found = json.loads(lines[1])
    assert found["count"] == 1 and json.loads(found["entries"][0]["text"])["ts"] == 1712
    assert json.loads(lines[2]) == {"route": "/mock", "rules": 1}
    reset = json.loads(lines[3])
    assert reset["state_reset"] is True and reset["journal_cleared"] >= 3
    env_file = dict(line.split("=", 1) for line in
                    (tmp_path / "mock.env").read_text().splitlines())
    assert not Path(env_file["WSMOCK_CA"]).parent.exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_killed_command_takes_its_daemon_along(start: Any) -> None:
    """wsdaemon-mock killed with SIGKILL (no chance to stop anything): its
    daemon gets SIGTERM from the kernel and stops listening."""
    process = start("--no-tls")
    found = json.loads(first_line(process))
    assert admin(found, "GET", "/routes")["routes"]
    process.kill()
    process.wait(timeout=10)
    deadline = time.monotonic() + 15
    while True:
        try:
            admin(found, "GET", "/routes")
        except OSError:
            break  # refused: the daemon is gone
        assert time.monotonic() < deadline, "the daemon outlived wsdaemon-mock"
        time.sleep(0.1)
