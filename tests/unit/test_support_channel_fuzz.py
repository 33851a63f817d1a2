"""
Operator protocol v2 against anything an operator's client may send: every
message gets exactly one answer, C{ok} or C{error}, never "internal error",
and nothing fails inside the daemon. Plus the answers' bounds: histories
page back, long texts are cut saying so, a list stops at 512 KiB.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.logger import globalLogPublisher

from tests.support_channel_kit import ROUTE, Desk
from wsdaemon.conversations import AddNote, conversation_id_for
from wsdaemon.support.operator_requests import REQUESTS, ChannelLimits
from wsdaemon.support.summaries import PAGE_BYTES, encode

_KEYS = st.sampled_from(["conversation", "text", "operator", "to", "until", "add", "remove",
                         "upto", "on", "availability", "n", "view", "status", "label",
                         "search", "limit", "after", "before", "before_note", "id"])
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30) | st.sampled_from(["ann", "visitor", "4", "alice", "online", "mine"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=6)
_REQUESTS = st.fixed_dictionaries(
    {"type": st.sampled_from([*REQUESTS, "list", "claim", 7])},
    optional={"conversation": st.sampled_from(["ann", "bob-", "zz", ""]) | _VALUES},
).flatmap(lambda base: st.dictionaries(_KEYS, _VALUES, max_size=4).map(
    lambda extra: {**extra, **base}))
_PAYLOADS = st.one_of(
    _REQUESTS.map(lambda r: json.dumps(r).encode("utf-8", "surrogatepass")),
    _VALUES.map(lambda v: json.dumps(v).encode("utf-8", "surrogatepass")),
    st.binary(max_size=64),
    st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n),
)

_DESK = Desk()
_DESK.visitor("ann")
_DESK.visitor("bob")
_CLIENT = _DESK.connect("a" * 20)
_SERVER = next(iter(_DESK.factory.connections))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=_PAYLOADS, binary=st.booleans())
def test_every_request_gets_one_answer_and_nothing_fails(payload: bytes, binary: bool) -> None:
    """Any bytes, any JSON, any request with any field values: exactly one ok or error
    answer, never an internal error, and no failure logged inside the daemon."""
    answers: list[dict[str, Any]] = []
    _SERVER.send_event = lambda event: answers.append(event)  # type: ignore[method-assign]
    failures: list[Any] = []

    def observe(event: dict[str, Any]) -> None:
        if "log_failure" in event:
            failures.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        _SERVER.onMessage(payload, binary)
    finally:
        globalLogPublisher.removeObserver(observe)
    assert failures == [], [f["log_failure"].getTraceback() for f in failures]
    answered = [a for a in answers if a["type"] in ("ok", "error")]
    assert len(answered) == 1, answers
    answer = answered[0]
    if answer["type"] == "error":
        assert isinstance(answer["error"], str) and answer["error"]
        assert answer["error"] != "internal error"
    json.dumps(answer)


def test_history_pages_back_through_messages_and_notes() -> None:
    """history pages back from the open page's 'before'/'before_note' to the first entry,
    each entry once, oldest first."""
    desk = Desk()
    cid = conversation_id_for(ROUTE, "ann")
    for n in range(7):
        desk.clock.advance(1)
        desk.visitor("ann", f"m{n}")
        desk.clock.advance(1)
        desk.driver.submit(AddNote(cid, "bob", f"n{n}"))
    alice = desk.connect("a" * 20)
    answer = desk.ask(alice, {"type": "open", "conversation": cid, "limit": 4})
    seen = [e["text"] for e in answer["entries"]]
    while answer["more"]:
        answer = desk.ask(alice, {"type": "history", "conversation": cid, "limit": 4,
                                  "before": answer["before"],
                                  "before_note": answer["before_note"]})
        assert answer["type"] == "ok", answer
        seen[:0] = [e["text"] for e in answer["entries"]]
    texts = [t for t in seen if t.startswith(("m", "n"))]
    assert texts == [t for n in range(7) for t in (f"m{n}", f"n{n}")]


def test_long_texts_are_cut_saying_so() -> None:
    """A message longer than text_chars reaches operators cut, with its length."""
    desk = Desk(limits=ChannelLimits(text_chars=100))
    alice = desk.connect("a" * 20)
    desk.visitor("ann", "x" * 1000)
    event = alice.events("conversation")[-1]
    answer = desk.ask(alice, {"type": "open", "conversation": event["conversation"]["id"]})
    first = answer["entries"][0]
    assert first["text"] == "x" * 100 and first["length"] == 1000 and first["truncated"]


def test_a_list_stops_at_page_bytes() -> None:
    """However many are asked for, a list answer stops growing past 512 KiB and says more."""
    desk = Desk(limits=ChannelLimits(max_limit=5000))
    for n in range(3000):
        desk.visitor(f"visitor-{n:05d}-" + "v" * 180, "q" * 200)
    alice = desk.connect("a" * 20)
    answer = desk.ask(alice, {"type": "conversations", "limit": 5000})
    assert answer["more"] and answer["total"] == 3000
    assert PAGE_BYTES <= len(encode(answer)) < PAGE_BYTES + 4096


def test_text_gives_a_cut_text_whole_in_chunks() -> None:
    """text returns a message's (or note's) whole text from an offset; unknown ones refused."""
    from wsdaemon.support.operator_requests import TEXT_CHUNK

    desk = Desk(limits=ChannelLimits(text_chars=10))
    cid = conversation_id_for(ROUTE, "ann")
    body = "".join(chr(0x41 + n % 26) for n in range(TEXT_CHUNK + 5))
    desk.visitor("ann", body)
    desk.driver.submit(AddNote(cid, "bob", "n" * 50))
    alice = desk.connect("a" * 20)
    first = desk.ask(alice, {"type": "text", "conversation": cid, "seq": 1})
    assert first["text"] == body[:TEXT_CHUNK] and first["more"] and first["length"] == len(body)
    rest = desk.ask(alice, {"type": "text", "conversation": cid, "seq": 1,
                            "offset": TEXT_CHUNK})
    assert rest["text"] == body[TEXT_CHUNK:] and not rest["more"]
    assert desk.ask(alice, {"type": "text", "conversation": cid, "note": 1})["text"] == "n" * 50
    assert "has no message 99" in desk.ask(alice, {"type": "text", "conversation": cid,
                                                   "seq": 99})["error"]
    assert "give 'seq'" in desk.ask(alice, {"type": "text", "conversation": cid})["error"]
