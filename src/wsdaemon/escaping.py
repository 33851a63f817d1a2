"""
Making text from the network safe to show: control characters, escape
sequences and invisible formatting become visible escapes (C{\\x1b},
C{\\n}, C{\\u202e}), never interpreted, by a terminal or a log viewer.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["visible"]

# C0 and C1 controls, DEL, and the invisible format characters that can
# reorder or hide text (zero-width, bidi overrides and isolates, BOM).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: Any) -> str:
    """
    @return: C{text} with every control or invisible character escaped.
    """
    return _UNSAFE.sub(_escape, str(text))

