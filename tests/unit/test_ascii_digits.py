"""
Numbers typed or configured are ASCII digits: a superscript or other
Unicode digit (which str.isdigit() accepts and int() refuses) is a clear
usage or config error, never an exception from int().
"""

from __future__ import annotations

import pytest
from twisted.python import usage

from wsdaemon.config._broker import _redis_url
from wsdaemon.strategies.operator.commands import parse_command
from wsdaemon.strategies.scripted.template import parse_json_path
from wsdaemon.tap import Options


@pytest.mark.parametrize("line", ["show seq ²", "show seq ١٢", "wait ²"])
def test_console_commands_refuse_unicode_digits(line: str) -> None:
    """The console answers with its usage line."""
    with pytest.raises(ValueError, match="usage"):
        parse_command(line)


def test_console_commands_take_ascii_digits() -> None:
    """The same commands with ASCII digits work."""
    assert parse_command("show seq 12") == {"type": "text", "seq": 12, "offset": 0}
    assert parse_command("wait 3") == "wait 3"


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
