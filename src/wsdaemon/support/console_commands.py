"""
The terminal console's command language for conversations, apart from the
console's state: the help text, the times C{snooze} takes, the C{list}
request, the C{search} request.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, tzinfo
from typing import Any

from wsdaemon.escaping import visible

__all__ = ["HELP", "list_request", "parse_when", "search_request"]

HELP = """\
commands (#REF: a conversation's alias, id, or a unique prefix of either,
e.g. #4821 or #td4n; without it, the conversation you opened last):
  list [mine|unassigned|all] [snoozed] [label:NAME] [TEXT]
                           conversations, most waiting first
  search [--notes] [--open|--snoozed|--resolved] TEXT
                           every conversation, resolved ones too, whose messages
                           (notes too with --notes) or visitor's name, email,
                           alias or labels hold every word; most recent first
  more                     the next page of the last list or search
  open #REF                a conversation's thread (marked read)
  older                    older entries of the open thread
  close                    stop viewing the open conversation
  reply [#REF] TEXT        answer the visitor; TEXT may start with /shortcut
  /shortcut [#REF]         send a canned reply ({name}, {operator}... filled in)
  note [#REF] TEXT         a private note, for operators only
  resolve [#REF] | reopen [#REF]
  snooze [#REF] [30m|2h|1d|HH:MM]
                           until then; without a time, until the visitor writes
  assign [#REF] OPERATOR|none | transfer [#REF] OPERATOR
  labels [#REF] +LABEL -LABEL ...
  export FILE [#REF]       the whole thread, messages and notes, as JSON Lines
  canned                   the canned replies
  online | away | offline  your availability      capacity N   open conversations
  team | help | quit

Text from visitors is shown with control characters escaped (\\x1b, \\n, ...)."""

# ASCII digits only: other scripts' digits are refused, as everywhere.
_SPAN = re.compile(r"(\d+)([smhd])", re.ASCII)
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})", re.ASCII)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_when(text: str, now: float, tz: tzinfo | None = None) -> float:
    """
    C{30m}, C{2h}, C{1d}, C{90s} from now, or C{HH:MM} (the next such time
    in the operator's zone).

    @raise ValueError: saying what is expected.
    """
    span = _SPAN.fullmatch(text.strip().lower())
    if span:
        return now + int(span.group(1)) * _UNITS[span.group(2)]
    at = _CLOCK.fullmatch(text.strip())
    if at and int(at.group(1)) < 24 and int(at.group(2)) < 60:
        current = datetime.fromtimestamp(now, tz) if tz else datetime.fromtimestamp(now)
        then = current.replace(hour=int(at.group(1)), minute=int(at.group(2)), second=0,
                               microsecond=0)
        if then.timestamp() <= now:
            then += timedelta(days=1)
        return then.timestamp()
    raise ValueError(f"expected a time like 30m, 2h, 1d or 14:30, got {visible(text)!r}")


def list_request(rest: str) -> dict[str, Any]:
    """The request of C{list [mine|unassigned|all] [snoozed] [label:NAME] [TEXT]}."""
    request: dict[str, Any] = {"type": "conversations"}
    words = rest.split()
    while words:
        word = words[0].lower()
        if word in ("mine", "unassigned", "all"):
            request["view"] = word
        elif word in ("snoozed", "open"):
            request["status"] = word
        elif word.startswith("label:") and len(word) > 6:
            request["label"] = words[0][6:]
        else:
            break
        words.pop(0)
    if words:
        request["search"] = " ".join(words)
    return request


def search_request(rest: str) -> dict[str, Any]:
    """The request of C{search [--notes] [--open|--snoozed|--resolved] TEXT}."""
    request: dict[str, Any] = {"type": "search"}
    words = rest.split()
    while words and words[0].startswith("--"):
        flag = words.pop(0)
        if flag == "--notes":
            request["notes"] = True
        elif flag in ("--open", "--snoozed", "--resolved") and "status" not in request:
            request["status"] = flag[2:]
        else:
            raise ValueError("usage: search [--notes] [--open|--snoozed|--resolved] TEXT")
    if not words:
        raise ValueError("usage: search [--notes] [--open|--snoozed|--resolved] TEXT")
    request["text"] = " ".join(words)
    return request
