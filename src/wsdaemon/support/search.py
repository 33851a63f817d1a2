"""
Search over conversations, for operator protocol v2's C{search} request:
what a search asks (L{SearchQuery}, checked from the request), what it
finds (L{SearchResult}: conversations, most recent activity first, each
with its hits: the matching message's C{seq}, note's C{note} or the
visitor's details, and a short plain-text snippet around the match), and
the two ways of finding it:

- SQLite (L{wsdaemon.support.search_index}): an FTS5 index over every
  conversation's messages (both ways; bot replies too, not the daemon's own
  notices), notes and the visitor's details (alias, name, email, contact,
  labels), resolved ones included, written in the commit that stores them;
- a store without an index (Redis): L{live_search}, over the conversations
  the daemon holds in memory (open and snoozed), their details and the
  latest message their lists show only (C{scope: "live"} in the answer says so).

Snippets are plain text, as stored: the client escapes them where it shows
them (the console with L{wsdaemon.escaping.visible}, the inbox as text
nodes). C{marks} are the matched spans, as [start, end) offsets into it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from wsdaemon.conversations.aliases import alias_for
from wsdaemon.conversations.model import Conversation, Status

__all__ = ["CUT", "HITS_PER_CONVERSATION", "MARK_END", "MARK_START", "MAX_LIMIT", "MAX_QUERY_CHARS",
           "MAX_TERMS", "Found", "Hit", "SearchQuery", "SearchResult", "about_text",
           "fts_expression", "indexed", "live_search", "marked", "search_terms"]

#: Characters of a search's text, at most.
MAX_QUERY_CHARS = 200
#: Words of a search's text, at most (each must be found).
MAX_TERMS = 16
#: Conversations one answer holds, at most (and by default).
MAX_LIMIT = 50
#: Hits shown per conversation, at most (its newest).
HITS_PER_CONVERSATION = 3
#: What marks a match in an FTS5 snippet before it is made plain text:
#: characters a stored text cannot hold in the index (L{indexed}).
MARK_START, MARK_END = "\x02", "\x03"
_UNMARK = str.maketrans({MARK_START: " ", MARK_END: " "})
#: Scripts written without spaces between words (Han ideographs, kana):
#: each such character is a word of the index, cut from its neighbours by
#: a zero-width space (a separator to FTS5's unicode61, invisible, dropped
#: from snippets), so that a word inside a sentence is found as the
#: phrase of its characters ("退款" in "我要退款").
_UNSPACED = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
                       "\U00020000-\U0003134f]+")
CUT = "\u200b"
#: Characters of a snippet, at most (a text with few spaces makes long
#: FTS5 snippets: it is cut around its first match).
SNIPPET_CHARS = 240
#: Characters of a snippet made without the index (L{live_search}).
_LIVE_SNIPPET = 120


class SearchError(ValueError):
    """A search the channel does not take; the message says what is expected."""


@dataclass(frozen=True)
class SearchQuery:
    """
    @ivar terms: the words looked for, each to be found (a word ending in
        C{*}: any word starting so); none (with a C{status}): every
        conversation in that state, most recent activity first.
    @ivar notes: whether operators' private notes are searched too.
    @ivar after: the C{next} of the previous page: (last activity, id).
    @ivar status: only conversations in this state (C{open}, C{snoozed},
        C{resolved}), or None: any.
    """

    terms: tuple[str, ...]
    notes: bool = False
    limit: int = MAX_LIMIT
    after: tuple[float, str] | None = None
    status: str | None = None

    @classmethod
    def from_request(cls, request: dict[str, Any]) -> SearchQuery:
        """
        @raise SearchError: saying which field is wrong and what it takes.
        """
        text = request.get("text")
        status = request.get("status")
        if status not in (None, "open", "snoozed", "resolved"):
            raise SearchError("'status' must be 'open', 'snoozed' or 'resolved' (or absent)")
        terms: tuple[str, ...] = ()
        if text is None and status is not None:
            pass  # every conversation in that state, most recent first (browsing)
        elif not isinstance(text, str) or not text.strip():
            raise SearchError("'text' must be the words to look for (or absent with a "
                              "'status': every conversation in it, most recent first)")
        elif len(text) > MAX_QUERY_CHARS:
            raise SearchError(f"'text' is {len(text)} characters long; at most "
                              f"{MAX_QUERY_CHARS}")
        else:
            terms = search_terms(text)
            if not terms:
                raise SearchError("'text' has no word to look for (letters or digits)")
        notes = request.get("notes", False)
        if not isinstance(notes, bool):
            raise SearchError("'notes' must be true or false (or absent)")
        limit = request.get("limit", MAX_LIMIT)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
            raise SearchError(f"'limit' must be from 1 to {MAX_LIMIT} (or absent)")
        after = request.get("after")
        if after is not None:
            if not (isinstance(after, list) and len(after) == 2
                    and isinstance(after[0], int | float) and not isinstance(after[0], bool)
                    and math.isfinite(after[0]) and isinstance(after[1], str)):
                raise SearchError("'after' must be the 'next' of the previous page")
            after = (float(after[0]), after[1])
        return cls(terms, notes, limit, after, status)


def search_terms(text: str) -> tuple[str, ...]:
    """The words of a search's text: those with a letter or digit, at most L{MAX_TERMS}."""
    return tuple(word for word in text.split() if any(ch.isalnum() for ch in word))[:MAX_TERMS]


