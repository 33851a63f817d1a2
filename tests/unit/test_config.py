"""
Config loading: the shipped example, defaults, and one clear line per mistake.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from tests.daemon import REPO
from wsdaemon.components import operator_component
from wsdaemon.config import ConfigError, DaemonConfig, ProtocolSettings, load_config
from wsdaemon.endpoints import check_endpoint
from wsdaemon.server.assembly import Assembly
from wsdaemon.server.service import Parts
from wsdaemon.strategies.echo import EchoStrategy
from wsdaemon.support.settings import operator_settings

MINIMAL = """
[wsdaemon]
listen = tcp:8080

[route:/echo]
strategy = echo
"""


def load(path: Path, **kwargs: object) -> object:
    return load_config(
        path, clock=Clock(), check_endpoint=lambda d: check_endpoint(d, Clock()), **kwargs
    )


def built(config: DaemonConfig) -> Parts:
    """What the daemon builds from C{config} (nothing started)."""
    return Assembly(Clock(), components=operator_component).fresh(config)


def test_shipped_config_loads() -> None:
    """etc/wsdaemon.ini is valid and has the documented safe defaults."""
    config = load_config(REPO / "etc" / "wsdaemon.ini", clock=Clock())
    assert config.listen == ("tcp:8080:interface=127.0.0.1",)
    assert config.demo_page is True
    routes = {r.path: r for r in config.routes}
    echo = routes["/echo"]
    assert echo.strategy_name == "echo"
    assert isinstance(built(config).routes[0].strategy, EchoStrategy)
    settings = echo.protocol
    assert settings.max_message_size == 65536
    assert settings.max_frame_size == 65536
    assert settings.compression is False
    assert settings.origins.allows("http://localhost:3000")
    assert settings.origins.allows("http://127.0.0.1:8080")
    assert not settings.origins.allows("http://example.com")
    assert settings.origins.allows(None)


def test_defaults_without_protocol_section(write_config: Callable[..., Path]) -> None:
    """Without a [protocol] section every route gets the safe defaults."""
    config = load_config(write_config(MINIMAL), clock=Clock())
    assert config.routes[0].protocol == ProtocolSettings()
    assert ProtocolSettings().max_message_size == 64 * 1024


def test_route_overrides_protocol(write_config: Callable[..., Path]) -> None:
    """A route section may override [protocol] keys for itself only."""
    config = load_config(write_config("""
        [wsdaemon]
        listen = tcp:8080
        [protocol]
        max_message_size = 1MiB
        max_frame_size = 1MiB
        compression = on
        [route:/a]
        strategy = echo
        [route:/b/c]
        strategy = echo
        max_message_size = 100
        max_frame_size = 100
        allowed_origins = https://*.example.com
        """), clock=Clock())
    a, b = config.routes
    assert (a.path, a.protocol.max_message_size, a.protocol.compression) == ("/a", 1 << 20, True)
    assert (b.path, b.protocol.max_message_size, b.protocol.compression) == ("/b/c", 100, True)
    assert b.protocol.origins.allows("https://app.example.com")
    assert not b.protocol.origins.allows("http://localhost:8080")
    assert b.options == {}


def test_listen_override(write_config: Callable[..., Path]) -> None:
    """--listen values replace the config's listen list."""
    config = load_config(write_config(MINIMAL), clock=Clock(),
                         listen_override=["tcp:1", "unix:/tmp/x.sock"])
    assert config.listen == ("tcp:1", "unix:/tmp/x.sock")


def test_summary_is_one_line(write_config: Callable[..., Path]) -> None:
    """The --check-config summary is one line naming routes and endpoints."""
    config = load_config(write_config(MINIMAL), clock=Clock())
    summary = config.summary()
    assert "\n" not in summary
    assert "/echo (echo)" in summary and "tcp:8080" in summary


