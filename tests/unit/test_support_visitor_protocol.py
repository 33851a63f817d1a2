"""
The C{wsdaemon.chat.v1} codec: every request read strictly (types, sizes,
fields), every malformed frame a L{BadRequest} and never an exception,
names the client got wrong quoted short; pages bounded by count and bytes,
at their bounds.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsdaemon.conversations import Author, Message, Profile
from wsdaemon.support.visitor_protocol import (
    MAX_EMAIL_CHARS,
    MAX_ID_CHARS,
    MAX_SEQ,
    MAX_TEXT_BYTES,
    PAGE_BYTES,
    PAGE_MESSAGES,
    BadRequest,
    Contact,
    Hello,
    History,
    Identification,
    Read,
    Received,
    SendMessage,
    Typing,
    ack_frame,
    dumps,
    error_frame,
    history_frame,
    message_frame,
    page,
    parse,
)


def read(frame: object) -> object:
    return parse(json.dumps(frame))


def test_requests() -> None:
    """Each request type is read into its value, optional fields defaulted."""
    assert read({"type": "hello"}) == Hello(0)
    assert read({"type": "hello", "after": 41}) == Hello(41)
    assert read({"type": "message", "id": "c-7f3", "text": "Hi"}) == SendMessage("c-7f3", "Hi")
    assert read({"type": "received", "upto": 43}) == Received(43)
    assert read({"type": "read", "upto": 0}) == Read(0)
    assert read({"type": "typing", "on": False}) == Typing(False)
    assert read({"type": "contact", "email": "ann@example.com"}) == Contact("ann@example.com")
    assert read({"type": "history", "after": 5}) == History(5, None, PAGE_MESSAGES)
    assert read({"type": "history", "before": 9, "limit": 3}) == History(None, 9, 3)


@pytest.mark.parametrize(("frame", "error"), [
    ("{", "expected one JSON object per frame"),
    ("[]", "expected one JSON object per frame"),
    ('"hello"', "expected one JSON object per frame"),
    ("{}", "no type; expected one of"),
    ('{"type": 7}', "unknown type \"int\""),
    ('{"type": "dance"}', "unknown type \"dance\"; expected one of contact, hello, history"),
])
def test_malformed_frames(frame: str, error: str) -> None:
    """A frame that is not one object with a known type is a bad request saying what it expected."""
    bad = parse(frame)
    assert isinstance(bad, BadRequest)
    assert bad.error.startswith(error) or error in bad.error


@pytest.mark.parametrize(("frame", "error"), [
    ({"type": "hello", "after": -1}, "after: expected a whole number from 0"),
    ({"type": "hello", "after": True}, "after: expected a whole number"),
    ({"type": "hello", "after": 1.5}, "after: expected a whole number"),
    ({"type": "hello", "after": MAX_SEQ + 1}, "after: expected a whole number"),
    ({"type": "hello", "colour": 1}, 'unknown field "colour" in hello'),
    ({"type": "message", "text": "x"}, "message needs id"),
    ({"type": "message", "id": "", "text": "x"}, "id: expected 1 to 64"),
    ({"type": "message", "id": "a b", "text": "x"}, "id: expected 1 to 64"),
    ({"type": "message", "id": "c", "text": "  "}, "text: expected a non-empty string"),
    ({"type": "message", "id": "c", "text": 5}, "text: expected a non-empty string"),
    ({"type": "typing", "on": 1}, "on: expected true or false"),
    ({"type": "contact", "email": "x" * (MAX_EMAIL_CHARS + 1)}, "email: expected"),
    ({"type": "history"}, "expected one of after or before"),
    ({"type": "history", "after": 1, "before": 5}, "expected one of after or before"),
    ({"type": "history", "before": 0}, "before: expected a whole number from 1"),
    ({"type": "history", "after": 1, "limit": PAGE_MESSAGES + 1}, "limit: expected"),
    ({"type": "identify", "name": "Ann", "hash": "ab" * 31}, "hash: expected the HMAC-SHA256"),
    ({"type": "identify", "name": "Ann", "hash": "zz" * 32}, "hash: expected the HMAC-SHA256"),
    ({"type": "identify", "hash": "ab" * 32}, "expected at least one of name, email"),
    ({"type": "identify", "name": "x" * 129}, "name: expected a string of 1 to 128"),
    ({"type": "identify", "email": "nope"}, "email: expected an email address"),
    ({"type": "identify", "attributes": {"k": [1]}}, "attributes.k: expected a string"),
    ({"type": "identify", "name": "Ann", "id": "x"}, 'unknown field "id" in identify'),
])
def test_bad_fields(frame: dict[str, object], error: str) -> None:
    """A wrong field names the field and what was expected; the request type is given back."""
    bad = read(frame)
    assert isinstance(bad, BadRequest), bad
    assert error in bad.error
    assert bad.request == frame["type"]


def test_message_bounds() -> None:
    """Texts up to MAX_TEXT_BYTES (UTF-8) and ids up to MAX_ID_CHARS are taken; one more is not."""
    wide = "é" * (MAX_TEXT_BYTES // 2)
    assert read({"type": "message", "id": "i" * MAX_ID_CHARS, "text": wide}) == \
        SendMessage("i" * MAX_ID_CHARS, wide)
    bad = read({"type": "message", "id": "c-1", "text": wide + "x"})
    assert isinstance(bad, BadRequest) and "too long" in bad.error and bad.id == "c-1"
    bad = read({"type": "message", "id": "i" * (MAX_ID_CHARS + 1), "text": "x"})
    assert isinstance(bad, BadRequest) and bad.id is None


def test_lone_surrogate_refused() -> None:
    """A lone surrogate (valid JSON, not Unicode) is refused, never stored."""
    bad = parse('{"type": "message", "id": "c-1", "text": "a\\ud800b"}')
    assert isinstance(bad, BadRequest) and "lone surrogate" in bad.error
    bad = parse('{"type": "contact", "email": "\\udfff@example.com"}')
    assert isinstance(bad, BadRequest)


def test_identify_is_read() -> None:
    """identify gives the checked profile and the hash (lower-cased); the
    hash is optional here (the route refuses an identify without one)."""
    got = read({"type": "identify", "name": " Ann ", "email": "ann@example.com",
                "attributes": {"plan": "pro", "seats": 3, "beta": True}, "hash": "AB" * 32})
    assert got == Identification(
        Profile("Ann", "ann@example.com", (("plan", "pro"), ("seats", "3"), ("beta", "true"))),
        "ab" * 32)
    assert read({"type": "identify", "email": "ann@example.com"}) == Identification(
        Profile(None, "ann@example.com"), None)


def test_hostile_json() -> None:
    """Deep nesting, huge numbers and long names are bad requests, quoted short."""
    assert isinstance(parse("[" * 100_000), BadRequest)
    assert isinstance(parse('{"type": "hello", "after": ' + "9" * 5000 + "}"), BadRequest)
    assert isinstance(parse('{"type": "hello", "after": 1e999}'), BadRequest)
    bad = read({"type": "t" * 10_000})
    assert isinstance(bad, BadRequest) and len(bad.error) < 200


@given(st.text(max_size=200))
def test_any_text_is_a_request_or_bad(payload: str) -> None:
    """Whatever the frame, parsing answers (never raises)."""
    parse(payload)


@given(st.dictionaries(st.sampled_from(["type", "id", "text", "after", "upto", "on", "email",
                                        "before", "limit", "x"]),
                       st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                                 st.text(max_size=20), st.lists(st.integers(), max_size=2),
                                 st.sampled_from(["hello", "message", "history", "typing",
                                                  "read", "received", "contact"]))))
def test_any_object_is_a_request_or_bad(frame: dict[str, object]) -> None:
    """Whatever the object's fields, parsing answers (never raises)."""
    parse(json.dumps(frame))


