"""
Reply templates: text with C{{placeholders}}, checked when the rules load.

Templates are data: a placeholder names a value, never an expression. There
is no attribute access, no indexing syntax of Python's, no formatting spec
and no evaluation; C{{{} and C{}}} stand for literal braces.

Placeholders:
  - C{{message}}: the incoming message's text;
  - C{{session}}: the session id; C{{route}}: the route's path;
  - C{{counter}}: how many messages this connection has sent, this one included;
  - C{{time}}: the time as ISO 8601 (UTC); C{{timestamp}}: seconds since the epoch;
  - C{{match.N}} / C{{match.NAME}}: a regular expression's group (C{match.0}
    is the whole match), in rules matching a regex;
  - C{{json.PATH}}: a field of a JSON message (C{json.user.name},
    C{json.items.0}), in rules matching JSON;
  - C{{tick}}: in a ticker, how many times it has fired, this time included;
  - C{{path}}: the path the client connected to; C{{path.NAME}}: a
    placeholder of the C{[handshake] paths} pattern it matched, or of the
    rule's C{when.path};
  - C{{query.NAME}}, C{{headers.NAME}}: a query parameter, a header (any
    case) of the handshake; empty when absent;
  - C{{subprotocol}}: the subprotocol the connection was accepted with
    (empty for none).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass

from wsdaemon.spelling import did_you_mean

__all__ = ["Scope", "Template", "TemplateError", "parse_json_path"]

_SIMPLE = frozenset({"message", "session", "route", "counter", "time", "timestamp", "path",
                     "subprotocol"})
#: A query parameter's or header's name in a placeholder.
_NAME = re.compile(r"[A-Za-z0-9_.~!$'*+^`|\-]+")
#: Matched whole (fullmatch): `$` would accept a final newline.
_PATH_SEGMENT = re.compile(r"[A-Za-z0-9_\-]+")


class TemplateError(ValueError):
    """
    A template is malformed or names a placeholder its rule cannot fill.
    """


def parse_json_path(path: str) -> tuple[str | int, ...]:
    """
    Parse C{a.b.0.c} into C{("a", "b", 0, "c")}.

    @raise ValueError: for an empty path or segment, or odd characters.
    """
    segments: list[str | int] = []
    for segment in path.split("."):
        if not _PATH_SEGMENT.fullmatch(segment):
            raise ValueError(
                f"bad JSON path {path!r}: expected field names or list indexes separated "
                "by dots, e.g. user.name or items.0"
            )
        segments.append(int(segment) if segment.isascii() and segment.isdigit() else segment)
    return tuple(segments)


@dataclass(frozen=True)
class Scope:
    """
    What a template may refer to, given where it stands.

    @ivar groups: the regex's group numbers (as str) and names, or None if
        the rule does not match a regex.
    @ivar json: whether the rule matches JSON messages.
    @ivar message: whether there is an incoming message (not in greetings).
    @ivar tick: whether the template belongs to a ticker.
    """

    groups: Collection[str] | None = None
    json: bool = False
    message: bool = True
    tick: bool = False
    #: The path placeholders the handshake may fill ([handshake] paths and
    #: the rule's when.path).
    path_names: Collection[str] = ()

    def check(self, name: str) -> None:
        if name in _SIMPLE:
            if name in ("message", "counter") and not self.message:
                raise TemplateError(f"{{{name}}} is not available in a greeting")
            return
        if name == "tick":
            if not self.tick:
                raise TemplateError("{tick} is only available in a ticker's message")
            return
        kind, _, rest = name.partition(".")
        if kind == "match":
            if self.groups is None:
                raise TemplateError(f"{{{name}}} needs a rule that matches a regex")
            if rest not in self.groups:
                known = ", ".join(sorted(self.groups, key=lambda g: (not g.isdigit(), g)))
                raise TemplateError(f"{{{name}}}: the regex has no group {rest!r} (it has {known})")
            return
        if kind == "path":
            if rest not in self.path_names:
                known = ", ".join(sorted(self.path_names)) or "none"
                raise TemplateError(
                    f"{{{name}}}: no path pattern names {{{rest}}} (give one in [handshake] "
                    f"paths or the rule's when.path, e.g. \"/rooms/{{{rest}}}\"; named: "
                    f"{known})")
            return
        if kind in ("query", "headers"):
            if not _NAME.fullmatch(rest):
                raise TemplateError(f"{{{name}}}: expected {{{kind}.NAME}}, e.g. "
                                    + ("{query.token}" if kind == "query" else
                                       "{headers.x-user}"))
            return
        if kind == "json":
            if not self.json:
                raise TemplateError(f"{{{name}}} needs a rule that matches JSON")
            try:
                parse_json_path(rest)
            except ValueError as e:
                raise TemplateError(str(e)) from None
            return
        hint = did_you_mean(name, (*_SIMPLE, "tick"), "{{{}}}")
        raise TemplateError(
            f"unknown placeholder {{{name}}}{hint}; expected one of {{message}}, {{session}}, "
            "{route}, {counter}, {time}, {timestamp}, {match.N}, {match.NAME}, {json.PATH}, "
            "{tick}, {path}, {path.NAME}, {query.NAME}, {headers.NAME}, {subprotocol}"
        )


_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


@dataclass(frozen=True)
class Template:
    """
    A compiled template: literal text and placeholder names, alternating.
    """

    source: str
    parts: tuple[tuple[bool, str], ...]  # (is_placeholder, text or name)

    @classmethod
    def compile(cls, source: str, scope: Scope) -> Template:
        """
        @raise TemplateError: on a lone brace or a placeholder C{scope} refuses.
        """
        parts: list[tuple[bool, str]] = []
        literal = []
        position = 0
        for match in _TOKEN.finditer(source):
            literal.append(source[position:match.start()])
            position = match.end()
            token = match.group(0)
            if token == "{{":
                literal.append("{")
            elif token == "}}":
                literal.append("}")
            elif match.group(1) is None:
                raise TemplateError(
                    f"lone {token!r} at character {match.start() + 1}; write {token * 2} for a "
                    "literal brace"
                )
            else:
                name = match.group(1).strip()
                scope.check(name)
                if literal:
                    parts.append((False, "".join(literal)))
                    literal = []
                parts.append((True, name))
        literal.append(source[position:])
        text = "".join(literal)
        if text:
            parts.append((False, text))
        return cls(source=source, parts=tuple(parts))

    @property
    def names(self) -> frozenset[str]:
        return frozenset(text for is_name, text in self.parts if is_name)

    def render(self, lookup: Callable[[str], str]) -> str:
        """
        @param lookup: returns a placeholder's value as text.
        """
        return "".join(lookup(text) if is_name else text for is_name, text in self.parts)
