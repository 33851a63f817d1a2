"""
The admin API's journal queries on a stopped clock: a long query is done a
chunk at a time, within a time budget per reactor turn, at most a few at
once; a client that goes away stops its query.
"""

from __future__ import annotations

import json
from io import BytesIO
from typing import Any

from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from wsdaemon.connections.journal import Journal, JournalFilter, Sequence
from wsdaemon.server.journal_api import JournalQueries, JournalResource
from wsdaemon.testing import RecordingSession

KEY = "journal-api-key-0123456789"
#: Time a test moves its clock on for one reactor turn.
TURN = 0.001


class Daemon:
    def __init__(self, journals: dict[str, Journal], sequence: Sequence) -> None:
        self._journals = journals
        self._sequence = sequence

    def journals(self) -> dict[str, Journal]:
        return self._journals

    def journal_mark(self) -> int:
        return self._sequence.mark()


class Site:
    api_keys = {KEY: "tests"}
    max_body = 1 << 20

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon


class TickingClock(Clock):
    """
    A clock whose time moves 1 ms each time it is read (work takes time);
    C{advance} runs the calls due when it is called (one reactor turn).
    """

    def seconds(self) -> float:
        self.rightNow += 0.001
        return self.rightNow

    def advance(self, amount: float) -> None:
        self.rightNow += amount
        due = [call for call in self.calls if call.getTime() <= self.rightNow]
        for call in due:
            self.calls.remove(call)
            call.called = 1
            call.func(*call.args, **call.kw)


def resource(entries: int = 1000, clock: Clock | None = None,
             **bounds: Any) -> tuple[JournalResource, Clock, Journal]:
    sequence = Sequence()
    kept = Journal("/r", 100_000, 100_000_000, sequence, Clock().seconds)
    session = RecordingSession(session_id="s1", client_id="c1")
    for number in range(entries):
        kept.message(session, "in", f"order {number}" if number % 2 else f"noise {number}",
                     False)
    clock = clock if clock is not None else Clock()
    queries = JournalQueries(clock, **bounds)
    return JournalResource(Site(Daemon({"/r": kept}, sequence)), queries), clock, kept


def request(path: str, body: Any = None) -> DummyRequest:
    segments, _, query = path.partition("?")
    made = DummyRequest([s.encode() for s in segments.split("/") if s])
    made.requestHeaders.setRawHeaders(b"authorization", [f"Bearer {KEY}".encode()])
    for pair in filter(None, query.split("&")):
        name, _, value = pair.partition("=")
        made.addArg(name.encode(), value.encode())
    if body is not None:
        made.method = b"POST"
        made.content = BytesIO(json.dumps(body).encode())
    return made


def render(journals: JournalResource, made: DummyRequest) -> object:
    """Render as a Site would: an answer returned at once is written."""
    result = journals.render(made)
    if result is not NOT_DONE_YET:
        made.write(result)
        made.finish()
    return result


def answer(made: DummyRequest) -> Any:
    assert made.finished
    return json.loads(b"".join(made.written))


def test_a_long_query_is_answered_a_chunk_per_turn() -> None:
    """1,000 entries, 100 per step, one step per turn: nothing is answered
    in the first turns; the answer comes after ten steps of scanning and
    the listing's encoding, and it is the whole query's."""
    journals, clock, _ = resource(chunk=100, steps_per_turn=1)
    made = request("find", {"match": {"regex": "^order"}, "limit": 150})
    assert render(journals, made) is NOT_DONE_YET
    turns = 0
    while not made.finished:
        assert turns < 100
        clock.advance(TURN)
        turns += 1
    assert turns == 10 + 2 + 1  # the scan, 150 entries encoded 100 a step, written
    found = answer(made)
    assert found["count"] == 500 and len(found["entries"]) == 150
    assert found["entries"][0]["text"] == "order 1"
    assert found["next"] == found["entries"][-1]["seq"]
    assert made.responseHeaders.getRawHeaders(b"content-length") == [
        str(len(b"".join(made.written))).encode()]


