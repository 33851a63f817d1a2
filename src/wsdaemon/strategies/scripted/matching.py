"""
Which messages a matcher accepts: exact text, an RE2 regex, a JSON subset,
a JSON document with ignored fields (C{json_like}, its own module), any
binary message, or a binary prefix. Rules files use them to pick a
reply, and the admin API's journal search uses the same ones.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import re2

from wsdaemon.strategies.scripted.json_like import JsonLike, build_json_like, json_like_matches
from wsdaemon.strategies.scripted.nesting import MAX_NESTING, too_deep

__all__ = ["MATCH_KEYS", "NOT_JSON", "NOT_PARSED", "Matcher", "MatcherError", "build_matcher",
           "compile_regex", "json_matches", "match"]

#: The keys that make a matcher; a matcher is exactly one of them.
MATCH_KEYS = ("text", "regex", "json", "binary", "binary_prefix", "json_like")

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # we report the error ourselves

#: A message not parsed as JSON yet / one that is not JSON.
NOT_PARSED = object()
NOT_JSON = object()


class MatcherError(ValueError):
    """
    A matcher is wrong: C{key} names the offending key, C{str()} says why.
    """

    def __init__(self, key: str | None, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


@dataclass(frozen=True)
class Matcher:
    """
    Which messages a rule answers (or a search finds).

    @ivar kind: C{text}, C{regex}, C{json}, C{json_like}, C{binary} or
        C{binary_prefix}.
    """

    kind: str
    text: str | None = None
    #: A compiled RE2 pattern (C{search}, C{groups}, C{groupindex}, like re's).
    regex: Any = None
    json: Mapping[str, Any] | None = None
    prefix: bytes = b""
    like: JsonLike | None = None


def compile_regex(pattern: str) -> Any:
    """
    Compile with RE2: matching takes time linear in the message, so no
    message can stall the daemon (Python's re backtracks: C{'^(\\w+\\s?)*$'}
    on 27 bytes took seconds).

    @raise re2.error: if RE2 cannot run it.
    """
    return re2.compile(pattern, options=_RE2_OPTIONS)


def regex_refusal(pattern: str, error: Exception) -> str:
    """
    Why a regex is refused: not a regex at all, or one only a backtracking
    engine can run.
    """
    reason = error.args[0] if error.args else error
    why = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
    try:
        re.compile(pattern)
    except re.error:
        return f"regex: bad regular expression: {why}"
    return (f"regex: not supported by RE2, the linear-time engine rules run on: {why} "
            "(backreferences and look-arounds cannot run in linear time; see the README)")


def _string(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise MatcherError(key, f"{key}: expected a string, got {value!r}")
    return value


def build_matcher(table: Mapping[str, Any]) -> Matcher:
    """
    @param table: holds exactly one of L{MATCH_KEYS} (other keys are the
        caller's business).
    @raise MatcherError: naming the key and what was expected.
    """
    given = [k for k in MATCH_KEYS if k in table]
    if len(given) != 1:
        raise MatcherError(given[-1] if given else None,
                           f"a rule needs exactly one of {', '.join(MATCH_KEYS)}"
                           + (f"; got {', '.join(given)}" if given else ""))
    kind = given[0]
    value = table[kind]
    if kind == "text":
        return Matcher(kind, text=_string(value, kind))
    if kind == "regex":
        pattern = _string(value, kind)
        try:
            return Matcher(kind, regex=compile_regex(pattern))
        except re2.error as e:
            raise MatcherError(kind, regex_refusal(pattern, e)) from None
    if kind == "json":
        if not isinstance(value, dict) or not value:
            raise MatcherError(kind, "json: expected a table of field = value, e.g. "
                                     "json = { type = \"subscribe\" }")
        if too_deep(value, MAX_NESTING) is not None:
            raise MatcherError(kind, f"json: nested too deeply (more than {MAX_NESTING} "
                                     "levels)")
        return Matcher(kind, json=value)
    if kind == "json_like":
        try:
            return Matcher(kind, like=build_json_like(value))
        except ValueError as e:
            raise MatcherError(kind, f"json_like: {e}") from None
    if kind == "binary":
        if value is not True:
            raise MatcherError(kind, "binary: expected true (any binary message)")
        return Matcher(kind)
    raw = _string(value, kind)
    try:
        prefix = bytes.fromhex(raw)
    except ValueError:
        raise MatcherError(kind, f"binary_prefix: expected hex digits, got {raw!r}") from None
    return Matcher(kind, prefix=prefix)


def json_matches(pattern: Any, value: Any) -> bool:
    """
    Whether C{value} has every field of C{pattern} (recursively) with an
    equal value. Booleans only equal booleans (JSON's true is not 1).
    """
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            key in value and json_matches(expected, value[key])
            for key, expected in pattern.items()
        )
    if isinstance(pattern, bool) or isinstance(value, bool):
        return isinstance(pattern, bool) and isinstance(value, bool) and pattern is value
    return bool(pattern == value)


def match(matcher: Matcher, message: str | bytes, document: Any = NOT_PARSED
          ) -> tuple[bool, Mapping[str, str | None] | None, Any]:
    """
    @param document: C{message} parsed as JSON if already done (else
        L{NOT_PARSED}), so several JSON matchers parse it once.
    @return: whether it matches, the regex's groups (by number and name)
        when it is a regex that matched, and the JSON document (or
        L{NOT_JSON}, or L{NOT_PARSED}) for the next matcher.
    """
    kind = matcher.kind
    if isinstance(message, bytes):
        if kind == "binary":
            return True, None, document
        if kind == "binary_prefix":
            return message.startswith(matcher.prefix), None, document
        return False, None, document
    if kind == "text":
        return message == matcher.text, None, document
    if kind == "regex":
        assert matcher.regex is not None
        found = matcher.regex.search(message)
        if found is None:
            return False, None, document
        groups: dict[str, str | None] = {str(i): found.group(i)
                                         for i in range(matcher.regex.groups + 1)}
        groups.update(found.groupdict())
        return True, groups, document
    if kind in ("json", "json_like"):
        if document is NOT_PARSED:
            try:
                document = json.loads(message)
            except (ValueError, RecursionError):  # nested too deeply to parse
                document = NOT_JSON
        if document is NOT_JSON:
            return False, None, document
        if matcher.like is not None:
            return json_like_matches(matcher.like, document), None, document
        return json_matches(matcher.json, document), None, document
    return False, None, document
