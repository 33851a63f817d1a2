"""
The operator queue in the real daemon: clients and operators over real
sockets, the terminal console as a subprocess, crashes and restarts.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.daemon import Daemon
from tests.operator_client import Operator

pytestmark = pytest.mark.slow

ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdef00"

CONFIG = f"""
    [wsdaemon]
    listen = tcp:0:interface=127.0.0.1

    [operator]
    model = queue
    tokens =
        alice:{ALICE}
        bob:{BOB}
    store = state/queue.sqlite3
    lease = 60
    fallback_after = 0
    fallback_when_offline = no

    [protocol]
    # These clients choose their ids (?client_id=).
    identity = claimed

    [route:/support]
    strategy = operator
    ack_message = queued #{{position}} as {{item}}
"""


@pytest.fixture
def config(write_config: Callable[..., Path]) -> Path:
    return write_config(CONFIG)


@pytest.fixture
def daemon(config: Path, start_daemon: Callable[..., Daemon]) -> Daemon:
    return start_daemon(config)


@pytest.fixture
def operators(daemon: Daemon) -> Iterator[Callable[[str], Operator]]:
    opened: list[Operator] = []

    def open_operator(token: str) -> Operator:
        operator = Operator(daemon, token)
        opened.append(operator)
        return operator

    yield open_operator
    for operator in opened:
        operator.close()


def ask(daemon: Daemon, client_id: str, text: str) -> ClientConnection:
    client = connect(f"{daemon.url}/support?client_id={client_id}")
    client.send(text)
    ack = client.recv(timeout=5)
    assert str(ack).startswith("queued #"), ack
    return client


def no_more(client: ClientConnection, wait: float = 0.5) -> None:
    with pytest.raises(TimeoutError):
        client.recv(timeout=wait)


def test_operator_auth(daemon: Daemon) -> None:
    """No token: 401; a wrong one: 403; a good one in the query string (browsers): accepted."""
    with pytest.raises(InvalidStatus) as info:
        connect(f"{daemon.url}/operator")
    assert info.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as info:
        connect(f"{daemon.url}/operator?token=not-the-right-token-at-all")
    assert info.value.response.status_code == 403
    with connect(f"{daemon.url}/operator?token={BOB}") as ws:
        assert json.loads(ws.recv(timeout=5))["operator"] == "bob"
    log = daemon.wait_for_log("bad token")
    assert ALICE not in log and BOB not in log and "not-the-right-token" not in log


def test_two_clients_two_operators(daemon: Daemon,
                                   operators: Callable[[str], Operator]) -> None:
    """Two clients and two operators at once: claims are exclusive, each client gets one reply."""
    alice, bob = operators(ALICE), operators(BOB)
    with ExitStack() as stack:
        c1 = stack.enter_context(ask(daemon, "c1", "question one"))
        c2 = stack.enter_context(ask(daemon, "c2", "question two"))
        items = {alice.next("item")["item"]["client_id"]: None for _ in range(2)}
        assert set(items) == {"c1", "c2"}
        listed = alice.request(type="list")["items"]
        by_client = {i["client_id"]: i["item_id"] for i in listed}
        assert alice.request(type="claim", item=by_client["c1"])["type"] == "ok"
        refused = bob.request(type="claim", item=by_client["c1"])
        assert refused["type"] == "error" and "claimed by alice" in refused["error"]
        assert bob.request(type="claim", item=by_client["c2"])["type"] == "ok"
        answer = alice.request(type="reply", item=by_client["c1"], text="for one")
        assert answer["type"] == "ok" and answer["delivered"] == 1
        assert bob.request(type="reply", item=by_client["c2"], text="for two")["delivered"] == 1
        assert (c1.recv(timeout=5), c2.recv(timeout=5)) == ("for one", "for two")
        again = bob.request(type="reply", item=by_client["c1"], text="twice?")
        assert again["type"] == "error"
        no_more(c1)
        no_more(c2)


def test_operator_dies_holding_an_item(daemon: Daemon,
                                       operators: Callable[[str], Operator]) -> None:
    """An operator that disconnects mid-claim gives the item back; another answers it once."""
    alice, bob = operators(ALICE), operators(BOB)
    with ask(daemon, "c1", "help") as client:
        item_id = alice.next("item")["item"]["item_id"]
        assert alice.request(type="claim", item=item_id)["type"] == "ok"
        alice.ws.close()  # alice's console goes away mid-claim
        deadline = time.monotonic() + 5
        while True:
            event = bob.next("updated", timeout=max(0.01, deadline - time.monotonic()))
            if event["item"]["item_id"] == item_id and event["item"]["state"] == "queued":
                break
        assert bob.request(type="reply", item=item_id, text="bob here")["type"] == "ok"
        assert client.recv(timeout=5) == "bob here"
        no_more(client)


def test_binary_is_not_queued(daemon: Daemon) -> None:
    """Binary messages on an operator route are refused with a text answer."""
    with connect(f"{daemon.url}/support") as client:
        client.send(b"\x00")
        assert client.recv(timeout=5) == "Only text messages reach an operator."


def test_kill_9_with_100_items_then_restart(config: Path,
                                            start_daemon: Callable[..., Daemon]) -> None:
    """100 queued items survive kill -9; after a restart each client gets exactly one reply."""
    first = start_daemon(config)
    for n in range(100):
        with ask(first, f"client-{n}", f"question {n}"):
            pass
    first.kill()

    second = start_daemon(config, port=first.port)
    alice = Operator(second, ALICE)
    try:
        items = alice.hello["items"]
        assert sorted(i["client_id"] for i in items) == sorted(f"client-{n}" for n in range(100))
        for item in items:
            answer = alice.request(type="reply", item=item["item_id"],
                                   text=f"answer to {item['text']}")
            assert answer["type"] == "ok", answer
        assert alice.request(type="list")["items"] == []
    finally:
        alice.close()
    for n in range(100):
        with connect(f"{second.url}/support?client_id=client-{n}") as client:
            assert client.recv(timeout=5) == f"answer to question {n}"
            no_more(client, wait=0.05 if n else 0.5)


def test_sigterm_keeps_items(config: Path, start_daemon: Callable[..., Daemon]) -> None:
    """Queued items survive a SIGTERM restart."""
    first = start_daemon(config)
    with ask(first, "c1", "still there?"):
        pass
    assert first.stop() in (0, -15)  # twistd ends by re-raising SIGTERM
    second = start_daemon(config, port=first.port)
    alice = Operator(second, ALICE)
    try:
        assert [i["text"] for i in alice.hello["items"]] == ["still there?"]
    finally:
        alice.close()


def console(daemon: Daemon, token_file: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "wsdaemon.strategies.operator.console", f"{daemon.url}/operator",
         "--token-file", str(token_file)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_push_says_whether_it_was_kept(daemon: Daemon,
                                       operators: Callable[[str], Operator]) -> None:
    """An operator's push to a client that is not connected answers that it
    was kept (and the client gets it when it connects); to a connected one,
    that it was delivered and not kept. A broadcast is never kept."""
    alice = operators(ALICE)
    answer = alice.request(type="push", client="away", text="while you were out")
    assert (answer["type"], answer["delivered"], answer["kept"]) == ("ok", 0, 1)
    with connect(f"{daemon.url}/support?client_id=away") as client:
        assert client.recv(timeout=5) == "while you were out"
        answer = alice.request(type="push", client="away", text="now")
        assert (answer["delivered"], answer["kept"]) == (1, 0)
        assert client.recv(timeout=5) == "now"
        answer = alice.request(type="broadcast", route="/support", text="all")
        assert (answer["delivered"], answer["kept"]) == (1, 0)


def test_terminal_console_scripted(daemon: Daemon, tmp_path: Path) -> None:
    """Piped commands: wait for a message, answer it, push, export the transcript."""
    token_file = tmp_path / "alice.token"
    token_file.write_text(f"# my token\n{ALICE}\n")
    with ask(daemon, "c1", "hello from the browser") as client:
        export = tmp_path / "t.jsonl"
        script = ("wait\nlist\nreply Hello, how can I help?\npush c1 one more thing\n"
                  f"push gone see you later\nexport {export} c1\n")
        result = subprocess.run(
            [sys.executable, "-m", "wsdaemon.strategies.operator.console", f"{daemon.url}/operator",
             "--token-file", str(token_file)],
            input=script, capture_output=True, text=True, timeout=30,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "connected as alice" in result.stdout
        assert "hello from the browser" in result.stdout
        assert "ok: answered #" in result.stdout
        assert "ok: push reached 1 connection(s)\n" in result.stdout
        assert "ok: push reached 0 connection(s); kept for gone until it connects" \
            in result.stdout
        assert client.recv(timeout=5) == "Hello, how can I help?"
        assert client.recv(timeout=5) == "one more thing"
        lines = [json.loads(line) for line in export.read_text().splitlines()]
        assert [(e["direction"], e["sender"], e["body"]) for e in lines] == [
            ("in", "client", "hello from the browser"),
            ("out", "alice", "Hello, how can I help?"),
            ("out", "alice", "one more thing"),
        ]


def test_terminal_console_errors_and_bad_token(daemon: Daemon, tmp_path: Path) -> None:
    """Terminal console errors and bad token."""
    token_file = tmp_path / "alice.token"
    token_file.write_text(ALICE)
    result = subprocess.run(
        [sys.executable, "-m", "wsdaemon.strategies.operator.console", f"{daemon.url}/operator",
         "--token-file", str(token_file)],
        input="reply nobody is waiting\nfrobnicate\n", capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 1
    assert "error: the queue is empty" in result.stderr
    assert "error: unknown command 'frobnicate'" in result.stderr
    token_file.write_text("wrong-token-wrong-token")
    result = subprocess.run(
        [sys.executable, "-m", "wsdaemon.strategies.operator.console", f"{daemon.url}/operator",
         "--token-file", str(token_file)],
        input="list\n", capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2 and "refused the token" in result.stderr


def test_terminal_console_reconnects_after_restart(config: Path, tmp_path: Path,
                                                   start_daemon: Callable[..., Daemon]) -> None:
    """Terminal console reconnects after restart."""
    first = start_daemon(config)
    token_file = tmp_path / "alice.token"
    token_file.write_text(ALICE)
    process = console(first, token_file)
    try:
        assert process.stdout is not None and process.stdin is not None
        assert "connected as alice" in process.stdout.readline()
        assert first.stop() in (0, -15)  # twistd ends by re-raising SIGTERM
        assert "disconnected" in process.stdout.readline()
        second = start_daemon(config, port=first.port)
        assert "connected as alice" in process.stdout.readline()
        with ask(second, "c1", "after the restart") as client:
            process.stdin.write("wait\nreply welcome back\nquit\n")
            process.stdin.flush()
            assert client.recv(timeout=10) == "welcome back"
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
