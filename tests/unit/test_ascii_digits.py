"""
Numbers typed or configured are ASCII digits: a superscript or other
Unicode digit (which str.isdigit() accepts and int() refuses) is a clear
usage or config error, never an exception from int().
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.python import usage

from wsdaemon.config._broker import _redis_url
from wsdaemon.strategies.scripted.template import parse_json_path
from wsdaemon.support.console import ConversationConsole
from wsdaemon.support.console_commands import parse_when
from wsdaemon.tap import Options


def console() -> tuple[ConversationConsole, list[dict[str, Any]], io.StringIO]:
    err, sent = io.StringIO(), []
    typed = ConversationConsole(io.StringIO(), err, lambda status: None, clock=Clock())
    typed.connected(sent.append)
    return typed, sent, err


@pytest.mark.parametrize("line", ["capacity ²", "capacity ١٢"])
def test_console_commands_refuse_unicode_digits(line: str) -> None:
    """The terminal console answers with its usage line and sends nothing."""
    typed, sent, err = console()
    typed.line(line)
    assert sent == [] and "usage: capacity N" in err.getvalue()


@pytest.mark.parametrize("when", ["²m", "١٢m", "١٢:٣٠", "1²:30"])
def test_snooze_times_refuse_unicode_digits(when: str) -> None:
    """A snooze time in other digits is refused saying what is expected."""
    with pytest.raises(ValueError, match="expected a time like 30m"):
        parse_when(when, 0.0)


def test_console_commands_take_ascii_digits() -> None:
    """The same commands with ASCII digits work."""
    typed, sent, err = console()
    typed.line("capacity 12")
    assert sent == [{"type": "capacity", "n": 12, "id": 1}] and err.getvalue() == ""
    assert parse_when("30m", 100.0) == 1900.0
    assert parse_when("12:30", 0.0) > 0


def test_broker_url_database_must_be_ascii_digits() -> None:
    """A Redis URL's database is a number: '²' is refused with the reason."""
    with pytest.raises(ValueError, match="must be a number"):
        _redis_url("redis://127.0.0.1:6379/²")
    assert _redis_url("redis://127.0.0.1:6379/2")["db"] == 2


def test_json_path_index_must_be_ascii_digits() -> None:
    """'items.²' is a field name or an error, never int('²')."""
    assert parse_json_path("items.0") == ("items", 0)
    try:
        parsed = parse_json_path("items.²")
    except ValueError:  # refused as odd characters: as good
        return
    assert parsed == ("items", "²")


def test_worker_option_must_be_ascii_digits() -> None:
    """--worker ² is a usage error."""
    with pytest.raises(usage.UsageError, match="--worker takes a number"):
        Options().parseOptions(["--config", "x.ini", "--worker", "²"])
