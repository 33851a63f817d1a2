"""
How C{wsdaemon-replay} writes the matcher of a client's message: its exact
text or bytes, or with C{--json-subset} / C{--ignore}, the scripted
strategy's C{json_like} matcher of the recorded JSON (contained in the
live message, or equal apart from the ignored paths). Messages that are not
JSON are still matched exactly.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

__all__ = ["EXACT", "Tolerance", "client_lines", "data", "toml_literal", "toml_string"]


def toml_string(text: str) -> str:
    """
    A TOML basic string (JSON's escapes are TOML's, but DEL must be escaped).
    """
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_literal(text: str) -> str:
    """
    A TOML literal string (no escapes: JSON reads as itself) when C{text}
    can be one, else a basic string.
    """
    if "'" in text or any(ord(c) < 0x20 and c != "\t" or c == "\x7f" for c in text):
        return toml_string(text)
    return f"'{text}'"


@dataclass(frozen=True)
class Tolerance:
    """
    How a client's JSON message is matched when replayed.

    @ivar subset: the live message may have fields the recorded one has not.
    @ivar ignore: paths (C{$.ts}, C{$.items[*].id}) whose values may differ
        or be missing.
    """

    subset: bool = False
    ignore: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return self.subset or bool(self.ignore)

    def matcher(self, document: Any) -> str:
        """
        @return: the C{json_like} matcher line for a recorded JSON message.
        """
        value = json.dumps(document, ensure_ascii=False, separators=(", ", ": "))
        parts = [f"value = {toml_literal(value)}"]
        if self.ignore:
            parts.append(f"ignore = [{', '.join(toml_string(p) for p in self.ignore)}]")
        if self.subset:
            parts.append("subset = true")
        return f"json_like = {{ {', '.join(parts)} }}"


def client_lines(client: dict[str, Any], tolerance: Tolerance) -> list[str]:
    """
    @return: the matcher of a rule expecting the client's message.
    """
    if client.get("type") == "binary":
        payload = data(client)
        return [f'binary_prefix = "{payload.hex()}"' if payload else "binary = true"]
    text = str(client.get("text", ""))
    exact = f"text = {toml_string(text)}"
    if not tolerance.active:
        return [exact]
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return ["# Not JSON: matched exactly.", exact]
    return [tolerance.matcher(document)]


def data(event: dict[str, Any]) -> bytes:
    return base64.b64decode(event.get("base64", ""))


#: Every message matched exactly (as without C{--json-subset} and C{--ignore}).
EXACT = Tolerance()
