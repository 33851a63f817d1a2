"""
Search over conversations at a support team's scale (issue 22, item 4), run by hand:

    python bench/search_bench.py [--conversations 100000] [--messages 10]

Fills a SQLite conversation store made without the search index (as an
older release left it) with --conversations conversations (half of them
resolved, half of the visitors identified with an email) of --messages
messages each (100,000 x 10 = 1,000,000 messages) of varied text (words of
a 5,000-word vocabulary drawn with a Zipf-like skew, an order number in
one message out of ten), then, on the real reactor and the real store:

- the index built at open: time, and the file's growth;
- searches through the store's own search thread (p50/p99 of 200 each):
  an order number (one conversation), a rare word, a common word (many
  matches: the row bound), two words, an email, nothing found;
- a visitor's message from submit to committed (the driver, one at a
  time: new visitors and visitors writing again), with the index written in
  the commit and without it, in alternating rounds of the same run.

Prints the figures; bench/RESULTS.md keeps them.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from twisted.internet import defer, task  # noqa: E402

from wsdaemon.conversations import (  # noqa: E402
    ConversationSettings,
    Inbox,
    VisitorMessage,
)
from wsdaemon.conversations.model import (  # noqa: E402
    Author,
    Conversation,
    Message,
    Status,
    conversation_id_for,
)
from wsdaemon.conversations.profile import Profile  # noqa: E402
from wsdaemon.support import store as store_module  # noqa: E402
from wsdaemon.support.driver import ConversationDriver  # noqa: E402
from wsdaemon.support.metrics import ConversationMeasures  # noqa: E402
from wsdaemon.support.schema import SCHEMA, insert_conversation, insert_message  # noqa: E402
from wsdaemon.support.search import SearchQuery  # noqa: E402
from wsdaemon.support.store import SQLiteConversationStore  # noqa: E402

sys.path.insert(0, str(HERE))
from conversation_bench import Counting  # noqa: E402

ROUTE = "/support"
VOCABULARY = 5000


def word(n: int) -> str:
    """A made-up word per number: pronounceable, distinct."""
    syllables = ("ka", "lo", "mi", "re", "tu", "sa", "ne", "po", "vi", "da", "go", "fe")
    out = []
    n += 1
    while n:
        n, r = divmod(n, len(syllables))
        out.append(syllables[r])
    return "".join(out)


def fill(path: Path, conversations: int, per: int, now: float, rng: random.Random) -> None:
    words = [word(n) for n in range(VOCABULARY)]
    weights = list(itertools.accumulate(1 / (n + 1) for n in range(VOCABULARY)))
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    db.execute("CREATE TABLE IF NOT EXISTS wsdaemon_migrations "
               "(name TEXT PRIMARY KEY, done_at REAL NOT NULL)")
    db.execute("INSERT INTO wsdaemon_migrations VALUES ('conversations-from-queue', 0)")
    with db:
        for n in range(conversations):
            visitor = f"visitor-{n:07d}"
            key = conversation_id_for(ROUTE, visitor)
            opened = now - conversations + n
            for seq in range(1, per + 1):
                author = Author.VISITOR if seq % 2 or seq == per else Author.OPERATOR
                text = " ".join(rng.choices(words, cum_weights=weights, k=rng.randint(6, 20)))
                if rng.random() < 0.1:
                    text += f" order A-{rng.randrange(10**6):06d}"
                insert_message(db, Message(key, seq, author, text, opened + seq,
                                           "alice" if author is Author.OPERATOR else None))
            resolved = n % 2 == 0
            insert_conversation(db, Conversation(
                conversation_id=key, route=ROUTE, visitor=visitor, created_at=opened,
                opened_at=opened, last_activity_at=opened + per,
                status=Status.RESOLVED if resolved else Status.OPEN,
                resolved_at=opened + per if resolved else None,
                version=1, last_seq=per, waiting_since=None if resolved else opened + per,
                unanswered=0 if resolved else 1, delivered_upto=per,
                recent_visitor_seqs=(per,), ack_sent=True, preview="...",
                profile=Profile(f"Customer {n}", f"customer{n}@example.com")
                if n % 2 else None))
    db.close()


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return (statistics.median(ordered) * 1000,
            ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000)


def size_mib(path: Path) -> float:
    return sum(os.path.getsize(p) for p in (path, Path(f"{path}-wal"))
               if p.exists()) / 2**20


async def run(reactor: Any, path: Path, args: argparse.Namespace,
              rng: random.Random) -> None:
    before = size_mib(path)
    started = time.perf_counter()
    store = SQLiteConversationStore(path, reactor)
    await store.open()
    built = time.perf_counter() - started
    await store.close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    rows = db.execute("SELECT count(*) FROM conversation_search").fetchone()[0]
    db.close()
    print(f"index built at open: {built:.1f} s for {rows:,} rows; file {before:.0f} MiB -> "
          f"{size_mib(path):.0f} MiB (+{size_mib(path) - before:.0f} MiB)")

    store = SQLiteConversationStore(path, reactor)
    settings = ConversationSettings(fallback_after=0, max_open_total=10_000_000,
                                    max_open_per_route=10_000_000)
    ports = Counting()
    driver = ConversationDriver(store, Inbox(settings), reactor, ports, ports,
                                ConversationMeasures())
    await driver.start()
    n = rng.randrange(args.conversations)
    db = sqlite3.connect(path)
    order = db.execute("SELECT body FROM conversation_messages WHERE body LIKE '%order A-%' "
                       "LIMIT 1").fetchone()[0].rsplit(" ", 1)[1]
    db.close()
    searches = {
        "order number": order,
        "rare word": word(VOCABULARY - 7),
        "common word": word(3),
        "two words": f"{word(40)} {word(900)}",
        "email": f"customer{n | 1}@example.com",
        "nothing": "zzzzqqq",
    }
    for name, text in searches.items():
        times = []
        result = None
        for _ in range(args.samples):
            started = time.perf_counter()
            result = await store.search(SearchQuery.from_request({"text": text, "limit": 50}))
            times.append(time.perf_counter() - started)
        p50, p99 = percentiles(times)
        assert result is not None
        print(f"search {name} ({text!r}): p50 {p50:.2f} ms, p99 {p99:.2f} ms; "
              f"{result.total} conversation(s){' (partial)' if result.partial else ''}")

    real_index = store_module.index_commit
    figures: dict[str, list[float]] = {}
    for round_ in range(args.rounds):
        for indexed in (True, False):
            store_module.index_commit = real_index if indexed else (lambda db, commit: None)
            for kind in ("new", "again"):
                label = f"{'with' if indexed else 'without'} index, {kind} visitor"
                into = figures.setdefault(label, [])
                for i in range(25):
                    visitor = (f"bench-{round_}-{indexed}-{i}" if kind == "new"
                               else f"visitor-{rng.randrange(args.conversations):07d}")
                    text = " ".join(rng.choices([word(k) for k in range(200)], k=12))
                    started = time.perf_counter()
                    await driver.submit(VisitorMessage(ROUTE, visitor, text, None))
                    into.append(time.perf_counter() - started)
    store_module.index_commit = real_index
    for label, times in figures.items():
        p50, p99 = percentiles(times)
        print(f"visitor message, {label}: p50 {p50:.2f} ms, p99 {p99:.2f} ms "
              f"({len(times)} samples)")
    await driver.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=10)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "full.sqlite3")
        started = time.perf_counter()
        fill(path, args.conversations, args.messages, time.time(), rng)
        print(f"filled {args.conversations:,} conversations x {args.messages} messages "
              f"in {time.perf_counter() - started:.1f} s ({size_mib(path):.0f} MiB)")
        task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor, path, args, rng)))


if __name__ == "__main__":
    main()
