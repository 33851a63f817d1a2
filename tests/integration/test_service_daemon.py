"""
The daemon as a service, for real: the push API, reloads with clients
connected throughout, systemd notifications, graceful shutdown, TLS, and
the unit files.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.conftest import require_tool
from tests.daemon import REPO, Daemon, free_port

pytestmark = pytest.mark.slow

KEY = "push-key-0123456789abcdef"
TOKEN = "alice-token-0123456789abcdef"


def config_text(admin_port: int, extra: str = "") -> str:
    return f"""
        [wsdaemon]
        listen = tcp:0:interface=127.0.0.1

        [admin]
        listen = tcp:{admin_port}:interface=127.0.0.1
        api_keys = ops:{KEY}
        max_body = 4KiB

        [operator]
        tokens = alice:{TOKEN}
        store = conversations.sqlite3
        fallback_after = 0

        [protocol]
        # These clients choose their ids (?client_id=).
        identity = claimed

        [route:/echo]
        strategy = echo

        [route:/news]
        strategy = echo

        [route:/support]
        strategy = operator
        {extra}
    """


class Admin:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def call(self, path: str, body: Any = None, key: str | None = KEY,
             raw: bytes | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None
                                             else None)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        request = urllib.request.Request(self.base + path, data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                text = response.read().decode()
                status = response.status
        except urllib.error.HTTPError as e:
            text, status = e.read().decode(), e.code
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text


@pytest.fixture
def service(write_config: Callable[..., Path],
            start_daemon: Callable[..., Daemon]) -> tuple[Daemon, Admin]:
    port = free_port()
    daemon = start_daemon(write_config(config_text(port)))
    return daemon, Admin(port)


def test_push_api_targets(service: tuple[Daemon, Admin]) -> None:
    """One client, a client id, a route, everyone; text and binary; the count reached."""
    daemon, admin = service
    with ExitStack() as stack:
        a1 = stack.enter_context(connect(f"{daemon.url}/news?client_id=ann"))
        a2 = stack.enter_context(connect(f"{daemon.url}/news?client_id=ann"))
        b = stack.enter_context(connect(f"{daemon.url}/echo?client_id=bob"))
        status, clients = admin.call("/clients")
        assert status == 200 and clients["count"] == 3
        assert {c["client_id"] for c in clients["clients"]} == {"ann", "bob"}
        bob_session = next(c["session_id"] for c in clients["clients"] if c["client_id"] == "bob")

        assert admin.call("/push", {"client": "ann", "text": "to ann"}) == \
            (200, {"delivered": 2, "failed": 0, "target": {"kind": "client", "value": "ann"}})
        assert (a1.recv(timeout=5), a2.recv(timeout=5)) == ("to ann", "to ann")
        assert admin.call("/push", {"session": bob_session, "text": "to bob"})[1]["delivered"] == 1
        assert b.recv(timeout=5) == "to bob"
        assert admin.call("/push", {"route": "/news", "base64": "AAEC"})[1]["delivered"] == 2
        assert a1.recv(timeout=5) == b"\x00\x01\x02" and a2.recv(timeout=5) == b"\x00\x01\x02"
        assert admin.call("/push", {"all": True, "text": "everyone"})[1]["delivered"] == 3
        assert {a1.recv(timeout=5), a2.recv(timeout=5), b.recv(timeout=5)} == {"everyone"}
        assert admin.call("/push", {"client": "nobody", "text": "x"})[1]["delivered"] == 0
        status, clients = admin.call("/clients")
        bob = next(c for c in clients["clients"] if c["client_id"] == "bob")
        assert (bob["messages_out"], bob["route"]) == (2, "/echo")


def test_push_api_errors(service: tuple[Daemon, Admin]) -> None:
    """The push API answers 401, 400 and 413 as documented (never 500 for a bad
    body: deep nesting, lone surrogates), and logs no secret."""
    daemon, admin = service
    assert admin.call("/push", {"all": True, "text": "x"}, key=None)[0] == 401
    assert admin.call("/push", {"all": True, "text": "x"}, key="wrong-key-0123456789")[0] == 401
    assert admin.call("/clients", key=None)[0] == 401
    status, body = admin.call("/push", raw=b"{broken")
    assert status == 400 and "not JSON" in body["error"]
    status, body = admin.call("/push", {"all": True})
    assert status == 400 and '"text"' in body["error"]
    status, body = admin.call("/push", raw=json.dumps({"all": True, "text": "x" * 5000}).encode())
    assert status == 413 and "over 4096 bytes" in body["error"]
    status, body = admin.call("/push", raw=b"[" * 2000 + b"]" * 2000)
    assert status == 400 and "nested too deeply" in body["error"]
    status, body = admin.call("/push", raw=b'{"all": true, "text": "bad \\ud800 text"}')
    assert status == 400 and "lone surrogate (U+D800" in body["error"], body
    status, body = admin.call("/push", raw=b'{"client": "\\udfff", "text": "x"}')
    assert status == 400 and '"client" holds a lone surrogate' in body["error"], body
    status, body = admin.call("/push", {"client": "\x1b]0;x\x07\u202e", "text": "x"})
    assert status == 200 and body["delivered"] == 0
    log = daemon.wait_for_log("push to client \\x1b]0;x\\x07\\u202e: 0 connection(s)")
    assert "\x1b" not in log and "\u202e" not in log
    assert KEY not in log and TOKEN not in log


def raw_call(admin: Admin, method: str, path: str,
             key: str | None = KEY) -> tuple[int, dict[str, str], str]:
    """A request with any method: status, headers (lower-case names), body."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    request = urllib.request.Request(admin.base + path, method=method, headers=headers,
                                     data=b"{}" if method in ("POST", "PUT") else None)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return (response.status, {k.lower(): v for k, v in response.headers.items()},
                    response.read().decode())
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read().decode()