def fts_expression(terms: Iterable[str], notes: bool) -> str:
    """
    An FTS5 query finding every term: each a quoted phrase (the user's text
    is never FTS5 syntax), C{word*} a prefix; notes' column only if asked.
    """
    phrases = []
    for term in terms:
        prefix = term.endswith("*") and sum(ch.isalnum() for ch in term) >= 2
        word = term.rstrip("*") if prefix else term
        phrases.append('"' + _cut(word).replace('"', '""') + '"' + ("*" if prefix else ""))
    expression = " ".join(phrases)
    return expression if notes else "{text} : (" + expression + ")"


def _cut(text: str) -> str:
    """Each character of a script written without spaces made a word of its own."""
    if text.isascii():
        return text
    return _UNSPACED.sub(_cut_run, text)


def _cut_run(run: re.Match[str]) -> str:
    return CUT + CUT.join(run.group()) + CUT


def indexed(text: str) -> str:
    """
    A text as the index keeps it: without the characters that mark matches,
    each character of a script written without spaces a word of its own.
    """
    return _cut(text.translate(_UNMARK))


def about_text(conversation: Conversation, alias: str | None = None) -> str:
    """
    What is searched of who the visitor is: alias (C{alias}, when already
    known), name, email, contact, labels.
    """
    profile = conversation.profile
    parts = [alias or alias_for(conversation.visitor)]
    if profile is not None:
        parts += [value for value in (profile.name, profile.email) if value]
    if conversation.contact:
        parts.append(conversation.contact)
    parts += conversation.labels
    return indexed(" · ".join(parts))


@dataclass(frozen=True)
class Hit:
    """
    One match in a conversation.

    @ivar kind: C{message}, C{note}, C{visitor} (the visitor's details) or
        C{preview} (the latest message shown in lists: L{live_search}).
    @ivar number: the message's seq or the note's id (None for C{visitor}).
    @ivar marks: the matched spans of C{snippet}, [start, end).
    """

    kind: str
    number: int | None
    snippet: str
    marks: tuple[tuple[int, int], ...] = ()

    def to_json(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"kind": self.kind, "snippet": self.snippet,
                                 "marks": [list(mark) for mark in self.marks]}
        if self.kind == "message":
            shown["seq"] = self.number
        elif self.kind == "note":
            shown["note"] = self.number
        return shown


