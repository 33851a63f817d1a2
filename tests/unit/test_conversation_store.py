"""
The conversation store contract, run against every store (SQLite on a real
file, in memory, and Redis on a real redis-server through the broker's
link) with commits the core really makes; then what only SQLite does: its
file, group commit, and taking over the operator queue's items and
messages (Redis-only matters: test_conversation_redis_store.py).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Generator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from zope.interface.verify import verifyObject

from tests.conversation_desk import ROUTE, Desk, cid
from tests.legacy_queue import QueueFile
from tests.redis_store_link import redis_link
from wsdaemon.client_ids import public_id
from wsdaemon.conversations import (
    AddNote,
    Author,
    BotPending,
    Commit,
    Identify,
    OperatorRead,
    OperatorReply,
    Profile,
    ProfileSource,
    Resolve,
    SetLabels,
    Snooze,
    Status,
    VisitorMessage,
    conversation_id_for,
)
from wsdaemon.conversations.codec import conversation_row
from wsdaemon.conversations.errors import StaleConversation
from wsdaemon.support.memory import MemoryConversationStore, stored_form
from wsdaemon.support.migration import MIGRATION as QUEUE_TAKE_OVER
from wsdaemon.support.ports import IConversationStore
from wsdaemon.support.redis_store import RedisConversationStore
from wsdaemon.support.search_index import MIGRATION as SEARCH_INDEX
from wsdaemon.support.store import SQLiteConversationStore

Make = Callable[[], Any]


@pytest.fixture(params=["sqlite", "memory", "redis"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Make:
    """
    Each call: the store again (a new SQLite object on the same file, the
    same memory, a new Redis store on the same link and prefix).
    """
    from twisted.internet import reactor

    memory = MemoryConversationStore()
    link = None
    if request.param == "redis":
        link = redis_link(request.getfixturevalue("redis_server"))
        request.addfinalizer(lambda: pytest_twisted.blockon(link.stop()))

    def make() -> Any:
        if request.param == "memory":
            return memory
        if link is not None:
            return RedisConversationStore(link, link.prefix, reactor)
        return SQLiteConversationStore(tmp_path / "state" / "queue.sqlite3", reactor)

    return make


def commits(desk: Desk, *events: Any) -> list[Commit]:
    """What the core commits for each event in turn, a second apart."""
    made = []
    for event in events:
        transition = desk.step(event, at=desk.now + 1.0)
        if transition.commit is not None:
            made.append(transition.commit)
    return made


def busy_desk() -> tuple[Desk, list[Commit]]:
    desk = Desk(fallback_after=0)
    desk.online("alice")
    key = cid("v1")
    made = commits(
        desk,
        VisitorMessage(ROUTE, "v1", "Hello, is anyone there?", "c-1"),
        OperatorReply(key, "alice", "Hi! Alice here.", "Alice B."),
        AddNote(key, "alice", "asked about billing"),
        SetLabels(key, "alice", add=("billing", "vip")),
        VisitorMessage(ROUTE, "v1", "My invoice is wrong"),
        OperatorRead(key, "alice", 4),
        VisitorMessage(ROUTE, "v2", "hi"),
        Resolve(cid("v2"), "alice"),
        VisitorMessage(ROUTE, "v3", "anyone?"),
        Snooze(cid("v3"), "alice", 500.0),
    )
    return desk, made


def test_provides_interface(make_store: Make) -> None:
    """Every store provides IConversationStore."""
    assert verifyObject(IConversationStore, make_store())


@pytest_twisted.inlineCallbacks
def test_what_is_committed_comes_back(make_store: Make) -> Generator[Any, Any, None]:
    """Conversations, messages and notes come back as committed, after a
    reopen too; live ones in the order they opened, resolved ones by id only."""
    desk, made = busy_desk()
    store = make_store()
    yield store.open()
    for commit in made:
        yield store.commit(commit)
    yield store.close()
    store = make_store()
    yield store.open()
    for conversation in desk.inbox.conversations():
        loaded = yield store.load(conversation.conversation_id)
        assert loaded == stored_form(conversation)
    live = yield store.load_live()
    assert [c.visitor for c in live] == ["v1", "v3"]
    assert [c.status for c in live] == [Status.OPEN, Status.SNOOZED]
    messages = yield store.messages(cid("v1"))
    assert [(m.seq, m.author, m.body) for m in messages] == [
        (1, Author.VISITOR, "Hello, is anyone there?"),
        (2, Author.SYSTEM, desk.settings.ack_message),
        (3, Author.OPERATOR, "Hi! Alice here."),
        (4, Author.VISITOR, "My invoice is wrong")]
    assert (messages[0].client_message_id, messages[2].display_name) == ("c-1", "Alice B.")
    notes = yield store.notes(cid("v1"))
    assert [(n.note_id, n.operator, n.body) for n in notes] == [
        (1, "alice", "asked about billing")]
    assert (yield store.load("nope")) is None
    assert (yield store.messages("nope")) == []
    yield store.close()


@pytest_twisted.inlineCallbacks
def test_pages(make_store: Make) -> Generator[Any, Any, None]:
    """Resume pages go forward from a seq; history and notes pages go back."""
    desk = Desk(fallback_after=0, ack_message="", offline_message="", max_unanswered=0)
    key = cid("v1")
    made = commits(desk, *[VisitorMessage(ROUTE, "v1", f"m{n}") for n in range(1, 8)],
                   *[AddNote(key, "alice", f"n{n}") for n in range(1, 5)])
    store = make_store()
    yield store.open()
    for commit in made:
        yield store.commit(commit)
    assert [m.seq for m in (yield store.messages(key, after=2, limit=3))] == [3, 4, 5]
    assert [m.seq for m in (yield store.messages(key, after=6))] == [7]
    assert [m.seq for m in (yield store.history(key, limit=3))] == [5, 6, 7]
    assert [m.seq for m in (yield store.history(key, before=5, limit=3))] == [2, 3, 4]
    assert [m.seq for m in (yield store.history(key, before=2))] == [1]
    assert [n.note_id for n in (yield store.notes(key, before=4, limit=2))] == [2, 3]
    yield store.close()


@pytest_twisted.inlineCallbacks
def test_a_stale_commit_stores_nothing(make_store: Make) -> Generator[Any, Any, None]:
    """A commit decided on a version the store no longer holds fails, naming
    the conversation, and none of it is stored, not even its other parts."""
    desk = Desk(fallback_after=0)
    first = commits(desk, VisitorMessage(ROUTE, "v1", "hi"))[0]
    store = make_store()
    yield store.open()
    yield store.commit(first)
    with pytest.raises(StaleConversation) as raised:
        yield store.commit(first)  # created twice
    assert raised.value.conversation_ids == (cid("v1"),)
    reply = commits(desk, OperatorReply(cid("v1"), "alice", "one"))[0]
    desk_b = Desk(fallback_after=0)
    other = commits(desk_b, VisitorMessage(ROUTE, "v2", "hi"))[0]
    both = Commit(other.conversations + reply.conversations, other.messages + reply.messages)
    yield store.commit(reply)
    with pytest.raises(StaleConversation):
        yield store.commit(both)  # v2 is new, v1's version is taken
    assert (yield store.load(cid("v2"))) is None
    assert (yield store.messages(cid("v2"))) == []
    clash = Commit((replace(reply.conversations[0], version=3),), reply.messages)
    with pytest.raises(StaleConversation):
        yield store.commit(clash)  # the version is right, the message number taken
    assert (yield store.load(cid("v1"))).version == 2
    yield store.close()


AWKWARD = 'Ünïcødé "quotes" \\ back / slash\nline\ttab \x00\x07 \U0001f600 </script> \u2028'


@pytest_twisted.inlineCallbacks
def test_text_and_times_come_back_exactly(make_store: Make) -> Generator[Any, Any, None]:
    """Whatever a visitor or an operator writes (quotes, backslashes,
    newlines, control characters, accents, emoji) and times to the last
    digit come back exactly, in messages, notes, previews and labels."""
    desk = Desk(fallback_after=0)
    desk.now = 1_765_000_000.123456789
    key = cid("v1")
    made = commits(desk, VisitorMessage(ROUTE, "v1", AWKWARD, "c-\u00e9\U0001f600"),
                   AddNote(key, "alice", AWKWARD), SetLabels(key, "alice", add=("ça va",)))
    store = make_store()
    yield store.open()
    for commit in made:
        yield store.commit(commit)
    expected = stored_form(desk.conversation("v1"))
    assert expected.preview == AWKWARD
    assert (yield store.load(key)) == expected
    assert (yield store.load_live()) == [expected]
    assert [m.body for m in (yield store.messages(key))][0] == AWKWARD
    assert [n.body for n in (yield store.notes(key))] == [AWKWARD]
    yield store.close()


@pytest_twisted.inlineCallbacks
def test_profiles_come_back(make_store: Make) -> Generator[Any, Any, None]:
    """A visitor's profile (brought by its first message, or by identify
    later, awkward text and all) comes back as committed, after a reopen
    too; a conversation without one comes back without."""
    desk = Desk(fallback_after=0)
    token = Profile("Ann", None, (("plan", "pro"),), ProfileSource.JWT)
    made = commits(
        desk,
        VisitorMessage(ROUTE, "v1", "hi", profile=token),
        Identify(ROUTE, "v1", Profile("Mallory", "ann@example.com", (("note", AWKWARD),))),
        VisitorMessage(ROUTE, "v2", "hello"),
        VisitorMessage(ROUTE, "v3", "hey"),
        Identify(ROUTE, "v3", Profile("B\u00f6 \u202e </b>", "bo@example.com")),
    )
    store = make_store()
    yield store.open()
    for commit in made:
        yield store.commit(commit)
    yield store.close()
    store = make_store()
    yield store.open()
    ann = yield store.load(cid("v1"))
    assert ann.profile == Profile("Ann", "ann@example.com", (("plan", "pro"), ("note", AWKWARD)),
                                  ProfileSource.JWT)
    assert (yield store.load(cid("v2"))).profile is None
    for conversation in desk.inbox.conversations():
        assert (yield store.load(conversation.conversation_id)) == stored_form(conversation)
    assert [c.profile for c in (yield store.load_live())] == [
        desk.conversation(v).profile for v in ("v1", "v2", "v3")]
    yield store.close()


# -- SQLite only --------------------------------------------------------------


def sqlite_store(path: Path) -> SQLiteConversationStore:
    from twisted.internet import reactor

    return SQLiteConversationStore(path, reactor)


@pytest_twisted.inlineCallbacks
def test_sqlite_file_is_private_and_in_wal_mode(tmp_path: Path) -> Generator[Any, Any, None]:
    """The file is the daemon user's alone (0600) whatever the umask, in WAL mode."""
    path = tmp_path / "queue.sqlite3"
    old = os.umask(0o022)
    try:
        store = sqlite_store(path)
        yield store.open()
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    mode = yield store._writer.run(lambda db: db.execute("PRAGMA journal_mode").fetchone()[0])
    assert mode == "wal"
    yield store.close()