def test_push_to_an_unknown_route_is_404(service: tuple[Daemon, Admin]) -> None:
    """A push to a route the daemon does not serve is 404 naming it and the
    routes there are (not 200 with nobody reached); nothing is counted as sent."""
    daemon, admin = service
    status, body = admin.call("/push", {"route": "/nope", "text": "x"})
    assert status == 404, body
    assert body["error"] == "no route '/nope'; routes: /echo, /news, /support"
    assert body["target"] == {"kind": "route", "value": "/nope"}
    assert admin.call("/push", {"route": "/operator", "text": "x"})[0] == 404
    assert admin.call("/push", {"route": "/news", "text": "x"}) == \
        (200, {"delivered": 0, "failed": 0, "target": {"kind": "route", "value": "/news"}})
    status, text = admin.call("/metrics", key=None)
    assert 'wsdaemon_push_calls_total{outcome="not_found",target="route"} 2.0' in text


def test_unknown_admin_paths_and_methods_answer_json(service: tuple[Daemon, Admin]) -> None:
    """Unknown paths are 404 and methods a path does not take 405 with an
    Allow header, all as JSON {"error": ...} (never Twisted's HTML pages);
    HEAD still works where GET does."""
    daemon, admin = service
    for path in ("/", "/nowhere", "/push/extra", "/clients/123", "/healthz/x"):
        status, headers, body = raw_call(admin, "GET", path)
        assert status == 404, (path, body)
        assert headers["content-type"] == "application/json", path
        assert "no such path" in json.loads(body)["error"], path
    for method, path, allow in (("DELETE", "/push", "POST"), ("GET", "/push", "POST"),
                                ("POST", "/metrics", "GET, HEAD"),
                                ("PUT", "/healthz", "GET, HEAD"),
                                ("PATCH", "/clients", "GET, HEAD"),
                                ("POST", "/clients", "GET, HEAD")):
        status, headers, body = raw_call(admin, method, path)
        assert (status, headers.get("allow")) == (405, allow), (method, path, body)
        assert headers["content-type"] == "application/json"
        error = json.loads(body)
        assert error["allow"] == allow.split(", ")
        assert f"{method} is not allowed on {path}" in error["error"]
    status, headers, body = raw_call(admin, "HEAD", "/healthz")
    assert (status, body) == (200, "")


def test_admin_errors_with_workers(write_config: Callable[..., Path],
                                   start_daemon: Callable[..., Daemon]) -> None:
    """With workers, the supervisor's admin API answers the same: a push to
    an unknown route 404, unknown paths 404 and wrong methods 405 with their
    Allow header, as JSON."""
    port = free_port()
    daemon = start_daemon(write_config(f"""
        [wsdaemon]
        listen = tcp:0:interface=127.0.0.1
        workers = 2

        [admin]
        listen = tcp:{port}:interface=127.0.0.1
        api_keys = ops:{KEY}

        [route:/echo]
        strategy = echo
    """))
    daemon.wait_for_log("ready: 2 workers listening", timeout=20)
    admin = Admin(port)
    status, body = admin.call("/push", {"route": "/nope", "text": "x"})
    assert (status, body["error"]) == (404, "no route '/nope'; routes: /echo")
    status, headers, text = raw_call(admin, "GET", "/nowhere")
    assert status == 404 and headers["content-type"] == "application/json"
    assert "no such path /nowhere" in json.loads(text)["error"]
    status, headers, text = raw_call(admin, "DELETE", "/push")
    assert (status, headers.get("allow"), headers["content-type"]) == \
        (405, "POST", "application/json")
    assert json.loads(text)["allow"] == ["POST"]


