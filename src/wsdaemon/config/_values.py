"""
Parsers for single config values: each takes the raw string and returns the
value, or raises ValueError saying what was expected.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off"}


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"expected yes or no (true/false, on/off, 1/0), got {raw!r}")


def _size(raw: str) -> int:
    value = raw.strip().lower()
    units = {"kib": 1024, "k": 1024, "mib": 1024 * 1024, "m": 1024 * 1024}
    multiplier = 1
    for suffix, factor in units.items():
        if value.endswith(suffix):
            value, multiplier = value[: -len(suffix)].strip(), factor
            break
    try:
        number = int(value)
    except ValueError:
        raise ValueError(
            f"expected a size in bytes (e.g. 65536, 64KiB, 16MiB), got {raw!r}"
        ) from None
    if number <= 0:
        raise ValueError(f"expected a size greater than 0, got {raw!r}")
    return number * multiplier


def _seconds(raw: str, allow_zero: bool) -> float:
    try:
        number = float(raw.strip())
    except ValueError:
        raise ValueError(f"expected a number of seconds (e.g. 5 or 0.5), got {raw!r}") from None
    if number != number or number in (float("inf"), float("-inf")) or number < 0:
        raise ValueError(f"expected a finite, non-negative number of seconds, got {raw!r}")
    if number == 0 and not allow_zero:
        raise ValueError(f"expected a number of seconds greater than 0, got {raw!r}")
    return number


def _rate(raw: str) -> float:
    try:
        number = float(raw.strip())
    except ValueError:
        raise ValueError(f"expected messages per second (e.g. 100; 0 = no limit), got {raw!r}") \
            from None
    if number != number or number < 0 or number == float("inf"):
        raise ValueError(f"expected a finite number >= 0 of messages per second, got {raw!r}")
    return number


def _count(raw: str) -> int:
    try:
        number = int(raw.strip())
    except ValueError:
        raise ValueError(f"expected a whole number, got {raw!r}") from None
    if number < 0:
        raise ValueError(f"expected a whole number >= 0, got {raw!r}")
    return number


def _count_in(raw: str, low: int, high: int | None) -> int:
    number = _count(raw)
    if number < low or (high is not None and number > high):
        upto = f" to {high}" if high is not None else " or more"
        raise ValueError(f"expected a whole number from {low}{upto}, got {raw!r}")
    return number


def _words(raw: str) -> list[str]:
    return raw.split()


_PROTOCOL_KEYS: dict[str, Callable[[str], Any]] = {
    "max_message_size": _size,
    "max_frame_size": _size,
    "open_handshake_timeout": lambda raw: _seconds(raw, allow_zero=False),
    "close_handshake_timeout": lambda raw: _seconds(raw, allow_zero=False),
    "auto_ping_interval": lambda raw: _seconds(raw, allow_zero=True),
    "auto_ping_timeout": lambda raw: _seconds(raw, allow_zero=False),
    "max_connections": _count,
    "compression": _bool,
    "max_message_rate": lambda raw: _rate(raw),
    "max_fragments": _count,
    "max_outbound_buffer": _size,
    "allowed_origins": _words,
    "allow_missing_origin": _bool,
    "journal_entries": _count,
    "journal_max_bytes": _size,
}
