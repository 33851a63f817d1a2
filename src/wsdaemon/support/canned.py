"""
Canned replies: the answers a team gives every day, typed as C{/shortcut}.

The file (the C{[operator]} section names it) holds one reply per entry::

    # comments and blank lines are skipped
    /hello Hello {name}, this is {operator}. How can I help?
    /refund Refunds take 5 working days.
      Indented lines continue the reply on a new line.

A shortcut is letters, digits, C{_} or C{-} (at most L{MAX_SHORTCUT});
placeholders are C{{name}} (the visitor's proven name, else its alias),
C{{alias}}, C{{email}} (its proven email, else the contact it left, else
empty), C{{operator}}
(the operator's display name); C{{{}} and C{}}} are braces. Every mistake
is refused when the file is read, naming the file, the line and what was
expected; the file is bounded (L{MAX_REPLIES}, L{MAX_TEXT}).
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MAX_REPLIES", "MAX_SHORTCUT", "MAX_TEXT", "PLACEHOLDERS", "CannedError",
           "CannedReplies", "CannedReply", "expand", "parse_canned", "read_canned"]

#: Replies one file may hold.
MAX_REPLIES = 500
#: Characters of one reply's text.
MAX_TEXT = 4000
#: Characters of one shortcut.
MAX_SHORTCUT = 32
#: What a reply may say in braces, and what each stands for.
PLACEHOLDERS = {
    "name": "the visitor's proven name (its alias when it has none)",
    "alias": "the visitor's alias (Visitor 4821)",
    "email": "the visitor's proven email, else the address it left (empty when none)",
    "operator": "your display name",
}

_SHORTCUT = re.compile(r"[A-Za-z0-9_\-]+")


class CannedError(ValueError):
    """A canned replies file is wrong: the message names file, line and what was expected."""


@dataclass(frozen=True)
class CannedReply:
    shortcut: str
    text: str

    def to_json(self) -> dict[str, str]:
        return {"shortcut": self.shortcut, "text": self.text}


@dataclass(frozen=True)
class CannedReplies:
    """The replies of one file, by shortcut (lower case), in the file's order."""

    replies: tuple[CannedReply, ...] = ()

    def get(self, shortcut: str) -> CannedReply | None:
        wanted = shortcut.lstrip("/").lower()
        for reply in self.replies:
            if reply.shortcut == wanted:
                return reply
        return None

    def __len__(self) -> int:
        return len(self.replies)


def _check_placeholders(text: str, where: str) -> None:
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as e:
        raise CannedError(f"{where}: {e} (write {{{{ and }}}} for braces)") from None
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in PLACEHOLDERS:
            known = ", ".join("{" + name + "}" for name in PLACEHOLDERS)
            raise CannedError(f"{where}: unknown placeholder {{{field}}}; expected one of "
                              f"{known} (write {{{{ and }}}} for braces)")
        if spec or conversion:
            raise CannedError(f"{where}: placeholder {{{field}}} takes no format or "
                              "conversion")


def parse_canned(lines: Iterable[str], source: str = "<canned>") -> CannedReplies:
    """
    @param source: the file's name, for errors.
    @raise CannedError: naming C{source}, the line and what was expected.
    """
    replies: list[CannedReply] = []
    seen: dict[str, int] = {}
    current: tuple[str, list[str], int] | None = None

    def finish() -> None:
        if current is None:
            return
        shortcut, parts, number = current
        text = "\n".join(parts).strip()
        where = f"{source}, line {number}"
        if not text:
            raise CannedError(f"{where}: /{shortcut} has no text; expected "
                              "'/shortcut the reply's text'")
        if len(text) > MAX_TEXT:
            raise CannedError(f"{where}: /{shortcut} is {len(text)} characters long; at most "
                              f"{MAX_TEXT}")
        _check_placeholders(text, where)
        replies.append(CannedReply(shortcut, text))

    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        where = f"{source}, line {number}"
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace():
            if current is None:
                raise CannedError(f"{where}: an indented line continues a reply, but no "
                                  "'/shortcut' line came before it")
            current[1].append(line.strip())
            continue
        finish()
        current = None
        head, _, text = line.partition(" ")
        shortcut = head[1:]
        if not head.startswith("/") or not _SHORTCUT.fullmatch(shortcut) \
                or len(shortcut) > MAX_SHORTCUT:
            raise CannedError(f"{where}: expected '/shortcut text' with a shortcut of "
                              f"letters, digits, '_' or '-' (at most {MAX_SHORTCUT}), got "
                              f"{head[:MAX_SHORTCUT + 2]!r}")
        key = shortcut.lower()
        if key in seen:
            raise CannedError(f"{where}: /{key} is already defined on line {seen[key]}")
        if len(seen) >= MAX_REPLIES:
            raise CannedError(f"{where}: more than {MAX_REPLIES} replies")
        seen[key] = number
        current = (key, [text], number)
    finish()
    return CannedReplies(tuple(replies))


def read_canned(path: Path) -> CannedReplies:
    """
    @raise CannedError: the file cannot be read (naming it), or is wrong.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CannedError(f"{path}: cannot read the canned replies: {e}") from None
    return parse_canned(text.splitlines(), str(path))


def expand(text: str, values: Mapping[str, str | None]) -> str:
    """
    A reply's text with its placeholders filled: C{name} falls back to
    C{alias}; a missing value is empty.
    """
    filled = {key: values.get(key) or "" for key in PLACEHOLDERS}
    if not filled["name"]:
        filled["name"] = filled["alias"]
    return text.format_map(filled)