@pytest_twisted.inlineCallbacks
def test_sqlite_group_commit_keeps_each_commit_whole(tmp_path: Path
                                                     ) -> Generator[Any, Any, None]:
    """Commits asked for together share a transaction; a stale one among
    them is undone alone."""
    store = sqlite_store(tmp_path / "queue.sqlite3")
    yield store.open()
    desks = [Desk(fallback_after=0) for _ in range(3)]
    for n, desk in enumerate(desks):
        desk.now = float(n)
    made = [commits(desk, VisitorMessage(ROUTE, f"v{n}", "hi"))[0]
            for n, desk in enumerate(desks)]
    asked = [store.commit(made[0]), store.commit(made[1]), store.commit(made[0]),
             store.commit(made[2])]
    outcomes = []
    for d in asked:
        try:
            yield d
            outcomes.append("ok")
        except StaleConversation:
            outcomes.append("stale")
    assert outcomes == ["ok", "ok", "stale", "ok"]
    assert [c.visitor for c in (yield store.load_live())] == ["v0", "v1", "v2"]
    yield store.close()


LEGACY = "A" * 22 + "." + "B" * 16


def fill_queue(path: Path) -> None:
    """The retired operator queue's file, as its store wrote it (tests/legacy_queue.py)."""
    queue = QueueFile(path)
    # ann: answered once (delivered), then asked again, fallback sent, still queued.
    queue.ask("a1", ROUTE, "ann", "q a1", 10.0)
    queue.delivered(queue.answer("a1", "alice", "Hi", 12.0))
    queue.ask("a2", ROUTE, "ann", "q a2", 20.0)
    queue.fallback("a2", "Sorry, nobody yet", 320.0)
    # bob: answered with a reply too big for its route (failed for good).
    queue.ask("b1", ROUTE, "bob", "q b1", 30.0)
    queue.failed(queue.answer("b1", "carol", "x" * 9, 31.0))
    # A client still known by its credential (a store from before public ids),
    # its item claimed when the queue stopped.
    queue.ask("c1", ROUTE, LEGACY, "q c1", 40.0)
    queue.claim("c1", "dave")
    # A push to someone who never wrote, not yet delivered.
    queue.push("dan", ROUTE, "alice", "Your order shipped", 50.0)
    # eve: nobody answered; the fallback closed her item (keep_after_fallback = no).
    queue.ask("e1", ROUTE, "eve", "q e1", 60.0)
    queue.fallback("e1", "Sorry, nobody yet", 360.0, keep=False)
    # ann again, on another operator route: another conversation.
    queue.ask("s1", "/sales", "ann", "q s1", 70.0)
    queue.close()


