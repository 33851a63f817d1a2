"""
Where things are in a TOML file.

The standard library's TOML parser gives values but no positions. This
scanner reads the same text line by line and records the line of every
table header and of every C{key =} inside it, so that an error found in a
value can point at the line that holds it. It understands the shapes rules
files use: C{[table]}, C{[[array]]}, C{[[parent.child]]}, C{[parent.child]}.
"""

from __future__ import annotations

import re

__all__ = ["TomlLines"]

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-]+)\s*\]\]?")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+)(\.[A-Za-z0-9_.\-]+)?\s*=")

TablePath = tuple[str | int, ...]


class TomlLines:
    """
    Line numbers (1-based) of tables and keys, addressed by path.

    A path names a table as the parsed document does: C{("rule", 2)} is the
    third C{[[rule]]}, C{("rule", 2, "send", 0)} the first C{[[rule.send]]}
    inside it, C{("default",)} the C{[default]} table, C{()} the top level.
    """

    def __init__(self, text: str) -> None:
        self._tables: dict[TablePath, int] = {}
        self._keys: dict[tuple[TablePath, str], int] = {}
        counts: dict[TablePath, int] = {}
        current: TablePath = ()
        in_string: str | None = None
        for number, line in enumerate(text.splitlines(), start=1):
            if in_string is not None:
                if line.count(in_string) % 2 == 1:
                    in_string = None
                continue
            header = _HEADER.match(line)
            if header:
                current = self._enter(header.group(1) == "[[", header.group(2), current, counts)
                self._tables.setdefault(current, number)
                continue
            key = _KEY.match(line)
            if key:
                self._keys.setdefault((current, key.group(1)), number)
            for quote in ('"""', "'''"):
                if line.count(quote) % 2 == 1:
                    in_string = quote
                    break

    def _enter(
        self, is_array: bool, dotted: str, current: TablePath, counts: dict[TablePath, int]
    ) -> TablePath:
        names = dotted.split(".")
        # The parent is the latest instance of each enclosing array table.
        path: TablePath = ()
        for name in names[:-1]:
            path = path + (name,)
            if path in counts:
                path = path + (counts[path] - 1,)
        path = path + (names[-1],)
        if is_array:
            index = counts.get(path, 0)
            counts[path] = index + 1
            # Children of the previous instance must not leak into this one.
            for stale in [p for p in counts if len(p) > len(path) and p[: len(path)] == path]:
                del counts[stale]
            path = path + (index,)
        return path

    def line_of(self, path: TablePath, key: str | None = None) -> int | None:
        """
        @return: the line of C{key} in the table at C{path}; failing that,
            the table's header line (or the nearest enclosing table's).
        """
        if key is not None:
            if (path, key) in self._keys:
                return self._keys[(path, key)]
            # The key may be a sub-table: [path.key] or the first [[path.key]].
            for table in (path + (key,), path + (key, 0)):
                if table in self._tables:
                    return self._tables[table]
        while path:
            if path in self._tables:
                return self._tables[path]
            path = path[:-1]
        return None
