"""
Close codes: one set says which the daemon may send (RFC 6455 section 7.4
and IANA's registry), and every place that closes a connection, or lets
someone ask for a close, goes by it.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred

from wsdaemon.connections.session import Session
from wsdaemon.records import SENDABLE_CLOSE_CODES
from wsdaemon.strategies.scripted.rules import RulesError, load_rules
from wsdaemon.testing import RecordingSession

SENDABLE = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999]
NEVER_SENT = [999, 1004, 1005, 1006, 1015, 1016, 2999, 5000]


class Writer:
    """What a L{Session} writes to: remembers the close."""

    def __init__(self) -> None:
        self.closed: tuple[int, str] | None = None

    def sendMessage(self, payload: bytes, isBinary: bool) -> None:
        pass

    def close_with(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def drop(self) -> None:
        pass

    def pause_reading(self, seconds: float) -> None:
        pass

    def hold_writes(self, seconds: float) -> None:
        pass

    def send_fragmented(self, message: str | bytes, frames: int) -> bool:
        return True

    def ping(self, payload: bytes, timeout: float) -> Deferred[float | None]:
        return Deferred()


def test_the_sendable_set_is_rfc_6455s() -> None:
    """1000-1003, 1007-1014 and 3000-4999; never 1004-1006 or 1015."""
    assert SENDABLE_CLOSE_CODES == {1000, 1001, 1002, 1003, *range(1007, 1015),
                                    *range(3000, 5000)}


@pytest.mark.parametrize("code", SENDABLE)
def test_a_session_closes_with_every_sendable_code(code: int) -> None:
    """A strategy (the proxy passing on an upstream's 1012, 1013 or 1014)
    closes with any code a server may send."""
    writer = Writer()
    Session("s1", "/r", "tcp4:127.0.0.1:1", 0.0, writer).close(code, "why")
    assert writer.closed == (code, "why")


@pytest.mark.parametrize("code", NEVER_SENT)
def test_a_session_refuses_codes_that_never_go_on_the_wire(code: int) -> None:
    """1004-1006, 1015 and codes outside the registry are refused, by the
    real session and by the testing one alike."""
    writer = Writer()
    with pytest.raises(ValueError, match="1000-1003, 1007-1014 or 3000-4999"):
        Session("s1", "/r", "tcp4:127.0.0.1:1", 0.0, writer).close(code)
    assert writer.closed is None
    with pytest.raises(ValueError):
        RecordingSession().close(code)


def rules(tmp_path: Path, close: Any) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(textwrap.dedent(f"""\
        [[rule]]
        text = "x"
        close = {close}
        """), encoding="utf-8")
    return path


@pytest.mark.parametrize("code", SENDABLE)
def test_a_rule_closes_with_every_sendable_code(tmp_path: Path, code: int) -> None:
    """A rule may close with any code a server may send (a replayed
    upstream's 1013 among them)."""
    loaded = load_rules(rules(tmp_path, f'{{ code = {code}, reason = "r" }}'))
    (rule,) = loaded.rules
    assert rule.close is not None and rule.close.code == code


@pytest.mark.parametrize("code", NEVER_SENT)
def test_a_rule_may_not_close_with_codes_that_never_go_on_the_wire(
        tmp_path: Path, code: int) -> None:
    """The loader names the sendable codes."""
    with pytest.raises(RulesError, match="expected code 1000-1003, 1007-1014 or 3000-4999"):
        load_rules(rules(tmp_path, code))