# Each case: config text, then fragments the one-line error must contain
# (file name is checked for every case).
BAD_CONFIGS = {
    "unknown section": (
        MINIMAL + "\n[sever]\nx = 1\n",
        [":7: [sever]", "unknown section", "[wsdaemon]"],
    ),
    "unknown key": (
        "[wsdaemon]\nlisten = tcp:8080\nlissen = tcp:1\n[route:/echo]\nstrategy = echo\n",
        [":3: [wsdaemon] lissen", "unknown key (did you mean listen?)", "demo_page"],
    ),
    "unknown protocol key": (
        MINIMAL + "\n[protocol]\nmax_msg = 5\n",
        [":8: [protocol] max_msg", "unknown key", "max_message_size"],
    ),
    "bad size": (
        MINIMAL + "max_message_size = lots\n",
        [":6: [route:/echo] max_message_size", "expected a size in bytes", "'lots'"],
    ),
    "negative seconds": (
        MINIMAL + "open_handshake_timeout = -1\n",
        ["[route:/echo] open_handshake_timeout", "non-negative number of seconds"],
    ),
    "bad bool": (
        MINIMAL + "compression = maybe\n",
        ["[route:/echo] compression", "expected yes or no"],
    ),
    "frame bigger than message": (
        MINIMAL + "max_frame_size = 2MiB\n",
        ["[route:/echo] max_frame_size", "at most max_message_size"],
    ),
    "bad origin pattern": (
        MINIMAL + "allowed_origins = localhost\n",
        ["[route:/echo] allowed_origins", "scheme://host[:port]", "'localhost'"],
    ),
    "unknown strategy": (
        "[wsdaemon]\nlisten = tcp:8080\n[route:/echo]\nstrategy = ecoh\n",
        [":4: [route:/echo] strategy", "unknown strategy 'ecoh' (did you mean echo?)",
         "expected one of: command, echo"],
    ),
    "dotted strategy that does not import": (
        "[wsdaemon]\nlisten = tcp:8080\n[route:/echo]\nstrategy = no.such.module\n",
        ["[route:/echo] strategy", "cannot import 'no.such.module'"],
    ),
    "dotted strategy that is no factory": (
        "[wsdaemon]\nlisten = tcp:8080\n[route:/echo]\nstrategy = os.path.join\n",
        ["[route:/echo] strategy", "does not provide IStrategyFactory"],
    ),
    "missing strategy": (
        "[wsdaemon]\nlisten = tcp:8080\n[route:/echo]\nmax_connections = 3\n",
        ["[route:/echo] strategy", "missing", "echo"],
    ),
    "unknown strategy option": (
        MINIMAL + "greeting = hi\n",
        [":6: [route:/echo] greeting", "unknown option"],
    ),
    "duplicate route section": (
        MINIMAL + "\n[route:/echo]\nstrategy = echo\n",
        [":7: [route:/echo]", "duplicate route '/echo'"],
    ),
    "duplicate route by trailing slash": (
        MINIMAL + "\n[route:/echo/]\nstrategy = echo\n",
        [":7: [route:/echo/]", "duplicate route '/echo'"],
    ),
    "nested route": (
        MINIMAL + "\n[route:/echo/inner]\nstrategy = echo\n",
        [":7: [route:/echo/inner]", "lies inside route '/echo'"],
    ),
    "bad route path": (
        "[wsdaemon]\nlisten = tcp:8080\n[route:echo]\nstrategy = echo\n",
        [":3: [route:echo]", "[route:/path]"],
    ),
    "root route": (
        "[wsdaemon]\nlisten = tcp:8080\n[route:/]\nstrategy = echo\n",
        [":3: [route:/]", "one or more"],
    ),
    "duplicate key": (
        "[wsdaemon]\nlisten = tcp:8080\nlisten = tcp:8081\n[route:/echo]\nstrategy = echo\n",
        [":3: [wsdaemon] listen", "given twice"],
    ),
    "missing listen": (
        "[wsdaemon]\ndemo_page = no\n[route:/echo]\nstrategy = echo\n",
        ["[wsdaemon] listen", "missing", "endpoint"],
    ),
    "bad endpoint": (
        "[wsdaemon]\nlisten = tcp:eighty\n[route:/echo]\nstrategy = echo\n",
        [":2: [wsdaemon] listen", "'tcp:eighty'", "Twisted endpoint string"],
    ),
    "bad systemd endpoint": (
        "[wsdaemon]\nlisten = systemd:index=0\n[route:/echo]\nstrategy = echo\n",
        ["[wsdaemon] listen", "systemd:domain=INET"],
    ),
    "no main section": (
        "[route:/echo]\nstrategy = echo\n",
        ["missing section [wsdaemon]"],
    ),
    "no routes": (
        "[wsdaemon]\nlisten = tcp:8080\n",
        ["no routes", "[route:/path]"],
    ),
    "key before any section": (
        "listen = tcp:8080\n",
        [":1:", "[section] header"],
    ),
    "not key = value": (
        "[wsdaemon]\nlisten\n",
        [":2:", "expected 'key = value'"],
    ),
    "operator strategy without [operator]": (
        "[wsdaemon]\nlisten = tcp:8080\n[route:/support]\nstrategy = operator\n",
        [":3: [route:/support]", "needs an [operator] section"],
    ),
    "operator without tokens": (
        MINIMAL + "\n[operator]\nlease = 5\n",
        ["[operator] tokens", "no operator tokens"],
    ),
    "operator token too short": (
        MINIMAL + "\n[operator]\ntokens = alice:short\n",
        [":8: [operator] tokens", "at least 16 characters"],
    ),
    "operator tokens file missing": (
        MINIMAL + "\n[operator]\ntokens_file = nope.tokens\n",
        [":8: [operator] tokens_file", "cannot read", "nope.tokens"],
    ),
    "operator bad fallback_after": (
        MINIMAL + "\n[operator]\ntokens = alice:aaaaaaaaaaaaaaaaaa\nfallback_after = -1\n",
        [":9: [operator] fallback_after", "expected"],
    ),
    "operator bad channel size": (
        MINIMAL + "\n[operator]\ntokens = alice:aaaaaaaaaaaaaaaaaa\nmax_message_size = 0\n",
        [":9: [operator] max_message_size", "greater than 0"],
    ),
    "operator unknown key": (
        MINIMAL + "\n[operator]\ntokens = alice:aaaaaaaaaaaaaaaaaa\nrouteing = auto\n",
        [":9: [operator] routeing", "unknown key (did you mean routing?)", "tokens_file"],
    ),
    "operator path collides with a route": (
        MINIMAL + "\n[operator]\ntokens = alice:aaaaaaaaaaaaaaaaaa\npath = /echo\n",
        ["[operator]", "/echo collides with route /echo"],
    ),
    "broker unknown backend": (
        MINIMAL + "\n[broker]\nbackend = kafka\n",
        [":8: [broker] backend", "expected embedded or redis, got 'kafka'"],
    ),
    "broker redis without url": (
        MINIMAL + "\n[broker]\nbackend = redis\n",
        ["[broker] url", "missing; expected redis://"],
    ),
    "broker bad url": (
        MINIMAL + "\n[broker]\nbackend = redis\nurl = http://localhost:6379\n",
        [":9: [broker] url", "expected redis://[:password@]host[:port][/db]"],
    ),
    "broker bad database": (
        MINIMAL + "\n[broker]\nbackend = redis\nurl = redis://localhost/zero\n",
        [":9: [broker] url", "the database must be a number"],
    ),
    "broker bad timeout": (
        MINIMAL + "\n[broker]\nbackend = redis\nurl = redis://localhost\ntimeout = 0\n",
        [":10: [broker] timeout", "greater than 0"],
    ),
    "broker redis key with embedded": (
        MINIMAL + "\n[broker]\nbackend = embedded\nurl = redis://localhost\n",
        [":9: [broker] url", "only used with backend = redis"],
    ),
    "broker unknown key": (
        MINIMAL + "\n[broker]\nbackend = redis\nurl = redis://localhost\nprefx = x:\n",
        [":10: [broker] prefx", "unknown key (did you mean prefix?)"],
    ),
    "unknown section close to a known one": (
        MINIMAL + "\n[protocl]\nmax_message_size = 5\n",
        [":7: [protocl]", "unknown section (did you mean [protocol]?)"],
    ),
    "section in capitals": (
        MINIMAL + "\n[Protocol]\nmax_message_size = 5\n",
        [":7: [Protocol]", "unknown section (did you mean [protocol]?)"],
    ),
    "route section misspelt": (
        MINIMAL + "\n[rout:/chat]\nstrategy = echo\n",
        [":7: [rout:/chat]", "unknown section (did you mean [route:/chat]?)"],
    ),
    "misspelt main key": (
        MINIMAL.replace("listen", "max_connection_total = 5\nlisten"),
        [":2: [wsdaemon] max_connection_total",
         "unknown key (did you mean max_connections_total?)"],
    ),
    "misspelt protocol key": (
        MINIMAL + "\n[protocol]\nmax_mesage_size = 5\n",
        [":8: [protocol] max_mesage_size", "unknown key (did you mean max_message_size?)"],
    ),
    "misspelt route key": (
        MINIMAL + "max_conections = 5\n",
        [":6: [route:/echo] max_conections", "unknown option (did you mean max_connections?)"],
    ),
    "misspelt strategy option": (
        MINIMAL.replace("echo\n", "scripted\n") + "rule = bot.rules.toml\n",
        [":6: [route:/echo] rule", "unknown option (did you mean rules?)"],
    ),
    "misspelt broker backend": (
        MINIMAL + "\n[broker]\nbackend = rediss\n",
        [":8: [broker] backend", "got 'rediss' (did you mean redis?)"],
    ),
    "misspelt identity mode": (
        MINIMAL + "identity = claim\n",
        [":6: [route:/echo] identity", "got 'claim' (did you mean claimed?)"],
    ),
    "operator route's own ack_message": (
        MINIMAL + "\n[operator]\ntokens = alice:aaaaaaaaaaaaaaaaaa\n"
        "[route:/support]\nstrategy = operator\nack_message = you are {number}\n",
        ["[route:/support] ack_message", "set ack_message in [operator] instead"],
    ),
    "operator model queue": (
        MINIMAL + "\n[operator]\ntokens = alice:aaaaaaaaaaaaaaaaaa\nmodel = queue\n",
        [":9: [operator] model", "the item queue was retired", "remove this line"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_is_one_clear_line(case: str, write_config: Callable[..., Path]) -> None:
    """Each mistake gives one line naming file, line, section, key and what was expected."""
    text, fragments = BAD_CONFIGS[case]
    path = write_config(text)
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


@pytest.mark.parametrize("case", ["unknown section", "unknown strategy option",
                                  "broker unknown backend", "bad route path"])
def test_no_suggestion_when_nothing_is_close(case: str,
                                             write_config: Callable[..., Path]) -> None:
    """A name far from every known one gets the list of known names, no guess."""
    text, _ = BAD_CONFIGS[case]
    with pytest.raises(ConfigError) as info:
        load(write_config(text))
    assert "did you mean" not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    """A missing file is a ConfigError naming it."""
    with pytest.raises(ConfigError, match=r"nope\.ini: config file not found"):
        load(tmp_path / "nope.ini")


def test_not_utf8(tmp_path: Path) -> None:
    """A file that is not UTF-8 is a ConfigError."""
    path = tmp_path / "latin1.ini"
    path.write_bytes(b"[wsdaemon]\nlisten = caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load(path)


def test_bad_listen_override(write_config: Callable[..., Path]) -> None:
    """A wrong --listen value is named as coming from the command line."""
    with pytest.raises(ConfigError, match=r"^--listen: 'nonsense:1'"):
        load(write_config(MINIMAL), listen_override=["nonsense:1"])


def test_operator_section(write_config: Callable[..., Path]) -> None:
    """[operator] settings, tokens inline and from a file, paths relative to the config."""
    path = write_config(MINIMAL + """
[operator]
tokens = alice:aaaaaaaaaaaaaaaaaa
tokens_file = ops.tokens
store = state/q.sqlite3
fallback_after = 0
[route:/support]
strategy = operator
""")
    (path.parent / "ops.tokens").write_text("# ops\nbob:bbbbbbbbbbbbbbbbbb\n")
    config = load_config(path, clock=Clock())
    operator = operator_settings(config)
    assert operator is not None and built(config).component is not None
    assert dict(operator.tokens) == {"aaaaaaaaaaaaaaaaaa": "alice", "bbbbbbbbbbbbbbbbbb": "bob"}
    assert operator.store_path == path.parent / "state" / "q.sqlite3"
    assert operator.conversations.fallback_after == 0.0 and not operator.ignored
    assert (operator.path, operator.console_path) == ("/operator", "/console")
    assert "2 token(s)" in config.summary() and "aaaa" not in config.summary()
    assert not (path.parent / "state").exists(), "loading the config must not touch the store"


def test_config_values_are_immutable(write_config: Callable[..., Path]) -> None:
    """Loaded config values cannot be changed."""
    config = load_config(write_config(MINIMAL), clock=Clock())
    with pytest.raises(AttributeError):
        config.listen = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.routes[0].options["x"] = "y"  # type: ignore[index]


def test_broker_section(write_config: Callable[..., Path]) -> None:
    """[broker] backend = redis: URL parts, prefix, timings; the conversations
    live in Redis."""
    from wsdaemon.support.component import SupportComponent
    from wsdaemon.support.redis_store import RedisConversationStore

    path = write_config(MINIMAL + """
[broker]
backend = redis
url = redis://:s%40cret@redis.internal:6380/3
prefix = chat:
timeout = 2.5
heartbeat = 1

[operator]
tokens = alice:aaaaaaaaaaaaaaaaaa
""")
    config = load(path)
    broker = config.broker  # type: ignore[attr-defined]
    assert (broker.host, broker.port, broker.db, broker.password) == (
        "redis.internal", 6380, 3, "s@cret")
    assert (broker.prefix, broker.timeout, broker.heartbeat) == ("chat:", 2.5, 1.0)
    assert broker.daemon_id == ""  # named by the link: host, pid, random
    parts = built(config)  # type: ignore[arg-type]
    assert parts.link is not None and parts.link.daemon_id
    assert isinstance(parts.component, SupportComponent)
    assert isinstance(parts.component.store, RedisConversationStore)
    summary = config.summary()  # type: ignore[attr-defined]
    assert "broker redis at redis.internal:6380/3" in summary and "cret" not in summary


def test_embedded_broker_is_the_default(write_config: Callable[..., Path]) -> None:
    """No [broker] (or backend = embedded): SQLite store, no Redis link."""
    for extra in ("", "\n[broker]\nbackend = embedded\n"):
        config = load(write_config(MINIMAL + extra))
        assert config.broker is None and built(config).link is None  # type: ignore[attr-defined,arg-type]


def test_workers(write_config: Callable[..., Path]) -> None:
    """workers: a count or auto (one per core usable here), 1 by default, --workers wins."""
    from wsdaemon.cores import usable_cores

    assert load_config(write_config(MINIMAL), clock=Clock()).workers == 1
    path = write_config(MINIMAL.replace("[wsdaemon]", "[wsdaemon]\nworkers = 3"))
    assert load_config(path).workers == 3
    assert load_config(path, workers_override="2").workers == 2
    assert load_config(path, workers_override="auto").workers == usable_cores().usable
    assert "3 workers" in load_config(path).summary()


@pytest.mark.parametrize("workers, tail, override, expected", [
    ("0", "", None, "[wsdaemon] workers: expected 1 to 256 worker processes or auto"),
    ("many", "", None, "expected a number of worker processes (1 or more) or auto"),
    ("1", "", "0", "--workers: expected 1 to 256"),
    ("2", "[operator]\ntokens = alice:aaaaaaaaaaaaaaaaaaaaaaaa\n[route:/support]\n"
     "strategy = operator\n", None,
     "cannot share one embedded conversation store (route /support): add [broker] backend = "
     "redis, or set workers = 1"),
])
def test_workers_refused(write_config: Callable[..., Path], workers: str, tail: str,
                         override: str | None, expected: str) -> None:
    """A workers count that cannot work is refused, naming the fix."""
    path = write_config(MINIMAL.replace("[wsdaemon]", f"[wsdaemon]\nworkers = {workers}")
                        + "\n" + tail)
    with pytest.raises(ConfigError) as error:
        load_config(path, workers_override=override)
    assert expected in str(error.value)


def test_workers_need_shareable_listeners(write_config: Callable[..., Path]) -> None:
    """TLS listeners cannot be shared by workers: the error says what to do."""
    path = write_config(MINIMAL.replace("[wsdaemon]", "[wsdaemon]\nworkers = 2"))
    with pytest.raises(ConfigError) as error:
        load_config(path, listen_override=["ssl:8443:privateKey=k.pem:certKey=c.pem"])
    assert "terminate TLS in front" in str(error.value)


def test_a_plugin_failing_its_own_way_is_a_config_error(
        tmp_path: Path, write_config: Callable[..., Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A plugin factory without an option check whose trial build raises
    anything (not an OptionError) is refused with the route's section and
    key and its message, not a traceback."""
    (tmp_path / "flaky_plugin.py").write_text(
        "from zope.interface import implementer\n"
        "from wsdaemon.interfaces import IStrategyFactory\n"
        "@implementer(IStrategyFactory)\n"
        "class Flaky:\n"
        "    def create(self, options, context):\n"
        "        raise RuntimeError('the licence server is down')\n"
        "factory = Flaky()\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write_config("[wsdaemon]\nlisten = tcp:8080\n[route:/x]\n"
                        "strategy = flaky_plugin.factory\n")
    with pytest.raises(ConfigError) as caught:
        load(path)
    text = str(caught.value)
    for part in ("[route:/x] strategy", "flaky_plugin.factory", "the licence server is down"):
        assert part in text, text
