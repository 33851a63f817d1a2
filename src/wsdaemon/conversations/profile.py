"""
Who a visitor is, as far as it was proven: a L{Profile} (name, email,
attributes) kept on its conversation and shown to operators.

Two sources (docs/conversations.md, section 7): the claims of the visitor's
verified token on a route with C{identity = jwt} (L{ProfileSource.JWT}),
and the visitor's C{identify} request carrying an HMAC of its id made by
the site's backend (L{ProfileSource.IDENTIFY}). A token is the stronger
proof: what a token gave is never changed by an C{identify}, which only
fills what the token left empty (L{merged}).

Everything here is bounded (L{MAX_NAME_CHARS}, L{MAX_EMAIL_CHARS},
L{MAX_ATTRIBUTES}, L{MAX_ATTRIBUTE_KEY_CHARS}, L{MAX_ATTRIBUTE_VALUE_CHARS},
L{MAX_ATTRIBUTES_CHARS}) so that a profile costs at most a few KiB of
memory per conversation. Texts are kept as given (no control characters
in names, emails and keys; values may hold any text): whoever shows them
escapes them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import Any

__all__ = ["MAX_ATTRIBUTES", "MAX_ATTRIBUTES_CHARS", "MAX_ATTRIBUTE_KEY_CHARS",
           "MAX_ATTRIBUTE_VALUE_CHARS", "MAX_EMAIL_CHARS", "MAX_NAME_CHARS", "Profile",
           "ProfileError", "ProfileSource", "checked_profile", "merged", "profile_from_claims",
           "profile_from_json", "profile_json"]

#: The longest name (characters).
MAX_NAME_CHARS = 128
#: The longest email address (RFC 5321's path limit).
MAX_EMAIL_CHARS = 254
#: Attributes one profile holds at most.
MAX_ATTRIBUTES = 32
#: The longest attribute name: letters, digits, C{_ . -}.
MAX_ATTRIBUTE_KEY_CHARS = 64
#: The longest attribute value (characters).
MAX_ATTRIBUTE_VALUE_CHARS = 512
#: All attribute names and values of one profile together, in characters.
MAX_ATTRIBUTES_CHARS = 4096

_EMAIL = re.compile(r"[^\s@\x00-\x1f\x7f]+@[^\s@\x00-\x1f\x7f]+\.[^\s@\x00-\x1f\x7f]+")
_KEY = re.compile(r"[A-Za-z0-9_.\-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ProfileSource(StrEnum):
    """
    What proved the profile: C{jwt}, the visitor's signed token; C{identify},
    an HMAC of the visitor's id from the site's backend. C{jwt} is stronger.
    """

    IDENTIFY = "identify"
    JWT = "jwt"


_RANK = {ProfileSource.IDENTIFY: 1, ProfileSource.JWT: 2}


class ProfileError(ValueError):
    """A profile past a bound or of the wrong kind; the message says what was expected."""


@dataclass(frozen=True)
class Profile:
    """
    @ivar attributes: (name, value) pairs, names unique, in the order given.
    @ivar source: the strongest proof any of it came with.
    """

    name: str | None = None
    email: str | None = None
    attributes: tuple[tuple[str, str], ...] = ()
    source: ProfileSource = ProfileSource.IDENTIFY

    @property
    def empty(self) -> bool:
        return self.name is None and self.email is None and not self.attributes

    @cached_property
    def stored(self) -> str:
        """
        Its stored form, a JSON object: made once per profile, not at every
        commit of its conversation.
        """
        return json.dumps({"name": self.name, "email": self.email,
                           "attributes": [list(pair) for pair in self.attributes],
                           "source": str(self.source)},
                          separators=(",", ":"), ensure_ascii=False)


def _text(value: str, key: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ProfileError(f"{key}: not valid Unicode (a lone surrogate)") from None
    return value


def _name(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME_CHARS:
        raise ProfileError(f"name: expected a string of 1 to {MAX_NAME_CHARS} characters")
    if _CONTROL.search(value):
        raise ProfileError("name: control characters are not allowed")
    return _text(value.strip(), "name")


def _email(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_EMAIL_CHARS or \
            not _EMAIL.fullmatch(value.strip()):
        raise ProfileError(f"email: expected an email address of at most {MAX_EMAIL_CHARS} "
                           "characters")
    return _text(value.strip(), "email")


def _value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        text = json.dumps(value)
        if text in ("NaN", "Infinity", "-Infinity"):
            raise ProfileError(f"attributes.{key}: expected a finite number")
        return text
    if not isinstance(value, str):
        raise ProfileError(f"attributes.{key}: expected a string, a number or true/false")
    if len(value) > MAX_ATTRIBUTE_VALUE_CHARS:
        raise ProfileError(f"attributes.{key}: at most {MAX_ATTRIBUTE_VALUE_CHARS} characters")
    return _text(value, f"attributes.{key}")


def _attributes(value: Any) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise ProfileError("attributes: expected an object of names and values")
    if len(value) > MAX_ATTRIBUTES:
        raise ProfileError(f"attributes: at most {MAX_ATTRIBUTES}")
    pairs: list[tuple[str, str]] = []
    total = 0
    for key, raw in value.items():
        if not isinstance(key, str) or not 0 < len(key) <= MAX_ATTRIBUTE_KEY_CHARS or \
                not _KEY.fullmatch(key):
            raise ProfileError(f"attributes: names of 1 to {MAX_ATTRIBUTE_KEY_CHARS} letters, "
                               "digits, '_', '.' or '-'")
        text = _value(key, raw)
        total += len(key) + len(text)
        if total > MAX_ATTRIBUTES_CHARS:
            raise ProfileError(f"attributes: at most {MAX_ATTRIBUTES_CHARS} characters of names "
                               "and values together")
        pairs.append((key, text))
    return tuple(pairs)


def checked_profile(name: Any, email: Any, attributes: Any,
                    source: ProfileSource = ProfileSource.IDENTIFY) -> Profile:
    """
    A profile from what the network gave, every field checked.

    @raise ProfileError: a field is of the wrong kind or past its bound.
    """
    return Profile(_name(name), _email(email), _attributes(attributes), source)


def profile_from_claims(claims: Mapping[str, Any], attributes_claim: str | None = None
                        ) -> tuple[Profile | None, tuple[str, ...]]:
    """
    The profile a verified token gives: its C{name} and C{email} claims and,
    when the route names one, the object in C{attributes_claim}. The token
    is trusted, but a claim that is past a bound or of the wrong kind is
    left out (the rest is kept).

    @return: the profile (None: the token named nobody) and what was left
        out, as L{ProfileError} messages.
    """
    problems: list[str] = []
    fields: dict[str, Any] = {}
    for key, check in (("name", _name), ("email", _email)):
        try:
            fields[key] = check(claims.get(key))
        except ProfileError as wrong:
            problems.append(str(wrong))
            fields[key] = None
    attributes: tuple[tuple[str, str], ...] = ()
    if attributes_claim is not None:
        try:
            attributes = _attributes(claims.get(attributes_claim))
        except ProfileError as wrong:
            problems.append(str(wrong))
    profile = Profile(fields["name"], fields["email"], attributes, ProfileSource.JWT)
    return (None if profile.empty else profile), tuple(problems)


def _bounded(pairs: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    kept: list[tuple[str, str]] = []
    seen: set[str] = set()
    total = 0
    for key, value in pairs:
        if key in seen or len(kept) >= MAX_ATTRIBUTES:
            continue
        cost = len(key) + len(value)
        if total + cost > MAX_ATTRIBUTES_CHARS:
            continue
        seen.add(key)
        kept.append((key, value))
        total += cost
    return tuple(kept)


def merged(old: Profile | None, new: Profile) -> Profile:
    """
    What a profile becomes when C{new} arrives: the stronger (or, equally
    strong, the newer) source sets every field it gives, and the weaker
    only fills what is empty. So an C{identify} never changes a name, an
    email or an attribute a token gave; a field left out is kept.
    Attributes stay within their bounds (the stronger source's first).

    @return: C{old} itself when nothing changes.
    """
    if old is None:
        return new
    if old == new:
        return old
    if _RANK[new.source] >= _RANK[old.source]:
        strong, weak = new, old
    else:
        strong, weak = old, new
    profile = Profile(
        strong.name if strong.name is not None else weak.name,
        strong.email if strong.email is not None else weak.email,
        _bounded((*strong.attributes, *weak.attributes)),
        strong.source)
    return old if profile == old else profile


def profile_json(profile: Profile | None) -> str | None:
    """The stored form (a JSON object), or None for no profile."""
    return None if profile is None else profile.stored


def profile_from_json(text: str | None) -> Profile | None:
    """The profile L{profile_json} stored (None: none stored, as in rows older than profiles)."""
    if not text:
        return None
    row = json.loads(text)
    return Profile(row.get("name"), row.get("email"),
                   tuple((str(key), str(value)) for key, value in row.get("attributes", ())),
                   ProfileSource(row.get("source", "identify")))