def test_metrics_and_health(service: tuple[Daemon, Admin]) -> None:
    """/metrics shows connections, messages, refusals, conversations and pushes; /healthz
    is ready and says the conversations are served."""
    daemon, admin = service
    with connect(f"{daemon.url}/echo") as client:
        client.send("hello")
        client.recv(timeout=5)
        with pytest.raises(InvalidStatus):
            connect(f"{daemon.url}/echo", origin="http://evil.example")  # type: ignore[arg-type]
        with connect(f"{daemon.url}/support") as support:
            support.send("help")
            support.recv(timeout=5)
            admin.call("/push", {"all": True, "text": "x"})
            status, text = admin.call("/metrics", key=None)
    assert status == 200
    for line in (
        'wsdaemon_connections{route="/echo"} 1.0',
        'wsdaemon_messages_received_total{route="/echo"} 1.0',
        'wsdaemon_bytes_received_total{route="/echo"} 5.0',
        'wsdaemon_handshakes_refused_total{reason="origin",route="/echo"} 1.0',
        'wsdaemon_conversations{state="unassigned"} 1.0',
        'wsdaemon_conversation_operators{availability="offline"} 1.0',
        'wsdaemon_push_calls_total{outcome="ok",target="all"} 1.0',
        "wsdaemon_ready 1.0",
    ):
        assert line in text, line
    assert "wsdaemon_conversation_oldest_wait_seconds" in text
    assert "wsdaemon_queue" not in text
    status, health = admin.call("/healthz", key=None)
    assert status == 200 and health["ready"] is True
    assert (health["conversations"]["started"], health["conversations"]["unassigned"]) == \
        (True, 1)


def test_reload_good_and_bad_with_clients_connected(
    write_config: Callable[..., Path], start_daemon: Callable[..., Daemon]
) -> None:
    """SIGHUP: a valid config adds routes for new clients, open ones keep going; an
    invalid one is logged with file, section, key and line, and the old config stays."""
    port = free_port()
    path = write_config(config_text(port))
    daemon = start_daemon(path)
    with connect(f"{daemon.url}/echo") as old_client:
        old_client.send("before")
        assert old_client.recv(timeout=5) == "before"

        rules = path.parent / "bot.toml"
        rules.write_text('[[rule]]\ntext = "ping"\nreply = "pong"\n')
        path.write_text(path.read_text() + "\n[route:/bot]\nstrategy = scripted\n"
                        "rules = bot.toml\n")
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for_log("reloaded")
        with connect(f"{daemon.url}/bot") as bot:
            bot.send("ping")
            assert bot.recv(timeout=5) == "pong"
        old_client.send("during")
        assert old_client.recv(timeout=5) == "during"

        good = path.read_text()
        path.write_text(good.replace("strategy = scripted", "strategy = scriptd"))
        daemon.process.send_signal(signal.SIGHUP)
        log = daemon.wait_for_log("reload refused")
        line = next(n for n, text in enumerate(path.read_text().splitlines(), 1)
                    if text == "strategy = scriptd")
        assert f"{path}:{line}: [route:/bot] strategy: unknown strategy 'scriptd'" in log
        with connect(f"{daemon.url}/bot") as bot:
            bot.send("ping")
            assert bot.recv(timeout=5) == "pong"

        rules.write_text('[[rule]]\ntext = "ping"\nreply = "{nope}"\n')
        path.write_text(good)
        daemon.process.send_signal(signal.SIGHUP)
        log = daemon.wait_for_log("unknown placeholder {nope}")
        assert f"{rules}:3: reply: unknown placeholder" in log
        old_client.send("after")
        assert old_client.recv(timeout=5) == "after"
    assert daemon.process.poll() is None


