"""
Fuzzing (hypothesis) what users and clients feed the daemon: the INI file,
the rules file and the push API's body. Nothing but the documented errors
ever comes out.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from wsdaemon.config import ConfigError, load_config
from wsdaemon.server.admin import _RequestError, parse_push
from wsdaemon.strategies.scripted.rules import RulesError, load_rules

_FUZZ = settings(max_examples=200, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])

_SECTIONS = ["wsdaemon", "protocol", "admin", "operator", "broker", "route:/echo",
             "route:/a/b", "route:", "route:/echo/", "bogus"]
_KEYS = ["listen", "strategy", "max_message_size", "max_frame_size", "tokens", "api_keys",
         "identity", "jwt_secret_file", "allowed_origins", "compression", "store", "lease",
         "max_open_total", "page_size", "preview_chars", "backend", "url", "rules",
         "identity_secret_file", "demo_page", "max_connections", "request_timeout", "x"]
_VALUES = st.one_of(
    st.sampled_from(["echo", "scripted", "operator", "tcp:0:interface=127.0.0.1", "tcp:0",
                     "64KiB", "0", "-1", "yes", "maybe", "alice:0123456789abcdef0123",
                     "jwt", "claimed", "redis://127.0.0.1:1/0", "1e309", "nan", "*",
                     "\ud800", "\x00", "a" * 300]),
    st.text(max_size=30),
)
_LINES = st.one_of(
    st.sampled_from(_SECTIONS).map(lambda s: f"[{s}]"),
    st.tuples(st.sampled_from(_KEYS), _VALUES).map(lambda kv: f"{kv[0]} = {kv[1]}"),
    st.text(max_size=40),
)


@_FUZZ
@given(lines=st.lists(_LINES, max_size=25))
def test_ini_reader_only_raises_config_errors(lines: list[str]) -> None:
    """Any INI text: the config loads, or a ConfigError with a message."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "wsdaemon.ini"
        path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
        try:
            load_config(path, clock=Clock())
        except ConfigError as e:
            assert str(e)


_RULE_LINES = st.one_of(
    st.sampled_from(["[[rule]]", "[[greeting]]", "[default]", "[[rule.send]]", "[[ticker]]",
                     "[[rule.start_ticker]]"]),
    st.tuples(st.sampled_from(["text", "regex", "json", "binary", "binary_prefix", "reply",
                               "send", "close", "delay", "once", "cycle", "name", "hex",
                               "base64", "every", "times", "start_ticker", "stop_ticker",
                               "code", "reason"]),
              st.one_of(st.sampled_from(['"x"', "'(a)\\1'", "'^(\\w+\\s?)*$'", "1.5", "-1",
                                         "true", '["a", "b"]', '{ type = "x" }', '"{match.1}"',
                                         '"{json.a.b}"', '"{nope}"', "1e400", '"ca fe"',
                                         "4000", '"\\ud800"']),
                        st.text(max_size=20).map(json.dumps))
              ).map(lambda kv: f"{kv[0]} = {kv[1]}"),
    st.text(max_size=30),
)


@_FUZZ
@given(lines=st.lists(_RULE_LINES, max_size=20))
def test_rules_file_only_raises_rules_errors(lines: list[str]) -> None:
    """Any rules text: the rules load, or a RulesError."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bot.rules.toml"
        path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
        try:
            load_rules(path)
        except RulesError as e:
            assert e.message


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10)
    | st.sampled_from(["\ud800", "AAEC", "!!", "/echo"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["all", "client", "session", "route", "text", "base64", "x"]) |
        st.text(max_size=5), inner, max_size=4),
    max_leaves=10)


@_FUZZ
@given(body=st.one_of(_JSON.map(lambda v: json.dumps(v).encode("utf-8", "surrogatepass")),
                      st.binary(max_size=80),
                      st.integers(1, 3000).map(lambda n: b"{\"a\":" * n + b"1" + b"}" * n)))
def test_push_body_only_gets_400(body: bytes) -> None:
    """Any push body: a target and a message, or a 400 with a reason."""
    try:
        target, message = parse_push(body)
    except _RequestError as e:
        assert e.code == 400 and e.message
    else:
        assert target.kind in ("session", "client", "route", "all")
        if isinstance(message, str):
            message.encode("utf-8")
