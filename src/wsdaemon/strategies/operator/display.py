"""
Showing what clients wrote on an operator's terminal, safely: control
characters, escape sequences and invisible formatting are made visible
(C{\\x1b}, C{\\n}, C{\\u202e}), never interpreted, so a client can neither
drive the terminal (clear it, set its title, write the clipboard) nor start
a line of its own; one item stays one line.
"""

from __future__ import annotations

from typing import Any

from wsdaemon.escaping import visible

__all__ = ["describe", "transcript_line", "visible"]


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