def test_systemd_notifications_and_graceful_stop(
    write_config: Callable[..., Path], start_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    """READY=1 once listening, RELOADING=1/READY=1 around SIGHUP, STOPPING=1 on SIGTERM,
    clients and operators closed with 1001, exit status 0."""
    import os

    notify_path = tmp_path / "notify.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(notify_path))
    receiver.settimeout(15)
    try:
        daemon = start_daemon(write_config(config_text(free_port())),
                              env=dict(os.environ, NOTIFY_SOCKET=str(notify_path)))
        assert receiver.recv(200).startswith(b"READY=1")
        daemon.process.send_signal(signal.SIGHUP)
        assert receiver.recv(200).startswith(b"RELOADING=1\nMONOTONIC_USEC=")
        assert receiver.recv(200).startswith(b"READY=1")
        client = connect(f"{daemon.url}/echo")
        operator = connect(f"{daemon.url}/operator?token={TOKEN}")
        operator.recv(timeout=5)
        started = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        assert receiver.recv(200) == b"STOPPING=1"
        for connection in (client, operator):
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    connection.recv(timeout=5)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001
        assert daemon.process.wait(timeout=15) == 0
        assert time.monotonic() - started < 10
    finally:
        receiver.close()


def test_abstract_notify_socket(write_config: Callable[..., Path],
                                start_daemon: Callable[..., Daemon]) -> None:
    """READY=1 reaches an abstract-namespace NOTIFY_SOCKET."""
    import os

    name = f"wsdaemon-notify-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)
        receiver.settimeout(15)
        start_daemon(write_config(config_text(free_port())),
                     env=dict(os.environ, NOTIFY_SOCKET="@" + name))
        assert receiver.recv(200).startswith(b"READY=1")


def self_signed(directory: Path) -> tuple[Path, Path]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(key, hashes.SHA256()))
    key_path, cert_path = directory / "key.pem", directory / "cert.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def test_tls_endpoint(write_config: Callable[..., Path], tmp_path: Path) -> None:
    """wss:// through an ssl: endpoint with a self-signed certificate."""
    key_path, cert_path = self_signed(tmp_path)
    port = free_port()
    path = write_config(f"""
        [wsdaemon]
        listen = ssl:{port}:privateKey={key_path}:certKey={cert_path}:interface=127.0.0.1

        [route:/echo]
        strategy = echo
    """)
    process = subprocess.Popen(
        [shutil.which("twistd") or "twistd", "-n", "--pidfile=", "wsdaemon", "--config", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        context = ssl.create_default_context(cafile=str(cert_path))
        deadline = time.monotonic() + 20
        while True:
            try:
                with connect(f"wss://localhost:{port}/echo", ssl=context) as client:
                    client.send("secret")
                    assert client.recv(timeout=5) == "secret"
                break
            except (OSError, ConnectionError):
                assert time.monotonic() < deadline, "no TLS listener"
                time.sleep(0.2)
        with pytest.raises(ssl.SSLError):
            with connect(f"wss://localhost:{port}/echo", ssl=ssl.create_default_context()):
                pass
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_unit_files_verify(tmp_path: Path) -> None:
    """systemd-analyze verify accepts etc/wsdaemon.service and etc/wsdaemon.socket."""
    analyze = shutil.which("systemd-analyze")
    require_tool(analyze is not None, "systemd-analyze (apt-get install systemd)")
    twistd = shutil.which("twistd")
    assert twistd is not None
    service = (REPO / "etc" / "wsdaemon.service").read_text()
    assert "/opt/wsdaemon/bin/twistd" in service
    (tmp_path / "wsdaemon.service").write_text(service.replace("/opt/wsdaemon/bin/twistd", twistd))
    shutil.copy(REPO / "etc" / "wsdaemon.socket", tmp_path / "wsdaemon.socket")
    result = subprocess.run([str(analyze), "verify", str(tmp_path / "wsdaemon.service"),
                             str(tmp_path / "wsdaemon.socket")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    for directive in ("Type=notify", "ExecReload=", "StateDirectory=wsdaemon",
                      "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes",
                      "PrivateTmp=yes", "LimitNOFILE=", "DynamicUser=yes",
                      "LoadCredential=operators.tokens:", "LoadCredential=api.keys:"):
        assert directive in service


def test_unit_documentation_is_installed_by_pip() -> None:
    """The unit's Documentation= names the README where `pip install` puts it:
    share/doc/wsdaemon/ under the prefix whose bin/ holds the unit's twistd."""
    import tomllib

    service = (REPO / "etc" / "wsdaemon.service").read_text()
    (documentation,) = re.findall(r"^Documentation=file://(\S+)$", service, re.M)
    prefix = Path(re.findall(r"^ExecStart=(\S+)/bin/twistd ", service, re.M)[0])
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    shared = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["shared-data"]
    assert Path(documentation) == prefix / shared["README.md"]


def _recipe_block(readme: str) -> str:
    section = readme[readme.index("## Running under systemd"):]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match is not None
    return textwrap.dedent(match.group(1))


def test_systemd_recipe_runs_on_credentials(tmp_path: Path,
                                            start_daemon: Callable[..., Daemon]) -> None:
    """The README's systemd recipe, run as written (its paths moved under a
    temporary directory), then the daemon started as the unit starts it:
    its tokens and keys copied by LoadCredential= into
    $CREDENTIALS_DIRECTORY (the originals then gone), the identity secret
    created in the state directory."""
    from tests.daemon import copy_shipped_etc

    checkout = tmp_path / "checkout"
    admin_port = int(re.search(r"tcp:(\d+)", [
        line for line in copy_shipped_etc(checkout / "etc").read_text().splitlines()
        if line.startswith("listen = tcp:") and ":8080" not in line][0]).group(1))
    etc, state, credentials = tmp_path / "etc-wsdaemon", tmp_path / "state", tmp_path / "creds"

    def moved(text: str) -> str:
        return text.replace("/etc/wsdaemon", str(etc)).replace("/var/lib/wsdaemon", str(state))

    script = moved(_recipe_block((REPO / "README.md").read_text()))
    path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
    result = subprocess.run(["bash", "-e", "-c", script], cwd=checkout, capture_output=True,
                            text=True, timeout=120, env=dict(os.environ, PATH=path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout
    for secret in ("operators.tokens", "api.keys"):
        assert (etc / secret).stat().st_mode & 0o777 == 0o600

    # What systemd does for the unit: the state directory, the credentials.
    state.mkdir()
    credentials.mkdir()
    unit = (REPO / "etc" / "wsdaemon.service").read_text()
    loaded = re.findall(r"^LoadCredential=([^:\n]+):(.+)$", unit, re.M)
    assert {name for name, _ in loaded} == {"operators.tokens", "api.keys"}
    for name, source in loaded:
        shutil.copy(moved(source), credentials / name)
        Path(moved(source)).unlink()
    key = (credentials / "api.keys").read_text().split(":", 1)[1].strip()
    token = (credentials / "operators.tokens").read_text().split(":", 1)[1].strip()

    daemon = start_daemon(etc / "wsdaemon.ini", cwd=state,
                          env=dict(os.environ, CREDENTIALS_DIRECTORY=str(credentials)))
    admin = Admin(admin_port)
    with connect(f"{daemon.url}/echo") as client:
        assert admin.call("/push", {"route": "/echo", "text": "hi"}, key=key)[0] == 200
        assert client.recv(timeout=5) == "hi"
    assert admin.call("/clients", key="ops-example-api-key-change-me")[0] == 401
    with connect(f"{daemon.url}/operator?token={token}") as operator:
        assert json.loads(operator.recv(timeout=5))["type"] == "hello"
    assert (state / "identity.key").stat().st_mode & 0o777 == 0o600
    assert (state / "queue.sqlite3").exists()
    assert key not in daemon.log() and token not in daemon.log()


def test_socket_activation_endpoint_syntax() -> None:
    """A config for socket activation passes --check-config outside systemd."""
    from tests.daemon import run_cli

    config = REPO / "tests" / "conformance" / "wsdaemon.ini"
    result = run_cli("--config", str(config), "--listen", "systemd:domain=INET:index=0",
                     "--check-config")
    assert result.returncode == 0, result.stderr
    assert "systemd:domain=INET:index=0" in result.stdout



@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("signals", ["two 20 ms apart", "every 10 ms until it exits"])
def test_sigterm_again_while_stopping_still_exits_0(
    write_config: Callable[..., Path], start_daemon: Callable[..., Daemon],
    workers: int, signals: str,
) -> None:
    """An idle daemon (alone, or a supervisor with 2 workers) told to stop
    again while it stops (`timeout`, an impatient operator, systemd and a
    script both) ignores the repeat and exits 0 as documented: not 143
    (killed by the repeat while the interpreter shuts down)."""
    daemon = start_daemon(write_config(f"""
        [wsdaemon]
        listen = tcp:0:interface=127.0.0.1
        workers = {workers}

        [route:/echo]
        strategy = echo
        """))
    daemon.wait_for_log("ready" if workers == 1 else "ready: 2 workers listening", timeout=20)
    daemon.process.send_signal(signal.SIGTERM)
    time.sleep(0.02)
    daemon.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 20
    while signals != "two 20 ms apart" and daemon.process.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.01)
        daemon.process.send_signal(signal.SIGTERM)  # Popen: not once it has been reaped
    assert daemon.process.wait(timeout=20) == 0, daemon.log()[-3000:]