def marked(snippet: str,
           chars: int = SNIPPET_CHARS) -> tuple[str, tuple[tuple[int, int], ...]]:
    """
    An FTS5 snippet made with L{MARK_START}/L{MARK_END}: its plain text and
    marks, at most C{chars} characters of it (around its first mark).
    """
    plain: list[str] = []
    marks: list[tuple[int, int]] = []
    length, start = 0, None
    for ch in snippet:
        if ch == CUT:
            continue
        if ch == MARK_START:
            start = length
        elif ch == MARK_END:
            if start is not None and length > start:
                marks.append((start, length))
            start = None
        else:
            plain.append(ch)
            length += 1
    text = "".join(plain)
    if len(text) <= chars:
        return text, tuple(marks)
    begin = max(0, min(marks[0][0] - chars // 3 if marks else 0, len(text) - chars))
    kept = tuple((max(s, begin) - begin, min(e, begin + chars) - begin) for s, e in marks
                 if e > begin and s < begin + chars)
    return text[begin:begin + chars], kept


@dataclass(frozen=True)
class Found:
    """A conversation that matched, as stored, and its newest hits."""

    conversation: Conversation
    hits: tuple[Hit, ...]


@dataclass(frozen=True)
class SearchResult:
    """
    @ivar found: the page: conversations, most recent activity first.
    @ivar total: conversations matching among what was searched.
    @ivar more: whether another page follows (C{after} the last found).
    @ivar partial: whether the search stopped at its bound (rows or time)
        before it had seen every match: narrower words find the rest.
    @ivar scope: C{all} (every stored conversation) or C{live} (those the
        daemon holds: a store without an index).
    """

    found: tuple[Found, ...]
    total: int
    more: bool
    partial: bool = False
    scope: str = "all"


def newest_first(conversation: Conversation) -> tuple[float, str]:
    return (-conversation.last_activity_at, conversation.conversation_id)


def after_key(after: tuple[float, str] | None) -> tuple[float, str] | None:
    return None if after is None else (-after[0], after[1])


def _live_hit(field: str, words: tuple[str, ...], kind: str,
              number: int | None) -> Hit | None:
    folded = field.casefold()
    spans = []
    for word in words:
        at = folded.find(word)
        if at < 0:
            return None
        spans.append((at, at + len(word)))
    first = min(spans)[0]
    begin = max(0, first - _LIVE_SNIPPET // 3)
    text = field[begin:begin + _LIVE_SNIPPET]
    marks = tuple(sorted((s - begin, min(e - begin, len(text))) for s, e in spans
                         if s >= begin and s - begin < len(text)))
    return Hit(kind, number, text, marks)


def live_search(conversations: Iterable[Conversation], query: SearchQuery,
                alias: Callable[[Conversation], str] | None = None) -> SearchResult:
    """
    A search without an index: the conversations given (those the daemon
    holds), every word in their details or in their latest message (the
    preview), case-insensitive. One pass over them, no I/O; hits and
    snippets are made for the page only.

    @param alias: a conversation's alias, when its owner knows them already.
    """
    words = tuple(term.rstrip("*").casefold() for term in query.terms)

    def about(conversation: Conversation) -> str:
        profile = conversation.profile
        return " · ".join(filter(None, (
            alias(conversation) if alias is not None else alias_for(conversation.visitor),
            profile.name if profile is not None else None,
            profile.email if profile is not None else None,
            conversation.contact, *conversation.labels)))

    def holds(text: str) -> bool:
        folded = text.casefold()
        return all(word in folded for word in words)

    matching = sorted((c for c in conversations if c.status is not Status.RESOLVED
                       and (query.status is None or c.status == query.status)
                       and (holds(c.preview) or holds(about(c)))), key=newest_first)
    start = after_key(query.after)
    rest = [c for c in matching if start is None or newest_first(c) > start]
    found = []
    for conversation in rest[:query.limit]:
        hits = (_live_hit(conversation.preview, words, "preview", None),
                _live_hit(about(conversation), words, "visitor", None))
        found.append(Found(conversation, tuple(hit for hit in hits if hit is not None)))
    return SearchResult(tuple(found), len(matching), len(rest) > query.limit, False, "live")