@pytest_twisted.inlineCallbacks
def test_sqlite_takes_over_the_queue_once(tmp_path: Path) -> Generator[Any, Any, None]:
    """On first open, the queue's items and messages become conversations
    (open where items wait, resolved otherwise; renumbered; authors and
    delivery kept; a failed reply noted; credential ids made public); the
    queue's tables stay as they were; a second open changes nothing."""
    path = tmp_path / "queue.sqlite3"
    fill_queue(path)
    before = queue_tables(path)
    store = sqlite_store(path)
    yield store.open()
    ann = yield store.load(conversation_id_for(ROUTE, "ann"))
    assert (ann.status, ann.waiting_since, ann.opened_at, ann.unanswered, ann.fallback_sent,
            ann.ack_sent, ann.assignee, ann.version) == \
        (Status.OPEN, 20.0, 20.0, 1, True, True, None, 1)
    # The queue's fallback is no answer: "q a2" is still unread, and the open
    # episode (since 20.0) has had no reply yet.
    assert (ann.last_seq, ann.delivered_upto, ann.unread_for("alice"), ann.preview) == \
        (4, 3, 1, "q a2")
    assert ann.first_response_at is None
    thread = yield store.messages(ann.conversation_id)
    assert [(m.seq, m.author, m.operator, m.body) for m in thread] == [
        (1, Author.VISITOR, None, "q a1"), (2, Author.OPERATOR, "alice", "Hi"),
        (3, Author.VISITOR, None, "q a2"), (4, Author.SYSTEM, None, "Sorry, nobody yet")]
    bob = yield store.load(conversation_id_for(ROUTE, "bob"))
    assert (bob.status, bob.resolved_at, bob.delivered_upto, bob.note_count) == \
        (Status.RESOLVED, 31.0, 2, 1)
    assert bob.waiting_since is None and bob.resolution_time == 1.0
    assert bob.first_response_at == 31.0  # answered (the reply failed, but was made)
    assert [n.body for n in (yield store.notes(bob.conversation_id))] == [
        "Message 2 could never be written to the visitor (too big for its route)."]
    legacy = yield store.load(conversation_id_for(ROUTE, public_id(LEGACY)))
    assert (legacy.visitor, legacy.status, legacy.unread_for("alice")) == \
        (public_id(LEGACY), Status.OPEN, 1)
    assert legacy.assignee is None  # no claim survived a restart
    dan = yield store.load(conversation_id_for(ROUTE, "dan"))
    assert (dan.status, dan.delivered_upto, dan.last_seq) == (Status.RESOLVED, 0, 1)
    eve = yield store.load(conversation_id_for(ROUTE, "eve"))
    assert (eve.status, eve.resolved_at, eve.delivered_upto, eve.last_seq, eve.unanswered) == \
        (Status.RESOLVED, 360.0, 1, 2, 0)
    sales = yield store.load(conversation_id_for("/sales", "ann"))
    assert (sales.route, sales.status, sales.last_seq, sales.waiting_since) == \
        ("/sales", Status.OPEN, 1, 70.0)
    assert [(c.route, c.visitor) for c in (yield store.load_live())] == [
        (ROUTE, "ann"), (ROUTE, public_id(LEGACY)), ("/sales", "ann")]
    counts = yield store._writer.run(lambda db: [
        db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
        for t in ("items", "messages", "conversations", "conversation_messages")])
    assert counts == [6, 11, 6, 11]
    yield store.close()
    again = sqlite_store(path)
    yield again.open()
    assert (yield again.load(ann.conversation_id)) == ann
    counts = yield again._writer.run(lambda db: db.execute(
        "SELECT count(*) FROM conversations").fetchone()[0])
    assert counts == 6
    yield again.close()
    assert queue_tables(path) == before


