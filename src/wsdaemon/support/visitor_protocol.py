"""
The structured visitor protocol, C{wsdaemon.chat.v1} (docs/conversations.md,
section 7): what a visitor's frame asks for (L{parse}), and the frames the
daemon sends (the C{*_frame} functions, and L{page} for bounded pages of
messages).

Every frame is one JSON object with a C{type}. Parsing is strict (a frame
with an unknown type, a missing or unknown field, a wrong type or a size
past its bound is a L{BadRequest} naming what was expected) and total: no
frame, however malformed, makes it raise. What the client sent is never
echoed raw: names it gave are cut to a few characters and JSON-encoded.

Bounds (each tested at its bound): a frame of at most L{MAX_FRAME_BYTES}
(more: the connection is closed with 1009), a message text of at most
L{MAX_TEXT_BYTES}, an id of at most L{MAX_ID_CHARS}, a page of at most
L{PAGE_MESSAGES} messages and L{PAGE_BYTES} of JSON; nothing sent is
bigger than the connection takes (its route's C{max_message_size}: a page
holds fewer messages, a message too big alone is cut and marked
C{truncated}).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wsdaemon.conversations.model import Author, Message
from wsdaemon.conversations.profile import Profile, ProfileError, checked_profile

__all__ = ["FRAME_OVERHEAD", "MAX_EMAIL_CHARS", "MAX_FRAME_BYTES", "MAX_ID_CHARS", "MAX_SEQ",
           "MAX_TEXT_BYTES", "PAGE_BYTES", "PAGE_MESSAGES", "SUBPROTOCOL", "BadRequest",
           "Contact", "Hello", "History", "Identification", "Read", "Received", "Request",
           "SendMessage", "Typing",
           "ack_frame",
           "availability_frame", "dumps", "error_frame", "history_frame", "message_frame",
           "ok_frame", "page", "parse", "read_frame", "refused_frame", "status_frame",
           "typing_frame", "welcome_frame"]

#: The WebSocket subprotocol a structured client offers.
SUBPROTOCOL = "wsdaemon.chat.v1"
#: The largest frame a visitor may send (UTF-8 bytes); more closes with 1009.
MAX_FRAME_BYTES = 64 * 1024
#: The longest message text (UTF-8 bytes): a longer one is refused.
MAX_TEXT_BYTES = 32 * 1024
#: The longest client message id; ids are visible ASCII (no spaces).
MAX_ID_CHARS = 64
#: The longest email address (RFC 5321's path limit).
MAX_EMAIL_CHARS = 254
#: Sequence numbers and watermarks stay below JSON's exact integers.
MAX_SEQ = 2 ** 53 - 1
#: At most this many messages in one page (welcome, history).
PAGE_MESSAGES = 100
#: At most this many bytes of message JSON in one page (one message bigger
#: than this is sent alone).
PAGE_BYTES = 512 * 1024
#: Bytes a page's own fields take besides its messages, at most.
FRAME_OVERHEAD = 200
#: What is quoted of a field or type name the client got wrong.
_QUOTED = 32


@dataclass(frozen=True)
class Hello:
    """The first frame: the client has every message up to C{after}."""

    after: int = 0


@dataclass(frozen=True)
class SendMessage:
    """The visitor writes C{text}; C{id} is its own, to recognise a resend."""

    id: str
    text: str


@dataclass(frozen=True)
class Received:
    upto: int


@dataclass(frozen=True)
class Read:
    upto: int


@dataclass(frozen=True)
class Typing:
    on: bool


@dataclass(frozen=True)
class Contact:
    email: str


@dataclass(frozen=True)
class History:
    """Messages after C{after}, or (C{before}) the newest before it; at most C{limit}."""

    after: int | None
    before: int | None
    limit: int = PAGE_MESSAGES


@dataclass(frozen=True)
class Identification:
    """
    The visitor says who it is (C{identify}): C{profile}, proven by C{hash},
    the site backend's HMAC-SHA256 of the visitor's id in lower-case hex
    (None: none given, refused by the connection).
    """

    profile: Profile
    hash: str | None


Request = Hello | SendMessage | Received | Read | Typing | Contact | History | Identification


@dataclass(frozen=True)
class BadRequest:
    """
    A frame the daemon cannot take: answered with an C{error} frame.

    @ivar request: the frame's type when it had a known one.
    @ivar id: the client's message id, when one could be read (the client
        then knows which message was not taken).
    """

    error: str
    request: str | None = None
    id: str | None = None


_FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    # type: (required, optional)
    "hello": (frozenset(), frozenset({"after"})),
    "message": (frozenset({"id", "text"}), frozenset()),
    "received": (frozenset({"upto"}), frozenset()),
    "read": (frozenset({"upto"}), frozenset()),
    "typing": (frozenset({"on"}), frozenset()),
    "contact": (frozenset({"email"}), frozenset()),
    "history": (frozenset(), frozenset({"after", "before", "limit"})),
    "identify": (frozenset(), frozenset({"name", "email", "attributes", "hash"})),
}
_TYPES = ", ".join(sorted(_FIELDS))
#: An HMAC-SHA256 in hex.
_HASH_CHARS = 64
_HEX = frozenset("0123456789abcdefABCDEF")


def _quote(name: object) -> str:
    text = name if isinstance(name, str) else type(name).__name__
    return json.dumps(text[:_QUOTED] + ("..." if len(text) > _QUOTED else ""))


class _FieldError(Exception):
    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def _count(frame: dict[str, Any], key: str, *, least: int = 0, most: int = MAX_SEQ) -> int:
    value = frame[key]
    if type(value) is not int or not least <= value <= most:
        raise _FieldError(f"{key}: expected a whole number from {least} to {most}")
    return value


def _unicode(value: str, key: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _FieldError(f"{key}: not valid Unicode (a lone surrogate)") from None
    return value


def _client_id(frame: dict[str, Any]) -> str | None:
    """The frame's message id when it is a usable one (for the error too)."""
    value = frame.get("id")
    if isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS and \
            all("\x21" <= c <= "\x7e" for c in value):
        return value
    return None


