"""
Guessing which known name a mistyped one meant, for error messages: a user
who wrote C{max_conections} should read "did you mean max_connections?",
not search a list of twenty keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from difflib import get_close_matches

__all__ = ["did_you_mean"]

#: How alike two names must be (difflib's ratio) to be offered as a guess:
#: difflib's own default, which catches a dropped, doubled, swapped or
#: wrong letter in all but the shortest names and guesses nothing for a
#: name unlike every known one.
CUTOFF = 0.6


def did_you_mean(name: str, known: Iterable[str], form: str = "{}") -> str:
    """
    @param known: the names C{name} was checked against.
    @param form: how a name is written in the message, e.g. C{"[{}]"} for a
        section.
    @return: C{" (did you mean NAME?)"} with the known name closest to
        C{name} (compared without case), or C{""} if none is close.
    """
    by_folded = {candidate.casefold(): candidate for candidate in sorted(set(known))}
    matches = get_close_matches(name.casefold(), list(by_folded), n=1, cutoff=CUTOFF)
    if not matches or by_folded[matches[0]] == name:
        return ""
    return f" (did you mean {form.format(by_folded[matches[0]])}?)"
