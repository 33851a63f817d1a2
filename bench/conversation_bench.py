"""
Conversations at a support team's scale (issue 22, item 7), run by hand:

    python bench/conversation_bench.py [--conversations 100000] [--messages 10]

Fills a SQLite conversation store with --conversations open conversations
of --messages messages each (100,000 x 10 = 1,000,000 messages), then, on
the real reactor and the real store (its writer thread, group commit), and
against an empty store in the same run (the baseline):

- start: opening the store and loading the live conversations into the
  driver (time, RSS growth);
- the first page an operator is shown (the 100 longest-waiting
  conversations, from the inbox's queue);
- a visitor's resume page (100 messages after 0) and an operator's history
  page (the newest 100) of random conversations, from the store;
- a new visitor's message and an operator's reply, each from submit to
  committed and carried out (p50/p99), one at a time and 200 at once.

Prints the figures and the ratios full/empty; bench/RESULTS.md keeps them.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
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
from zope.interface import implementer  # noqa: E402

from wsdaemon.conversations import (  # noqa: E402
    Availability,
    ConversationSettings,
    Inbox,
    OperatorAvailability,
    OperatorReply,
    VisitorMessage,
)
from wsdaemon.conversations.model import (  # noqa: E402
    Author,
    Conversation,
    Message,
    Status,
    conversation_id_for,
)
from wsdaemon.support.driver import ConversationDriver  # noqa: E402
from wsdaemon.support.metrics import ConversationMeasures  # noqa: E402
from wsdaemon.support.ports import IOperatorPort, IVisitorPort  # noqa: E402
from wsdaemon.support.schema import SCHEMA, insert_conversation, insert_message  # noqa: E402
from wsdaemon.support.store import SQLiteConversationStore  # noqa: E402

ROUTE = "/support"


@implementer(IVisitorPort, IOperatorPort)
class Counting:
    """Ports that count what they are given (no sockets: the store is measured)."""

    def __init__(self) -> None:
        self.calls = 0

    def deliver(self, effect: Any) -> bool:
        self.calls += 1
        return False

    def tell(self, effect: Any) -> None:
        self.calls += 1

    def announce(self, effect: Any) -> None:
        self.calls += 1

    def notify(self, effect: Any) -> None:
        self.calls += 1

    def team_changed(self, effect: Any) -> None:
        self.calls += 1


def fill(path: Path, conversations: int, per: int, now: float) -> None:
    """Open conversations, each waiting on its last (visitor) message."""
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    db.execute("CREATE TABLE IF NOT EXISTS wsdaemon_migrations (name TEXT PRIMARY KEY)")
    with db:
        for n in range(conversations):
            visitor = f"visitor-{n:07d}"
            key = conversation_id_for(ROUTE, visitor)
            opened = now - conversations + n
            for seq in range(1, per + 1):
                author = Author.VISITOR if seq % 2 or seq == per else Author.OPERATOR
                insert_message(db, Message(key, seq, author, f"message {seq} of {visitor}",
                                           opened + seq, "alice" if author is Author.OPERATOR
                                           else None))
            insert_conversation(db, Conversation(
                conversation_id=key, route=ROUTE, visitor=visitor, created_at=opened,
                opened_at=opened, last_activity_at=opened + per, status=Status.OPEN,
                version=1, last_seq=per, waiting_since=opened + per, unanswered=1,
                delivered_upto=per, recent_visitor_seqs=(per,), ack_sent=True,
                preview=f"message {per} of {visitor}"))
    db.close()


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return (statistics.median(ordered) * 1000,
            ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000)


async def measure(reactor: Any, path: Path, label: str, sample: list[str]) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    ports = Counting()
    before = rss_mib()
    started = time.perf_counter()
    store = SQLiteConversationStore(path, reactor)
    # Caps above the fill (the default max_open_total is 100,000: a full
    # store would refuse the new visitors measured below).
    settings = ConversationSettings(fallback_after=0, max_open_total=10_000_000,
                                    max_open_per_route=10_000_000)
    driver = ConversationDriver(store, Inbox(settings), reactor,
                                ports, ports, ConversationMeasures())
    await driver.start()
    figures["start_s"] = time.perf_counter() - started
    figures["live"] = len(driver.inbox)
    figures["rss_growth_mib"] = rss_mib() - before
    await driver.submit(OperatorAvailability("alice", Availability.ONLINE))

    started = time.perf_counter()
    for _ in range(100):
        page = driver.inbox.waiting(100)
    figures["first_page_ms"] = (time.perf_counter() - started) * 1000 / 100
    figures["first_page_len"] = len(page)

    keys = [conversation_id_for(ROUTE, v) for v in sample] if sample else []
    for name, read in (("resume", lambda k: store.messages(k, 0, 100)),
                       ("history", lambda k: store.history(k, None, 100))):
        times = []
        for key in keys:
            started = time.perf_counter()
            await read(key)
            times.append(time.perf_counter() - started)
        figures[name] = percentiles(times) if times else None

    # One at a time, then 200 at once: a new visitor writes; alice answers.
    for mode, width in (("serial", 1), ("burst", 200)):
        visitor_times: list[float] = []
        reply_times: list[float] = []
        for round_ in range(2 if mode == "burst" else 200):
            names = [f"new-{label}-{mode}-{round_}-{i}" for i in range(width)]

            async def timed(event: Any, into: list[float]) -> None:
                started = time.perf_counter()
                await driver.submit(event)
                into.append(time.perf_counter() - started)

            await defer.gatherResults([
                defer.Deferred.fromCoroutine(timed(VisitorMessage(ROUTE, n, "Hello?", None),
                                                   visitor_times)) for n in names])
            await defer.gatherResults([
                defer.Deferred.fromCoroutine(timed(OperatorReply(
                    conversation_id_for(ROUTE, n), "alice", "Hi!", "Alice"), reply_times))
                for n in names])
        figures[f"visitor_{mode}"] = percentiles(visitor_times)
        figures[f"reply_{mode}"] = percentiles(reply_times)
    await driver.stop()
    figures["rss_mib"] = rss_mib()
    return figures


def report(empty: dict[str, Any], full: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"\n{args.conversations:,} open conversations x {args.messages} messages "
          f"({args.conversations * args.messages:,} messages) vs an empty store, same run")
    print(f"start (open + load live): {full['start_s']:.2f} s for {full['live']:,} live "
          f"(empty: {empty['start_s'] * 1000:.0f} ms); RSS growth {full['rss_growth_mib']:.0f} MiB")
    print(f"operator's first page (100 waiting): {full['first_page_ms']:.3f} ms "
          f"(empty: {empty['first_page_ms']:.3f} ms)")
    for name in ("resume", "history"):
        p50, p99 = full[name]
        print(f"{name} page of 100 from the store: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    for key, what in (("visitor_serial", "visitor message, one at a time"),
                      ("reply_serial", "operator reply, one at a time"),
                      ("visitor_burst", "visitor message, 200 at once"),
                      ("reply_burst", "operator reply, 200 at once")):
        (fp50, fp99), (ep50, ep99) = full[key], empty[key]
        print(f"{what}: p50 {fp50:.2f} ms / p99 {fp99:.2f} ms "
              f"(empty {ep50:.2f} / {ep99:.2f}; ratio {fp50 / ep50:.2f}x / {fp99 / ep99:.2f}x)")
    print(f"peak RSS {full['rss_mib']:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=10)
    parser.add_argument("--samples", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        empty_path, full_path = Path(tmp, "empty.sqlite3"), Path(tmp, "full.sqlite3")
        started = time.perf_counter()
        fill(full_path, args.conversations, args.messages, time.time())
        print(f"filled {args.conversations:,} conversations in "
              f"{time.perf_counter() - started:.1f} s ({os.path.getsize(full_path) >> 20} MiB)")
        rng = random.Random(7)
        sample = [f"visitor-{rng.randrange(args.conversations):07d}"
                  for _ in range(args.samples)]

        async def run(reactor: Any) -> None:
            empty = await measure(reactor, empty_path, "empty", [])
            empty["resume"] = empty["history"] = None
            full = await measure(reactor, full_path, "full", sample)
            report(empty, full, args)

        task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor)))


if __name__ == "__main__":
    main()