def _request(kind: str, frame: dict[str, Any]) -> Request | BadRequest:
    if kind == "hello":
        return Hello(_count(frame, "after") if "after" in frame else 0)
    if kind == "message":
        client_id = _client_id(frame)
        if client_id is None:
            raise _FieldError(f"id: expected 1 to {MAX_ID_CHARS} visible ASCII characters")
        text = frame["text"]
        if not isinstance(text, str) or not text.strip():
            raise _FieldError("text: expected a non-empty string")
        if len(_unicode(text, "text").encode("utf-8")) > MAX_TEXT_BYTES:
            raise _FieldError(f"text: too long (at most {MAX_TEXT_BYTES} bytes)")
        return SendMessage(client_id, text)
    if kind in ("received", "read"):
        upto = _count(frame, "upto")
        return Received(upto) if kind == "received" else Read(upto)
    if kind == "typing":
        if type(frame["on"]) is not bool:
            raise _FieldError("on: expected true or false")
        return Typing(frame["on"])
    if kind == "contact":
        email = frame["email"]
        if not isinstance(email, str) or not 0 < len(email) <= MAX_EMAIL_CHARS:
            raise _FieldError(f"email: expected an email address of at most {MAX_EMAIL_CHARS} "
                         "characters")
        return Contact(_unicode(email, "email"))
    if kind == "history":
        after = _count(frame, "after") if "after" in frame else None
        before = _count(frame, "before", least=1) if "before" in frame else None
        if (after is None) == (before is None):
            raise _FieldError("expected one of after or before")
        limit = _count(frame, "limit", least=1, most=PAGE_MESSAGES) \
            if "limit" in frame else PAGE_MESSAGES
        return History(after, before, limit)
    return _identification(frame)


def _identification(frame: dict[str, Any]) -> Identification:
    digest = frame.get("hash")
    if digest is not None and (not isinstance(digest, str) or len(digest) != _HASH_CHARS
                               or not _HEX.issuperset(digest)):
        raise _FieldError(f"hash: expected the HMAC-SHA256 of your visitor id in hex "
                          f"({_HASH_CHARS} characters)")
    try:
        profile = checked_profile(frame.get("name"), frame.get("email"),
                                  frame.get("attributes"))
    except ProfileError as wrong:
        raise _FieldError(str(wrong)) from None
    if profile.empty:
        raise _FieldError("expected at least one of name, email or attributes")
    return Identification(profile, None if digest is None else digest.lower())


def parse(payload: str) -> Request | BadRequest:
    """
    Read one text frame.

    @return: the request, or a L{BadRequest} saying what was wrong; never
        raises.
    """
    try:
        frame = json.loads(payload)
    except (ValueError, RecursionError):
        return BadRequest("expected one JSON object per frame")
    if not isinstance(frame, dict):
        return BadRequest("expected one JSON object per frame")
    kind = frame.get("type")
    if not isinstance(kind, str) or kind not in _FIELDS:
        got = "no type" if kind is None else f"unknown type {_quote(kind)}"
        return BadRequest(f"{got}; expected one of {_TYPES}")
    required, optional = _FIELDS[kind]
    client_id = _client_id(frame) if kind == "message" else None
    for key in frame:
        if key != "type" and key not in required and key not in optional:
            return BadRequest(f"unknown field {_quote(key)} in {kind}", kind, client_id)
    missing = sorted(required - frame.keys())
    if missing:
        return BadRequest(f"{kind} needs {', '.join(missing)}", kind, client_id)
    try:
        return _request(kind, frame)
    except _FieldError as wrong:
        return BadRequest(wrong.error, kind, client_id)


# -- what the daemon sends -------------------------------------------------