def test_a_long_listing_is_written_in_pieces() -> None:
    """The body goes out in pieces of about chunk_bytes, one per step, never
    as one copy of the whole listing; its length is known first."""
    journals, clock, _ = resource(chunk=100, chunk_bytes=4096, steps_per_turn=1)
    made = request("?limit=150")
    render(journals, made)
    while not made.finished:
        clock.advance(TURN)
    body = b"".join(made.written)
    assert len(body) > 5 * 4096 and len(made.written) >= 5
    assert max(map(len, made.written)) < 4096 + 400
    assert made.responseHeaders.getRawHeaders(b"content-length") == [b"%d" % len(body)]
    listed = answer(made)
    assert [e["text"] for e in listed["entries"][:2]] == ["noise 0", "order 1"]
    assert listed["count"] == 1000 and listed["next"] == listed["entries"][-1]["seq"]


def test_queries_share_a_time_budget_per_turn() -> None:
    """Work stops for the turn once the budget is spent (here 5 ms, each
    step taking 1 ms), and two queries share one budget."""
    journals, clock, _ = resource(entries=1000, clock=TickingClock(), chunk=10,
                                  turn_budget=0.005)
    first, second = request("count", {}), request("count", {})
    render(journals, first)
    render(journals, second)
    turns = 0
    while not (first.finished and second.finished):
        clock.advance(TURN)
        turns += 1
    assert 38 <= turns <= 42  # 200 steps of 10 entries, about 5 per turn
    assert answer(first)["count"] == answer(second)["count"] == 1000


def test_at_most_max_running_queries_then_503_with_retry_after() -> None:
    """A third query while two run is refused with 503 and Retry-After; once
    one is answered, another is taken."""
    journals, clock, _ = resource(max_running=2, chunk=100, steps_per_turn=1)
    running = [request("", None), request("count", {})]
    for made in running:
        assert render(journals, made) is NOT_DONE_YET
    refused = request("find", {})
    render(journals, refused)
    assert refused.responseCode == 503
    assert refused.responseHeaders.getRawHeaders(b"retry-after") == [b"1"]
    assert "2 journal queries are running" in answer(refused)["error"]
    while not running[1].finished:
        clock.advance(TURN)
    again = request("count", {})
    assert render(journals, again) is NOT_DONE_YET


def test_a_client_that_goes_away_stops_its_query() -> None:
    """A request whose connection is lost stops its scan: its slot is free
    at once and nothing is written to it."""
    journals, clock, _ = resource(max_running=1, chunk=100, steps_per_turn=1)
    made = request("find", {"match": {"text": "order 7"}})
    render(journals, made)
    clock.advance(TURN)
    made.processingFailed(Failure(ConnectionError("gone")))
    assert journals.queries.running == 0
    clock.advance(TURN)
    assert not made.written and not made.finished
    other = request("count", {"match": {"text": "order 7"}})
    render(journals, other)
    while not other.finished:
        clock.advance(TURN)
    assert answer(other)["count"] == 1


def test_the_answer_holds_only_what_was_there_when_it_was_asked() -> None:
    """Entries recorded while a query runs are not in it, and are above its
    last; clearing the journal meanwhile does not change it."""
    journals, clock, kept = resource(entries=300, chunk=100, steps_per_turn=1)
    made = request("")
    render(journals, made)
    clock.advance(TURN)
    kept.message(RecordingSession(), "in", "later", False)
    later = list(kept.select(JournalFilter()))[-1][0]
    kept.clear()
    while not made.finished:
        clock.advance(TURN)
    listed = answer(made)
    assert listed["count"] == 300 and "next" not in listed
    assert listed["entries"][-1]["text"] == "order 299" and listed["last"] < later


def test_bad_queries_are_still_answered_at_once() -> None:
    """A bad filter is still a 400 at once, an unknown route a 404."""
    journals, _, _ = resource()
    bad = request("?direction=sideways")
    render(journals, bad)
    assert bad.responseCode == 400 and "direction" in answer(bad)["error"]
    unknown = request("?route=/nope")
    render(journals, unknown)
    assert unknown.responseCode == 404
