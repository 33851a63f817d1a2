"""
Search over conversations (issue 22, item 4): the SQLite store's FTS5
index on a real file, with commits the core really makes (resolved
conversations found by a word of their text, by the visitor's email;
notes only when asked; snippets and marks; pages; the bounds; the index
built at open for a file made before it), what a request may ask, and the
search without an index (a store such as Redis's: what the daemon holds).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from zope.interface.verify import verifyObject

from tests.conversation_desk import ROUTE, Desk, cid
from wsdaemon.conversations import (
    AddNote,
    Commit,
    Identify,
    OperatorReply,
    Profile,
    Resolve,
    SetLabels,
    VisitorMessage,
)
from wsdaemon.conversations.aliases import alias_for
from wsdaemon.conversations.errors import StaleConversation
from wsdaemon.support.ports import IConversationSearch
from wsdaemon.support.search import (
    MAX_LIMIT,
    SearchError,
    SearchQuery,
    fts_expression,
    live_search,
    marked,
)
from wsdaemon.support.search_index import MIGRATION
from wsdaemon.support.store import SQLiteConversationStore


def commits(desk: Desk, *events: Any) -> list[Commit]:
    made = []
    for event in events:
        transition = desk.step(event, at=desk.now + 1.0)
        if transition.commit is not None:
            made.append(transition.commit)
    return made


def support_desk() -> tuple[Desk, list[Commit]]:
    """v1 asked for a refund of order A-1234 and was resolved; v2 is open."""
    desk = Desk(fallback_after=0)
    desk.online("alice")
    made = commits(
        desk,
        VisitorMessage(ROUTE, "v1", "Hello, I want a refund for order A-1234 please"),
        Identify(ROUTE, "v1", Profile("Jane Roe", "jane.roe@example.com")),
        OperatorReply(cid("v1"), "alice", "The refund is on its way.", "Alice"),
        AddNote(cid("v1"), "alice", "customer was angry, gave voucher"),
        Resolve(cid("v1"), "alice"),
        VisitorMessage(ROUTE, "v2", "Where is my parcel?"),
        SetLabels(cid("v2"), "alice", add=("shipping",)),
    )
    return desk, made


_opened: list[SQLiteConversationStore] = []


@pytest.fixture(autouse=True)
def _close_stores() -> Generator[None, None, None]:
    """A test that fails half-way still closes its stores (their threads)."""
    yield
    while _opened:
        store = _opened.pop()
        if store._writer._pool.started:
            pytest_twisted.blockon(store.close())


def store_at(path: Path, timer: Callable[[], float] = time.monotonic,
             **bounds: Any) -> SQLiteConversationStore:
    from twisted.internet import reactor

    store = SQLiteConversationStore(path, reactor, timer=timer)
    for key, value in bounds.items():
        setattr(store._search, key, value)
    _opened.append(store)
    return store


def query(text: str, **fields: Any) -> SearchQuery:
    return SearchQuery.from_request({"text": text, **fields})


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "conversations.sqlite3"


@pytest_twisted.inlineCallbacks
def filled(path: Path, timer: Callable[[], float] = time.monotonic,
           **bounds: Any) -> Generator[Any, Any, SQLiteConversationStore]:
    store = store_at(path, timer, **bounds)
    yield store.open()
    for commit in support_desk()[1]:
        yield store.commit(commit)
    return store


@pytest_twisted.inlineCallbacks
def test_resolved_conversation_found_by_a_word_and_by_email(
        path: Path) -> Generator[Any, Any, None]:
    """A resolved conversation is found by a word of its messages (either
    way: a form of the word too) and by the visitor's email; the hit names
    the message's seq and a plain snippet whose marks cover the match."""
    store = yield filled(path)
    assert verifyObject(IConversationSearch, store)
    found = yield store.search(query("refunds"))
    assert [f.conversation.conversation_id for f in found.found] == [cid("v1")]
    assert found.found[0].conversation.status == "resolved"
    assert found.total == 1 and not found.more and not found.partial and found.scope == "all"
    hits = found.found[0].hits
    replied = [m.seq for m in (yield store.history(cid("v1"))) if m.author == "operator"]
    assert [(h.kind, h.number) for h in hits] == [("message", replied[0]), ("message", 1)]
    assert hits[0].snippet == "The refund is on its way."
    assert [hits[0].snippet[s:e] for s, e in hits[0].marks] == ["refund"]
    by_order = yield store.search(query("a-1234"))
    assert [(h.kind, h.number) for h in by_order.found[0].hits] == [("message", 1)]
    assert [by_order.found[0].hits[0].snippet[s:e] for s, e in by_order.found[0].hits[0].marks] \
        == ["A-1234"]
    by_email = yield store.search(query("jane.roe@example.com"))
    assert [f.conversation.conversation_id for f in by_email.found] == [cid("v1")]
    hit = by_email.found[0].hits[0]
    assert hit.kind == "visitor" and hit.number is None
    assert hit.snippet == f"{alias_for('v1')} · Jane Roe · jane.roe@example.com"
    assert [hit.to_json()["kind"], "seq" in hit.to_json()] == ["visitor", False]
    by_alias = yield store.search(query(alias_for("v2").split()[1]))
    assert cid("v2") in [f.conversation.conversation_id for f in by_alias.found]
    assert (yield store.search(query("refund", status="resolved"))).total == 1
    assert (yield store.search(query("refund", status="open"))).total == 0
    nothing = yield store.search(query("refund parcel"))
    assert nothing.found == () and nothing.total == 0
    yield store.close()