def queue_tables(path: Path) -> list[Any]:
    """Every row of the queue's tables, and their definitions."""
    import sqlite3

    db = sqlite3.connect(path)
    try:
        return [db.execute("SELECT name, sql FROM sqlite_master WHERE tbl_name IN "
                           "('items', 'messages') ORDER BY name").fetchall(),
                *(db.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall()
                  for t in ("items", "messages"))]
    finally:
        db.close()


@pytest_twisted.inlineCallbacks
def test_sqlite_file_older_than_profiles_gets_the_column(tmp_path: Path
                                                         ) -> Generator[Any, Any, None]:
    """A file whose conversations table predates profiles gets the column on
    open (once): its rows load without a profile, and profiles are kept."""
    import sqlite3

    from wsdaemon.support.schema import SCHEMA

    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(SCHEMA.replace("    profile TEXT,", "").replace(
        "-- JSON: the visitor's name, email, attributes, source\n", ""))
    assert "profile" not in {r[1] for r in old.execute("PRAGMA table_info(conversations)")}
    desk = Desk(fallback_after=0)
    first = commits(desk, VisitorMessage(ROUTE, "v1", "from before profiles"))[0]
    row = {k: v for k, v in conversation_row(first.conversations[0]).items() if k != "profile"}
    old.execute(f"INSERT INTO conversations ({', '.join(row)}) "
                f"VALUES ({', '.join('?' * len(row))})", list(row.values()))
    old.commit()
    old.close()
    for _ in range(2):
        store = sqlite_store(path)
        yield store.open()
        assert (yield store.load(cid("v1"))) == stored_form(desk.conversation("v1"))
        yield store.close()
    store = sqlite_store(path)
    yield store.open()
    for commit in commits(desk, Identify(ROUTE, "v1", Profile("Ann"))):
        yield store.commit(commit)
    assert (yield store.load(cid("v1"))).profile == Profile("Ann")
    yield store.close()


