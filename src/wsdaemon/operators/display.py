"""
Showing what clients wrote on an operator's terminal, safely: control
characters, escape sequences and invisible formatting are made visible
(C{\\x1b}, C{\\n}, C{\\u202e}), never interpreted, so a client can neither
drive the terminal (clear it, set its title, write the clipboard) nor start
a line of its own; one item stays one line.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["describe", "transcript_line", "visible"]

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


def _more(entry: dict[str, Any], key: str, hint: str) -> str:
    if not entry.get("truncated"):
        return ""
    hidden = int(entry.get("length", 0)) - len(entry[key])
    return f" [... {hidden} more characters: {hint}]"


def describe(item: dict[str, Any]) -> str:
    """
    @return: one line for an item, everything from the network escaped.
    """
    who = f" by {visible(item['operator'])}" if item.get("operator") else ""
    online = "" if item.get("online", True) else " (offline)"
    item_id = visible(item["item_id"])
    return (f"#{item_id} {visible(item['route'])} {visible(item['client_id'])}{online} "
            f"[{visible(item['state'])}{who}]: {visible(item['text'])}"
            + _more(item, "text", f"show #{item_id}"))


def transcript_line(entry: dict[str, Any]) -> str:
    """
    @return: one line for a transcript entry, everything escaped.
    """
    arrow = ("<- client" if entry["direction"] == "in"
             else f"-> {visible(entry['sender'])}")
    failed = " (FAILED: never delivered)" if entry.get("failed") else ""
    return (f"{entry['at']:.3f} {visible(entry['client_id'])} {arrow}{failed}: "
            f"{visible(entry['body'])}" + _more(entry, "body", f"show seq {entry['seq']}"))