@pytest_twisted.inlineCallbacks
def test_notes_only_when_asked(path: Path) -> Generator[Any, Any, None]:
    """Private notes are searched only with notes: true."""
    store = yield filled(path)
    assert (yield store.search(query("voucher"))).found == ()
    found = yield store.search(query("voucher", notes=True))
    assert [(h.kind, h.number, h.snippet) for h in found.found[0].hits] == [
        ("note", 1, "customer was angry, gave voucher")]
    assert found.found[0].hits[0].to_json()["note"] == 1
    yield store.close()


@pytest_twisted.inlineCallbacks
def test_details_follow_the_conversation(path: Path) -> Generator[Any, Any, None]:
    """A label removed is no longer found, one added is; the daemon's own
    notices (the acknowledgement) are not indexed."""
    store = yield filled(path)
    desk = Desk(fallback_after=0, ack_message="Thanks, we are on it")
    desk.online("alice")
    for commit in commits(desk, VisitorMessage(ROUTE, "v9", "hello"),
                          SetLabels(cid("v9"), "alice", add=("urgent",)),
                          SetLabels(cid("v9"), "alice", add=("vip",), remove=("urgent",))):
        yield store.commit(commit)
    assert (yield store.search(query("urgent"))).found == ()
    assert [f.conversation.conversation_id for f in (yield store.search(query("vip"))).found] \
        == [cid("v9")]
    assert (yield store.search(query("thanks"))).found == ()
    assert (yield store.history(cid("v9")))[-1].body == "Thanks, we are on it"
    yield store.close()


@pytest_twisted.inlineCallbacks
def test_a_refused_commit_indexes_nothing(path: Path) -> Generator[Any, Any, None]:
    """A commit refused as stale leaves nothing in the index either."""
    store = yield filled(path)
    desk, made = support_desk()
    stale = commits(desk, VisitorMessage(ROUTE, "v2", "zebra crossing"))[0]
    yield store.commit(stale)
    with pytest.raises(StaleConversation):
        yield store.commit(stale)
    found = yield store.search(query("zebra"))
    assert [len(f.hits) for f in found.found] == [1]
    yield store.close()


@pytest_twisted.inlineCallbacks
def test_pages_most_recent_activity_first(path: Path) -> Generator[Any, Any, None]:
    """Pages of `limit`, most recent activity first, resumed after `next`."""
    store = store_at(path)
    yield store.open()
    desk = Desk(fallback_after=0)
    for n in range(7):
        for commit in commits(desk, VisitorMessage(ROUTE, f"v{n}", f"printer broken {n}")):
            yield store.commit(commit)
    # v2 writes again: it is the most recent now.
    for commit in commits(desk, VisitorMessage(ROUTE, "v2", "still broken")):
        yield store.commit(commit)
    expected = [cid(f"v{n}") for n in (2, 6, 5, 4, 3, 1, 0)]
    seen: list[str] = []
    after = None
    while True:
        page = yield store.search(query("broken", limit=3, **({"after": after} if after else {})))
        seen += [f.conversation.conversation_id for f in page.found]
        assert page.total == 7
        if not page.more:
            break
        last = page.found[-1].conversation
        after = [last.last_activity_at, last.conversation_id]
    assert seen == expected
    first = yield store.search(query("broken"))
    wrote = [m.seq for m in (yield store.history(cid("v2"))) if m.author == "visitor"]
    assert [(h.kind, h.number) for h in first.found[0].hits] == [
        ("message", seq) for seq in reversed(wrote)]
    assert [h.snippet for h in first.found[0].hits] == ["still broken", "printer broken 2"]
    yield store.close()


@pytest_twisted.inlineCallbacks
def test_bounded_in_rows(path: Path) -> Generator[Any, Any, None]:
    """Past its row bound a search stops and says it is partial: the newest
    matches are the ones it read."""
    store = store_at(path, scan_rows=4)
    yield store.open()
    desk = Desk(fallback_after=0)
    for n in range(6):
        for commit in commits(desk, VisitorMessage(ROUTE, f"v{n}", "invoice")):
            yield store.commit(commit)
    found = yield store.search(query("invoice"))
    assert found.partial
    assert [f.conversation.conversation_id for f in found.found] == [
        cid(f"v{n}") for n in (5, 4, 3, 2)]
    assert not (yield store.search(query("invoice", limit=1))).found[0].hits == ()
    yield store.close()