@pytest_twisted.inlineCallbacks
def test_sqlite_on_a_new_file_takes_over_nothing(tmp_path: Path) -> Generator[Any, Any, None]:
    """A file with no queue tables opens empty (and is marked done, its
    search index too)."""
    store = sqlite_store(tmp_path / "new.sqlite3")
    yield store.open()
    assert (yield store.load_live()) == []
    done = yield store._writer.run(lambda db: db.execute(
        "SELECT name FROM wsdaemon_migrations ORDER BY name").fetchall())
    assert done == [(QUEUE_TAKE_OVER,), (SEARCH_INDEX,)]
    yield store.close()


@pytest_twisted.inlineCallbacks
def test_what_a_bot_owes_comes_back(make_store: Make) -> Generator[Any, Any, None]:
    """A bot's episode with delayed messages and a handoff owed (bot_due,
    bot_handoff) comes back as committed, after a reopen too, among the
    live ones (so a restarted daemon hands it over when it is overdue);
    one that owes nothing (the operators') comes back without."""
    desk = Desk(fallback_after=0)
    made = commits(
        desk,
        VisitorMessage(ROUTE, "v1", "I want a refund", bot=True),
        BotPending(ROUTE, "v1", 1234.5, "refund \u202e request"),
        VisitorMessage(ROUTE, "v2", "hello"),
    )
    store = make_store()
    yield store.open()
    for commit in made:
        yield store.commit(commit)
    yield store.close()
    store = make_store()
    yield store.open()
    live = {c.visitor: c for c in (yield store.load_live())}
    assert (live["v1"].bot_due, live["v1"].bot_handoff) == (1234.5, "refund \u202e request")
    assert (live["v2"].bot_due, live["v2"].bot_handoff) == (None, None)
    for conversation in desk.inbox.conversations():
        assert (yield store.load(conversation.conversation_id)) == stored_form(conversation)
    yield store.close()