def dumps(frame: dict[str, Any]) -> str:
    """One frame as compact JSON (a lone surrogate from anywhere is escaped, not fatal)."""
    text = json.dumps(frame, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(frame, separators=(",", ":"))
    return text


def _message(message: Message) -> dict[str, Any]:
    name = message.display_name
    if name is None and message.author is Author.OPERATOR:
        name = message.operator
    entry: dict[str, Any] = {"type": "message", "seq": message.seq,
                             "author": str(message.author), "name": name,
                             "text": message.body, "at": message.at}
    if message.author is Author.VISITOR and message.client_message_id is not None:
        entry["id"] = message.client_message_id
    return entry


def _fit(entry: dict[str, Any], max_bytes: int) -> tuple[dict[str, Any], int]:
    """
    The entry as it fits in C{max_bytes} of JSON (0: no bound): whole, or
    with its text cut, marked C{truncated} with the whole text's C{length}
    in characters (a message bigger than the connection takes: the route's
    C{max_message_size} holds for what it sends too).

    @return: the entry and its size in bytes.
    """
    size = len(dumps(entry).encode("utf-8"))
    if not max_bytes or size <= max_bytes:
        return entry, size
    text: str = entry["text"]
    cut = {**entry, "text": "", "truncated": True, "length": len(text)}
    room = max_bytes - len(dumps(cut).encode("utf-8"))
    while room > 0:
        kept = text.encode("utf-8")[:room].decode("utf-8", "ignore")
        cut["text"] = kept
        size = len(dumps(cut).encode("utf-8"))
        if size <= max_bytes:
            return cut, size
        room -= size - max_bytes  # escapes took more than the raw bytes
    cut["text"] = ""
    return cut, len(dumps(cut).encode("utf-8"))


def message_frame(message: Message, max_bytes: int = 0) -> str:
    """
    A message of the thread; a visitor's own carries its C{id} (so a tab
    that sent it, or resumes, recognises it). Cut to C{max_bytes} (0: whole).
    """
    entry, _ = _fit(_message(message), max_bytes)
    return dumps(entry)


def page(messages: Sequence[Message], *, newest: bool = False,
         limit: int = PAGE_MESSAGES, max_bytes: int = 0) -> tuple[list[dict[str, Any]], bool]:
    """
    The messages that fit one page: at most C{limit}, and at most
    L{PAGE_BYTES} of JSON or, smaller, what the connection takes
    (C{max_bytes}, its route's C{max_message_size}, less the page's own
    fields; a message bigger than that is cut), oldest first; from the
    oldest (C{newest} False: what follows is asked for next) or the newest
    (scrolling back).

    @return: the entries and whether some were left out.
    """
    budget = PAGE_BYTES if not max_bytes else max(1, min(PAGE_BYTES,
                                                         max_bytes - FRAME_OVERHEAD))
    ordered = list(reversed(messages)) if newest else list(messages)
    taken: list[dict[str, Any]] = []
    size = 0
    for message in ordered[:limit]:
        entry, cost = _fit(_message(message), budget)
        cost += 1
        if taken and size + cost > budget:
            break
        taken.append(entry)
        size += cost
    more = len(taken) < len(ordered)
    return (list(reversed(taken)) if newest else taken), more


def welcome_frame(status: str | None, available: bool, messages: list[dict[str, Any]],
                  more: bool, visitor: str | None = None, *,
                  reply_within: float | None = None, read_upto: int = 0,
                  typing: list[str] | None = None, email_known: bool = False) -> str:
    """
    @param visitor: the visitor's public id (what the site's backend signs
        for C{identify}).
    @param email_known: an email address of the visitor is known (a token's
        claim, an earlier C{identify}, or one it left): the widget asks for none.
    @param reply_within: the route's median first response of the last
        day, in seconds (None: none known).
    @param read_upto: how far operators have read the thread (its seq).
    @param typing: the names of the operators typing now.
    """
    frame: dict[str, Any] = {"type": "welcome", "visitor": visitor, "status": status,
                             "operators_available": available, "reply_within": reply_within,
                             "read_upto": read_upto, "typing": typing or [],
                             "messages": messages, "more": more}
    if email_known:
        frame["email_known"] = True  # (absent: none known)
    return dumps(frame)


def history_frame(messages: list[dict[str, Any]], more: bool) -> str:
    return dumps({"type": "history", "messages": messages, "more": more})


def ack_frame(client_id: str | None, seq: int, at: float | None,
              duplicate: bool = False) -> str:
    frame: dict[str, Any] = {"type": "ack", "id": client_id, "seq": seq, "at": at}
    if duplicate:
        frame["duplicate"] = True
    return dumps(frame)


def refused_frame(client_id: str | None, reason: str, text: str) -> str:
    return dumps({"type": "refused", "id": client_id, "reason": reason, "text": text})


def error_frame(error: str, request: str | None = None, client_id: str | None = None) -> str:
    frame: dict[str, Any] = {"type": "error", "error": error}
    if request is not None:
        frame["request"] = request
    if client_id is not None:
        frame["id"] = client_id
    return dumps(frame)


def ok_frame(request: str) -> str:
    return dumps({"type": "ok", "request": request})


def typing_frame(on: bool, name: str | None) -> str:
    return dumps({"type": "typing", "on": on, "name": name})


def read_frame(upto: int) -> str:
    return dumps({"type": "read", "upto": upto})


def status_frame(status: str | None) -> str:
    return dumps({"type": "status", "status": status})


def availability_frame(available: bool, reply_within: float | None = None) -> str:
    return dumps({"type": "availability", "available": available,
                  "reply_within": reply_within})