@pytest_twisted.inlineCallbacks
def test_bounded_in_time(path: Path) -> Generator[Any, Any, None]:
    """A search whose clock has passed its time bound answers partial with
    what it had read (at most a batch)."""
    store = store_at(path, seconds=-1.0)
    yield store.open()
    for commit in support_desk()[1]:
        yield store.commit(commit)
    found = yield store.search(query("refund"))
    assert found.partial and found.total == 1
    yield store.close()


@pytest_twisted.inlineCallbacks
def test_a_statement_past_the_time_bound_is_interrupted(
        path: Path) -> Generator[Any, Any, None]:
    """The clock is looked at inside a long statement too: past the bound
    SQLite interrupts it, and the answer is partial (not an error); the
    next search, in time, is whole."""
    clock = {"jumping": False, "late": False}

    def timer() -> float:
        # The store's own timer: once jumping, its second look is late.
        if not clock["jumping"]:
            return 0.0
        value = 100.0 if clock["late"] else 0.0
        clock["late"] = True
        return value

    store = yield filled(path, timer, progress_ops=1)
    clock["jumping"] = True
    found = yield store.search(query("refund"))
    assert found.partial and found.found == ()
    clock["jumping"] = False
    assert not (yield store.search(query("refund"))).partial
    yield store.close()


@pytest_twisted.inlineCallbacks
def test_search_syntax_is_taken_literally(path: Path) -> Generator[Any, Any, None]:
    """Quotes, operators, column filters and stars in what an operator
    types are words, never FTS5 syntax (no error, no other column)."""
    store = yield filled(path)
    for text in ('"refund', 'refund OR parcel', "NEAR(refund parcel)", "{note}: voucher",
                 "conversation_id: x", "refund*)", "^refund", "-refund"):
        result = yield store.search(query(text))
        assert not result.partial, text
    assert (yield store.search(query("{note}: voucher"))).found == ()
    found = yield store.search(query("refu*"))
    assert [f.conversation.conversation_id for f in found.found] == [cid("v1")]
    yield store.close()


@pytest_twisted.inlineCallbacks
def test_index_built_at_open_for_an_older_file(path: Path) -> Generator[Any, Any, None]:
    """A file made before the index (no index tables, no migration row)
    gets it at open: every conversation's messages, notes and details."""
    store = yield filled(path)
    yield store.close()
    db = sqlite3.connect(path)
    with db:
        db.execute("DROP TABLE conversation_search")
        db.execute("DROP TABLE conversation_search_about")
        db.execute("DELETE FROM wsdaemon_migrations WHERE name = ?", (MIGRATION,))
    db.close()
    store = store_at(path)
    yield store.open()
    assert [f.conversation.conversation_id for f in (yield store.search(query("refund"))).found] \
        == [cid("v1")]
    assert (yield store.search(query("jane.roe@example.com"))).total == 1
    assert (yield store.search(query("voucher", notes=True))).total == 1
    assert (yield store.search(query("shipping"))).total == 1
    yield store.close()
    db = sqlite3.connect(path)
    rows = db.execute("SELECT count(*) FROM conversation_search").fetchone()[0]
    db.close()
    assert rows == 3 + 1 + 2  # three messages, one note, two visitors' details
    store = store_at(path)
    yield store.open()  # whole: not built again
    yield store.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM conversation_search").fetchone()[0] == rows
    db.close()


@pytest.mark.parametrize(("request_fields", "error"), [
    ({}, "'text' must be"),
    ({"text": "   "}, "'text' must be"),
    ({"text": 5}, "'text' must be"),
    ({"text": "x" * 201}, "at most 200"),
    ({"text": "--- !!"}, "no word"),
    ({"text": "a", "notes": "yes"}, "'notes'"),
    ({"text": "a", "limit": MAX_LIMIT + 1}, "'limit'"),
    ({"text": "a", "limit": 0}, "'limit'"),
    ({"text": "a", "limit": True}, "'limit'"),
    ({"text": "a", "after": [1, 2]}, "'after'"),
    ({"text": "a", "after": [float("nan"), "x"]}, "'after'"),
    ({"text": "a", "status": "closed"}, "'status'"),
])
def test_bad_requests_refused(request_fields: dict[str, Any], error: str) -> None:
    """What a search may not ask is refused saying which field and why."""
    with pytest.raises(SearchError, match=error):
        SearchQuery.from_request(request_fields)