def message(seq: int, text: str = "hi", author: Author = Author.OPERATOR) -> Message:
    return Message("c", seq, author, text, float(seq), operator="alice",
                   display_name="Alice" if author is Author.OPERATOR else None,
                   client_message_id="c-1" if author is Author.VISITOR else None)


def test_message_frames() -> None:
    """A message carries seq, author, name, text and time; a visitor's its own id too."""
    assert json.loads(message_frame(message(3))) == {
        "type": "message", "seq": 3, "author": "operator", "name": "Alice", "text": "hi",
        "at": 3.0}
    assert json.loads(message_frame(message(4, author=Author.VISITOR)))["id"] == "c-1"
    nameless = Message("c", 5, Author.OPERATOR, "x", 5.0, operator="bob")
    assert json.loads(message_frame(nameless))["name"] == "bob"
    assert json.loads(message_frame(Message("c", 6, Author.SYSTEM, "x", 6.0)))["name"] is None


def test_page_bounds() -> None:
    """A page holds at most PAGE_MESSAGES and PAGE_BYTES; a message over the bytes goes alone."""
    many = [message(seq) for seq in range(1, PAGE_MESSAGES + 2)]
    entries, more = page(many)
    assert [e["seq"] for e in entries] == list(range(1, PAGE_MESSAGES + 1)) and more
    entries, more = page(many[:PAGE_MESSAGES])
    assert len(entries) == PAGE_MESSAGES and not more
    newest, more = page(many, newest=True)
    assert [e["seq"] for e in newest] == list(range(2, PAGE_MESSAGES + 2)) and more
    big = [message(seq, "x" * (PAGE_BYTES // 3)) for seq in range(1, 5)]
    entries, more = page(big)
    assert [e["seq"] for e in entries] == [1, 2] and more
    assert sum(len(dumps(e).encode()) for e in entries) <= PAGE_BYTES
    newest, more = page(big, newest=True)
    assert [e["seq"] for e in newest] == [3, 4] and more
    huge = [message(1, "x" * (PAGE_BYTES + 1)), message(2)]
    entries, more = page(huge)
    assert [e["seq"] for e in entries] == [1] and more
    assert entries[0]["truncated"] is True and entries[0]["length"] == PAGE_BYTES + 1
    assert len(dumps(entries[0]).encode()) <= PAGE_BYTES


def test_page_and_frames_fit_the_connection() -> None:
    """
    With a connection's bound, a page's messages and the page's own fields
    fit it; a message too big alone is cut (at a character boundary, its
    escapes counted) and marked truncated with its whole length.
    """
    rows = [message(seq, "é\n" * 300) for seq in range(1, 30)]
    entries, more = page(rows, max_bytes=4096)
    assert more and entries
    assert len(history_frame(entries, more).encode()) <= 4096
    alone = json.loads(message_frame(message(1, "é\n" * 3000), max_bytes=1000))
    assert alone["truncated"] is True and alone["length"] == 6000
    assert len(message_frame(message(1, "é\n" * 3000), max_bytes=1000).encode()) <= 1000
    assert alone["text"].startswith("é\n")
    assert json.loads(message_frame(message(1, "short"), max_bytes=1000))["text"] == "short"


def test_frames_escape_and_survive_surrogates() -> None:
    """Frames are JSON (control characters escaped); a lone surrogate is escaped, not fatal."""
    frame = error_frame("bad \x1b[31m", "message", "c-1")
    assert "\x1b" not in frame and json.loads(frame)["error"] == "bad \x1b[31m"
    text = message_frame(Message("c", 1, Author.OPERATOR, "a\ud800b", 1.0))
    text.encode("utf-8")
    assert json.loads(ack_frame("c-1", 2, 1.5)) == {"type": "ack", "id": "c-1", "seq": 2,
                                                    "at": 1.5}
