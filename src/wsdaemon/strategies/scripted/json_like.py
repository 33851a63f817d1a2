"""
The C{json_like} matcher: a message like this JSON document, apart from the
fields it ignores; exactly (the same fields), or as a subset (the message
may have more fields). C{wsdaemon-replay --json-subset / --ignore} writes
it, so a replay still answers a client whose timestamps and ids differ
from the recording's.

    json_like = '{"op": "subscribe", "channel": "prices"}'
    json_like = { value = '{"op": "subscribe", "id": 7, "ts": 1712}',
                  ignore = ["$.id", "$.ts", "$.items[*].ts"], subset = true }

The document is JSON text (not a TOML table), so that anything a client
sends can be written: C{null}, arrays, a bare string or number.

Compared: objects by their fields (in any order; with C{subset}, the
message may have fields the document does not), arrays element by element
(same length, same order), C{true}/C{false} only to booleans, numbers by
value (C{1} is C{1.0}), strings exactly. A field or element at an ignored
path may hold anything, or be missing.

Ignored paths (L{parse_path}): C{$} then, any number of times, C{.name}
(letters, digits, C{_}, C{-}), C{['any key']} or C{["a JSON string"]}, C{[N]}
(an array's element), and C{[*]} or C{.*} (every element of an array, every
field of an object). No recursive descent (C{..}), no filters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from wsdaemon.strategies.scripted.nesting import MAX_NESTING, too_deep

__all__ = ["ANY", "MAX_IGNORED", "MAX_PATH_LENGTH", "JsonLike", "build_json_like",
           "JsonPath", "json_like_matches", "parse_path",
           "path_occurs"]

#: Ignored paths in one matcher, at most.
MAX_IGNORED = 64
#: Characters in one ignored path, at most.
MAX_PATH_LENGTH = 256


class _Any:
    """
    A path segment standing for every element or field (C{[*]}, C{.*}).
    """

    def __repr__(self) -> str:
        return "*"


#: The wildcard segment.
ANY = _Any()

Segment = str | int | _Any
JsonPath = tuple[Segment, ...]

_NAME = re.compile(r"\.([A-Za-z0-9_\-]+|\*)")
_INDEX = re.compile(r"\[(\d{1,9}|\*)\]")
_SINGLE = re.compile(r"\['([^'\\]*)'\]")
_DOUBLE = re.compile(r'\[("(?:[^"\\]|\\.)*")\]')


def parse_path(text: str) -> JsonPath:
    """
    Parse C{$.items[*].ts} into C{("items", ANY, "ts")}.

    @raise ValueError: saying where the path goes wrong and what is allowed.
    """
    if len(text) > MAX_PATH_LENGTH:
        raise ValueError(f"path longer than {MAX_PATH_LENGTH} characters")
    if not text.startswith("$"):
        raise ValueError(f"{text!r}: a path starts with $, e.g. $.timestamp")
    segments: list[Segment] = []
    at = 1
    while at < len(text):
        for pattern in (_NAME, _INDEX, _SINGLE, _DOUBLE):
            found = pattern.match(text, at)
            if found is not None:
                break
        else:
            raise ValueError(f"{text!r}: unexpected {text[at:at + 10]!r} at character {at + 1}; "
                             "expected .name, .*, [N], [*], ['key'] or [\"key\"]")
        raw = found.group(1)
        if pattern is _DOUBLE:
            segments.append(str(json.loads(raw)))
        elif raw == "*":
            segments.append(ANY)
        elif pattern is _INDEX:
            segments.append(int(raw))
        else:
            segments.append(raw)
        at = found.end()
    if not segments:
        raise ValueError(f"{text!r} ignores the whole message: name a field, e.g. $.timestamp")
    return tuple(segments)


@dataclass(frozen=True)
class JsonLike:
    """
    What a C{json_like} matcher compares a message with.

    @ivar document: the JSON document, parsed.
    @ivar ignore: the ignored paths, parsed (and as written, for messages).
    """

    document: Any
    ignore: tuple[JsonPath, ...] = ()
    subset: bool = False
    written: tuple[str, ...] = ()


def _parse_document(text: Any) -> Any:
    if not isinstance(text, str):
        raise ValueError(f"value: expected JSON text in a string, got {text!r}")
    try:
        document = json.loads(text)
    except RecursionError:
        raise ValueError(f"value: nested too deeply (more than {MAX_NESTING} levels)") from None
    except ValueError as e:
        raise ValueError(f"value: not JSON ({e})") from None
    if too_deep(document, MAX_NESTING) is not None:
        raise ValueError(f"value: nested too deeply (more than {MAX_NESTING} levels)")
    return document


def build_json_like(value: Any) -> JsonLike:
    """
    @param value: the JSON text, or a table C{{value, ignore, subset}}.
    @raise ValueError: what is wrong (prefixed with the key's name by the
        caller), and what was expected.
    """
    if isinstance(value, str):
        return JsonLike(_parse_document(value))
    if not isinstance(value, Mapping):
        raise ValueError("expected JSON text, or a table { value = '<JSON>', "
                         "ignore = [\"$.ts\"], subset = true }")
    unknown = sorted(set(value) - {"value", "ignore", "subset"})
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}; expected value, ignore, subset")
    if "value" not in value:
        raise ValueError("expected value = '<JSON text>'")
    document = _parse_document(value["value"])
    subset = value.get("subset", False)
    if not isinstance(subset, bool):
        raise ValueError(f"subset: expected true or false, got {subset!r}")
    written = value.get("ignore", [])
    if not isinstance(written, list) or not all(isinstance(p, str) for p in written):
        raise ValueError("ignore: expected a list of paths, e.g. [\"$.timestamp\"]")
    if len(written) > MAX_IGNORED:
        raise ValueError(f"ignore: more than {MAX_IGNORED} paths")
    paths = []
    for number, text in enumerate(written):
        try:
            paths.append(parse_path(text))
        except ValueError as e:
            raise ValueError(f"ignore[{number}]: {e}") from None
    return JsonLike(document, tuple(paths), subset, tuple(written))


def _advance(paths: Iterable[JsonPath], key: str | int) -> tuple[JsonPath, ...]:
    """
    @return: what is left of the paths that go through C{key}.
    """
    return tuple(p[1:] for p in paths if p[0] is ANY or p[0] == key)


def _ignored(paths: tuple[JsonPath, ...]) -> bool:
    return any(not p for p in paths)


def _like(pattern: Any, value: Any, paths: tuple[JsonPath, ...], subset: bool) -> bool:
    """
    Recurses as deep as C{pattern} nests: at most L{MAX_NESTING} levels.
    """
    if isinstance(pattern, dict):
        if not isinstance(value, dict):
            return False
        for key, expected in pattern.items():
            below = _advance(paths, key)
            if _ignored(below):
                continue
            if key not in value or not _like(expected, value[key], below, subset):
                return False
        if not subset:
            for key in value.keys() - pattern.keys():
                if not _ignored(_advance(paths, key)):
                    return False
        return True
    if isinstance(pattern, list):
        if not isinstance(value, list) or len(value) != len(pattern):
            return False
        return all(_ignored(below := _advance(paths, index)) or _like(p, v, below, subset)
                   for index, (p, v) in enumerate(zip(pattern, value, strict=True)))
    if isinstance(pattern, bool) or isinstance(value, bool):
        return isinstance(pattern, bool) and isinstance(value, bool) and pattern is value
    if isinstance(pattern, int | float) != isinstance(value, int | float):
        return False
    return bool(pattern == value)


def json_like_matches(like: JsonLike, value: Any) -> bool:
    """
    Whether the parsed message C{value} is like C{like.document}.
    """
    return _like(like.document, value, like.ignore, like.subset)


def path_occurs(document: Any, path: JsonPath) -> bool:
    """
    Whether C{path} leads to something in C{document} (so that ignoring it
    makes a difference).
    """
    layer: list[Any] = [document]
    for segment in path:
        found: list[Any] = []
        for item in layer:
            if isinstance(item, dict):
                found.extend(item.values() if segment is ANY else
                             [item[segment]] if segment in item else [])
            elif isinstance(item, list):
                found.extend(item if segment is ANY else
                             [item[segment]] if isinstance(segment, int) and
                             segment < len(item) else [])
        layer = found
    return bool(layer)
