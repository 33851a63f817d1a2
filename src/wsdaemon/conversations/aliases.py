"""
Readable names for anonymous visitors, and finding a conversation from
what an operator types.

An operator cannot read, let alone type, C{vERPpB29T7nb6Zil-qSbTA.IPzY...}:
each visitor gets an alias, C{Visitor 4821}, derived from its public id
alone (a hash), so every daemon and every restart shows the same one with
nothing stored or coordinated. Four digits are for reading, not for
identity: at thousands of conversations some aliases repeat, which is why
every command also takes the conversation's id or a prefix of it, and an
ambiguous reference is refused with the candidates (a few, bounded) rather
than guessed.

L{ConversationIndex} answers "which conversation is C{7hq}, C{4821},
C{visitor 48}?" without scanning: the ids sorted (a prefix is one binary
search and a short walk), the aliases in a dict (an alias prefix of 4
digits is at most 10,000 lookups, stopped at the first few matches). It
holds what its owner tells it (the live conversations, and those seen
since), bounded by C{max_entries}; the oldest told is forgotten first
unless its owner says it must stay (C{keep}).

Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, insort
from collections import OrderedDict
from collections.abc import Callable, Iterable

__all__ = ["ALIAS_DIGITS", "DEFAULT_MAX_CANDIDATES", "DEFAULT_MAX_ENTRIES",
           "AmbiguousReference", "ConversationIndex", "UnknownReference", "alias_for"]

#: Digits of an alias's number ("Visitor 4821").
ALIAS_DIGITS = 4
_ALIASES = 10 ** ALIAS_DIGITS
_PREFIX = "visitor"

#: Candidates an ambiguous reference is refused with, at most.
DEFAULT_MAX_CANDIDATES = 10
#: Conversations an index holds: twice the default cap on open ones
#: (C{max_open_total}), so that every live one fits with room for the
#: recently resolved.
DEFAULT_MAX_ENTRIES = 200_000


def alias_for(visitor: str) -> str:
    """
    @return: the visitor's alias, C{Visitor NNNN}: the same for the same
        public id everywhere, for good.
    """
    digest = hashlib.sha256(b"wsdaemon alias\0" + visitor.encode("utf-8")).digest()
    number = int.from_bytes(digest[:8], "big") % _ALIASES
    return f"Visitor {number:0{ALIAS_DIGITS}d}"


def _alias_number(alias: str) -> str:
    return alias.rpartition(" ")[2]


class UnknownReference(LookupError):  # noqa: N818 - says what happened
    """Nothing the index holds matches what the operator typed."""

    def __init__(self, reference: str) -> None:
        super().__init__(f"no conversation matches {reference!r} (give its id, its alias "
                         "or a prefix of either)")
        self.reference = reference


class AmbiguousReference(LookupError):  # noqa: N818 - says what happened
    """
    More than one conversation matches.

    @ivar candidates: (conversation id, alias) of some of them, at most the
        index's C{max_candidates}.
    @ivar more: whether others match too.
    """

    def __init__(self, reference: str, candidates: list[tuple[str, str]], more: bool) -> None:
        shown = ", ".join(f"{alias} ({conversation_id})" for conversation_id, alias in candidates)
        tail = ", ..." if more else ""
        super().__init__(f"{reference!r} matches more than one conversation: {shown}{tail}; "
                         "give more of the id")
        self.reference = reference
        self.candidates = candidates
        self.more = more


class ConversationIndex:
    """
    Conversation ids and their visitors' aliases, for resolving what an
    operator types (L{resolve}).

    @param max_entries: conversations held at most; past it the oldest
        told (L{add}) is forgotten, unless C{keep} says it must stay.
    @param max_candidates: how many candidates an ambiguous reference is
        refused with.
    @param keep: whether a conversation must stay (its owner's live ones).
    """

    def __init__(self, *, max_entries: int = DEFAULT_MAX_ENTRIES,
                 max_candidates: int = DEFAULT_MAX_CANDIDATES,
                 keep: Callable[[str], bool] = lambda conversation_id: False) -> None:
        if max_entries < 1 or max_candidates < 1:
            raise ValueError("max_entries and max_candidates must be at least 1")
        self.max_entries = max_entries
        self.max_candidates = max_candidates
        self._keep = keep
        self._ids: list[str] = []
        self._aliases: dict[str, str] = {}
        self._by_number: dict[str, list[str]] = {}
        self._age: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._aliases)

    def __contains__(self, conversation_id: object) -> bool:
        return conversation_id in self._aliases

    def alias(self, conversation_id: str) -> str | None:
        return self._aliases.get(conversation_id)

    def add(self, conversation_id: str, visitor: str) -> str:
        """
        Hold a conversation (or mark it recent again).

        @return: its visitor's alias.
        """
        known = self._aliases.get(conversation_id)
        if known is not None:
            self._age.move_to_end(conversation_id)
            return known
        alias = alias_for(visitor)
        self._aliases[conversation_id] = alias
        self._by_number.setdefault(_alias_number(alias), []).append(conversation_id)
        insort(self._ids, conversation_id)
        self._age[conversation_id] = None
        self._trim()
        return alias

    def add_many(self, pairs: Iterable[tuple[str, str]]) -> None:
        """
        Hold many conversations at once, (conversation id, visitor) each:
        sorted once, not one insertion at a time (100,000 at start).
        """
        fresh = []
        for conversation_id, visitor in pairs:
            if conversation_id in self._aliases:
                self._age.move_to_end(conversation_id)
                continue
            alias = alias_for(visitor)
            self._aliases[conversation_id] = alias
            self._by_number.setdefault(_alias_number(alias), []).append(conversation_id)
            self._age[conversation_id] = None
            fresh.append(conversation_id)
        if fresh:
            self._ids.extend(fresh)
            self._ids.sort()
            self._trim()

    def remove(self, conversation_id: str) -> None:
        alias = self._aliases.pop(conversation_id, None)
        if alias is None:
            return
        del self._age[conversation_id]
        number = _alias_number(alias)
        same = self._by_number[number]
        same.remove(conversation_id)
        if not same:
            del self._by_number[number]
        at = bisect_left(self._ids, conversation_id)
        del self._ids[at]

    def _trim(self) -> None:
        # Each kept one moves to the end: at most one pass over the entries.
        for _ in range(len(self._age)):
            if len(self._aliases) <= self.max_entries:
                return
            oldest = next(iter(self._age))
            if self._keep(oldest):
                self._age.move_to_end(oldest)
            else:
                self.remove(oldest)

    def resolve(self, reference: str) -> str:
        """
        The conversation an operator means: a whole id, a whole alias
        (C{Visitor 4821} or C{4821}, any case), or a prefix of either (an
        alias's number, C{48} or C{visitor 48}). A whole id wins over
        anything else, then a whole alias that is one conversation's; a
        prefix must match exactly one.

        @raise UnknownReference: nothing matches.
        @raise AmbiguousReference: more than one does.
        """
        query = reference.strip().lower().lstrip("#")
        if not query:
            raise UnknownReference(reference)
        if query in self._aliases:
            return query
        named = query.startswith(_PREFIX)
        number = query[len(_PREFIX):].strip() if named else query
        limit = self.max_candidates + 1
        found: dict[str, None] = {}
        if (named or number) and number.isascii() and (number.isdigit() or not number) \
                and len(number) <= ALIAS_DIGITS:
            exact = self._by_number.get(number) if len(number) == ALIAS_DIGITS else None
            if exact is not None and len(exact) == 1:
                return exact[0]
            for conversation_id in self._alias_matches(number, limit):
                found[conversation_id] = None
        if not named:
            for conversation_id in self._id_matches(query, limit):
                found[conversation_id] = None
        if not found:
            raise UnknownReference(reference)
        if len(found) == 1:
            return next(iter(found))
        matches = sorted(found)
        shown = [(key, self._aliases[key]) for key in matches[:self.max_candidates]]
        raise AmbiguousReference(reference, shown, len(matches) > self.max_candidates)

    def _id_matches(self, prefix: str, limit: int) -> list[str]:
        found: list[str] = []
        at = bisect_left(self._ids, prefix)
        while at < len(self._ids) and len(found) < limit and self._ids[at].startswith(prefix):
            found.append(self._ids[at])
            at += 1
        return found

    def _alias_matches(self, prefix: str, limit: int) -> list[str]:
        found: list[str] = []
        span = 10 ** (ALIAS_DIGITS - len(prefix))
        start = int(prefix or "0") * span
        for number in range(start, start + span):
            for conversation_id in self._by_number.get(f"{number:0{ALIAS_DIGITS}d}", ()):
                found.append(conversation_id)
                if len(found) >= limit:
                    return found
        return found
