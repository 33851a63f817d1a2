"""
Pages of the operator protocol: every message the daemon sends an operator
is bounded, whatever the queue holds. Lists come a page at a time (at most
C{limit} entries and L{PAGE_BYTES} of JSON), long texts as a preview with
their length, fetched whole in chunks with the C{text} request.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from wsdaemon.config import MAX_PAGE

__all__ = ["MAX_LIMIT", "PAGE_BYTES", "TEXT_CHUNK", "chunk", "encode", "page", "shorten"]

#: The most entries one page may ask for.
MAX_LIMIT = MAX_PAGE
#: A page stops growing past this many bytes of JSON (a message's whole
#: size stays well under the channel's limit).
PAGE_BYTES = 512 * 1024
#: Characters of a text per C{text} answer (at most 6 JSON bytes each).
TEXT_CHUNK = 32 * 1024


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, ensure_ascii=False).encode("utf-8")


def shorten(entry: dict[str, Any], key: str, chars: int) -> dict[str, Any]:
    """
    Cut C{entry[key]} to C{chars} characters, saying so: C{length} (the
    whole text's) and C{truncated}.
    """
    text = entry[key]
    length = entry.get("length", len(text))
    entry["length"] = length
    if chars and len(text) > chars:
        entry[key] = text[:chars]
    entry["truncated"] = length > len(entry[key])
    return entry


def page(entries: Iterable[Any], describe: Callable[[Any], dict[str, Any]],
         limit: int) -> tuple[list[dict[str, Any]], bool]:
    """
    @return: up to C{limit} described entries, stopping early once they
        pass L{PAGE_BYTES}, and whether more entries follow.
    """
    shown: list[dict[str, Any]] = []
    size = 0
    it: Iterator[Any] = iter(entries)
    for entry in it:
        if len(shown) >= limit or size >= PAGE_BYTES:
            return shown, True
        described = describe(entry)
        size += len(encode(described))
        shown.append(described)
    return shown, False


def chunk(text: str, offset: int) -> dict[str, Any]:
    """
    @return: the part of C{text} from C{offset}, with where it stands.
    """
    part = text[offset:offset + TEXT_CHUNK]
    return {"text": part, "offset": offset, "length": len(text),
            "more": offset + len(part) < len(text)}