def test_expression_and_marks() -> None:
    """Each word a quoted phrase, notes' column left out unless asked; a
    snippet's marks come out as spans of its plain text."""
    assert fts_expression(('say "hi"', "ab*"), notes=False) == '{text} : ("say ""hi""" "ab"*)'
    assert fts_expression(("a*",), notes=True) == '"a*"'
    assert marked("a \x02big\x03 \x02cat\x03") == ("a big cat", ((2, 5), (6, 9)))
    long = "x" * 1000 + "\x02hit\x03" + "y" * 1000
    text, marks = marked(long, chars=240)
    assert len(text) == 240 and [text[s:e] for s, e in marks] == ["hit"]


def test_live_search_without_an_index() -> None:
    """Without an index, the conversations held are searched by their
    details and latest message, resolved ones left out (scope live)."""
    desk, _ = support_desk()
    found = live_search(desk.inbox.conversations(), query("parcel"))
    assert found.scope == "live"
    assert [(f.conversation.conversation_id, f.hits[0].kind) for f in found.found] == [
        (cid("v2"), "preview")]
    assert found.found[0].hits[0].snippet[slice(*found.found[0].hits[0].marks[0])] == "parcel"
    assert [f.conversation.conversation_id
            for f in live_search(desk.inbox.conversations(), query("SHIPPING")).found] \
        == [cid("v2")]
    assert live_search(desk.inbox.conversations(), query("refund")).found == ()
    assert live_search(desk.inbox.conversations(), query("parcel", status="snoozed")).found \
        == ()


@pytest_twisted.inlineCallbacks
def test_a_build_cut_short_is_done_again_whole(path: Path) -> Generator[Any, Any, None]:
    """An index without its migration row (a build cut short, rows half
    written) is built again from nothing at open: every row once."""
    store = yield filled(path)
    yield store.close()
    db = sqlite3.connect(path)
    whole = db.execute("SELECT count(*) FROM conversation_search").fetchone()[0]
    with db:
        db.execute("DELETE FROM conversation_search WHERE rowid = "
                   "(SELECT max(rowid) FROM conversation_search)")
        db.execute("DELETE FROM wsdaemon_migrations WHERE name = ?", (MIGRATION,))
    db.close()
    store = store_at(path)
    yield store.open()
    assert (yield store.search(query("refund"))).total == 1
    yield store.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM conversation_search").fetchone()[0] == whole
    assert db.execute("SELECT count(*) FROM conversation_search_about").fetchone()[0] == 2
    db.close()


@pytest_twisted.inlineCallbacks
def test_a_chinese_or_japanese_word_inside_a_sentence_is_found(
        path: Path) -> Generator[Any, Any, None]:
    """
    Han and kana are written without spaces: a word inside a sentence is
    found (as the phrase of its characters, in order), the snippet is the
    text as written (nothing added) and the marks cover the word.
    """
    store = store_at(path)
    yield store.open()
    desk = Desk(fallback_after=0)
    for commit in commits(desk, VisitorMessage(ROUTE, "v1", "你好，我要退款，订单A-1234还没到。"),
                          VisitorMessage(ROUTE, "v2", "款退不是一个词"),
                          VisitorMessage(ROUTE, "v3", "注文をキャンセルしたいです")):
        yield store.commit(commit)
    found = yield store.search(query("退款"))
    assert [f.conversation.conversation_id for f in found.found] == [cid("v1")]
    hit = found.found[0].hits[0]
    assert hit.snippet == "你好，我要退款，订单A-1234还没到。"
    assert [hit.snippet[s:e] for s, e in hit.marks] == ["退款"]
    assert (yield store.search(query("订单 a-1234"))).total == 1
    assert (yield store.search(query("退款 没到"))).total == 1
    assert (yield store.search(query("キャンセル"))).total == 1
    assert (yield store.search(query("退货"))).total == 0
    yield store.close()


@pytest_twisted.inlineCallbacks
def test_an_index_of_the_previous_version_is_made_again(path: Path) -> Generator[Any, Any, None]:
    """A file indexed before Han was cut into characters (migration
    search-index-1) is indexed again at open, and then finds a Chinese word."""
    store = store_at(path)
    yield store.open()
    for commit in commits(Desk(fallback_after=0), VisitorMessage(ROUTE, "v1", "我要退款")):
        yield store.commit(commit)
    yield store.close()
    db = sqlite3.connect(path)
    with db:  # as the previous version wrote it: the sentence one token
        db.execute("UPDATE conversation_search SET text = ? WHERE kind = 'm'", ("我要退款",))
        db.execute("UPDATE wsdaemon_migrations SET name = 'search-index-1' WHERE name = ?",
                   (MIGRATION,))
    db.close()
    store = store_at(path)
    yield store.open()
    assert (yield store.search(query("退款"))).total == 1
    yield store.close()
