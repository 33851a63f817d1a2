"""
How deeply rules nest, found without recursing.

The standard library's TOML parser recurses once per nested inline table
or array (a RecursionError past a few hundred: at start-up a traceback of
3,000 lines), and builds a dotted key in time and memory that grow with the
square of its length (a key of 20,000 parts, 40 KB, took 3.7 s and 1.5 GiB
here). So a rules file is scanned first, in one pass that only follows
strings, comments, brackets and dots; after parsing, the document is walked
without recursion for what the scan cannot see (a table header, a dotted key
and inline tables, each shallow, that add up). Rules need a few levels;
L{MAX_NESTING} is far more than any needs.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["MAX_NESTING", "nesting_depth", "too_deep", "too_deep_line"]

#: Tables, arrays and dotted-key parts nested in one another, at most.
MAX_NESTING = 64

_SPECIAL = re.compile(r"[\"'#\[\]{}.=,\n]")
# Possessive (*+, ++): a string with no end fails in linear time.
_BASIC = re.compile(r'"(?:[^"\\\n]++|\\.)*+"')
_MULTILINE_BASIC = re.compile(r'"""(?:[^"\\]++|\\.|"(?!""))*+""""{0,2}', re.DOTALL)
_LITERAL = re.compile(r"'[^'\n]*+'")


def _string_end(text: str, start: int) -> int | None:
    """
    @return: where the string that starts at C{start} ends, or None if it
        does not (the parser stops there, before anything after it).
    """
    if text.startswith("'''", start):
        end = text.find("'''", start + 3)
        if end < 0:
            return None
        end += 3
        for _ in range(2):  # up to two quotes end the string's text
            if text.startswith("'", end):
                end += 1
        return end
    pattern = (_MULTILINE_BASIC if text.startswith('"""', start)
               else _BASIC if text[start] == '"' else _LITERAL)
    found = pattern.match(text, start)
    return found.end() if found else None


def too_deep_line(text: str, limit: int = MAX_NESTING) -> int | None:
    """
    Scan a TOML text for inline tables, arrays and dotted keys (in keys and
    table headers) nested more than C{limit} deep, outside strings and
    comments.

    @return: the line (1-based) where the nesting first passes C{limit}, or
        None if it never does.
    """
    brackets: list[str] = []  # "{" and "[", open
    dots = 0  # in the key being read
    in_key = True  # a key (or a table header) may come here, not a value
    line = 1
    at = 0
    while True:
        found = _SPECIAL.search(text, at)
        if found is None:
            return None
        char, start, at = found.group(), found.start(), found.end()
        if char == "\n":
            line += 1
            if not brackets:
                in_key, dots = True, 0
        elif char == "#":
            end = text.find("\n", at)
            if end < 0:
                return None
            at = end
        elif char in "\"'":
            closed = _string_end(text, start)
            if closed is None:
                return None
            line += text.count("\n", start, closed)
            at = closed
        elif char in "[{":
            # A header's brackets ([table], [[array]]) name a key; an
            # array's hold values; an inline table's hold keys.
            in_key = char == "{" or (in_key and (not brackets or brackets[-1] == "["))
            brackets.append(char)
            dots = 0
            if len(brackets) > limit:
                return line
        elif char in "]}":
            if brackets:
                brackets.pop()
            in_key, dots = False, 0
        elif char == "=":
            in_key, dots = False, 0
        elif char == ",":
            in_key, dots = bool(brackets) and brackets[-1] == "{", 0
        elif in_key:  # a dot in a key: one more table
            dots += 1
            if len(brackets) + dots > limit:
                return line


def _pairs(value: dict[Any, Any] | list[Any]) -> Any:
    return value.items() if isinstance(value, dict) else enumerate(value)


#: A path to a table, as links (key, the path of its parent), built in
#: constant time per table and joined only for the answer.
_Link = tuple[str | int, Any] | None


def too_deep(value: Any, limit: int = MAX_NESTING) -> tuple[str | int, ...] | None:
    """
    @return: the path (keys and indexes) from C{value} to a table or array
        nested more than C{limit} deep (C{value} itself, if one, is the
        first level), or None if there is none.
    """
    if not isinstance(value, dict | list):
        return None
    waiting: list[tuple[int, Any, _Link]] = [(1, value, None)]
    while waiting:
        depth, item, link = waiting.pop()
        if depth > limit:
            path: list[str | int] = []
            while link is not None:
                key, link = link
                path.append(key)
            return tuple(reversed(path))
        below = depth + 1
        for key, child in _pairs(item):
            if isinstance(child, dict | list):
                waiting.append((below, child, (key, link)))
    return None


def nesting_depth(value: Any) -> int:
    """
    @return: how many tables and arrays nest in C{value}, itself included
        (0 for a string or number, 1 for a flat table).
    """
    if not isinstance(value, dict | list):
        return 0
    deepest = 0
    waiting: list[tuple[int, Any]] = [(1, value)]
    while waiting:
        depth, item = waiting.pop()
        deepest = max(deepest, depth)
        waiting.extend((depth + 1, child) for _, child in _pairs(item)
                       if isinstance(child, dict | list))
    return deepest
