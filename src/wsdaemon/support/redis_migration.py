"""
The shared operator queue's keys become conversations, once, the first
time a Redis conversation store opens (docs/conversations.md, section 5),
with the SQLite take-over's rules (L{wsdaemon.support.migration.
conversation_from_queue}: the same mapping, not a copy of it).

Read from the queue's keys (their layout: C{tests/legacy_queue.py}, which
builds them as the retired queue's scripts wrote them), never changed: its open
items (C{open}, C{item:ID}), and each client's thread (C{conv:C},
C{messages}); a message to the client that no daemon has written yet
(C{undelivered:C}, or taken by a daemon and not settled) counts as not
delivered. Written in batches, each batch one script that leaves alone a
conversation already there (so a take-over cut short is finished by the
next start, and never overwrites a conversation committed meanwhile).

Once: the marker key C{c:migrated} says it is done. While one daemon takes
over, the others starting at the same time wait for the marker (a lock key,
C{c:migrating}, that expires: a daemon that died taking over is taken over
from). Unlike SQLite's, the take-over is not one transaction: the old
queue may still run meanwhile, and what it changes during the take-over
is taken as the batches read it.
"""

from __future__ import annotations

import json
import secrets
from collections import defaultdict
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from wsdaemon.client_ids import public_id_of_legacy
from wsdaemon.conversations.effects import Commit
from wsdaemon.conversations.model import Bounds, Conversation, Message, Note
from wsdaemon.support.migration import conversation_from_queue
from wsdaemon.support.redis_scripts import (
    COMMIT,
    READ_HASHES,
    THREADS,
    UNLOCK,
    RedisCalls,
    ScriptRunner,
    write_args,
)

__all__ = ["BATCH", "LOCK_SECONDS", "THREAD_BUDGET", "QueueTakeOver"]

_log = Logger(namespace="wsdaemon.support")

#: Items, message numbers or clients read per call, and conversations
#: written per script: no call carries more.
BATCH = 200
#: Messages read per call at most, however long one client's thread is.
THREAD_BUDGET = 2000
#: Seconds the take-over's lock lasts unless renewed (each batch renews it).
LOCK_SECONDS = 60
#: Seconds between looks at the marker while another daemon takes over.
WAIT_STEP = 0.5

#: (route, public client id) -> (created_at, fallback_sent, text) of each open item.
_OpenItems = dict[tuple[str, str], list[tuple[float, bool, str]]]


class QueueTakeOver:
    """
    One run of the take-over (L{run}), for one store's L{open}.
    """

    def __init__(self, link: RedisCalls, scripts: ScriptRunner, prefix: str,
                 clock: IReactorTime, bounds: Bounds, batch: int = BATCH) -> None:
        self._link = link
        self._scripts = scripts
        self._p = prefix
        self._clock = clock
        self._bounds = bounds
        self._batch = batch
        self._token = secrets.token_hex(8)

    @inlineCallbacks
    def run(self) -> Any:
        """
        @return: a Deferred firing with how many conversations this run
            made (0 when done before, or by another daemon).
        """
        marker, lock = self._p + "c:migrated", self._p + "c:migrating"
        while True:
            if (yield self._link.call("GET", marker)) is not None:
                return 0
            taken = yield self._link.call("SET", lock, self._token, "NX", "EX",
                                          str(LOCK_SECONDS))
            if taken is not None:
                break
            yield deferLater(self._clock, WAIT_STEP, lambda: None)
        made = yield self._take_over()
        yield self._link.call("SET", marker, repr(float(self._clock.seconds())))
        yield self._scripts.run(UNLOCK, self._p, "c:migrating", self._token)
        if made:
            _log.info("conversations: {count} made from the operator queue's keys in Redis",
                      count=made)
        return made

    @inlineCallbacks
    def _take_over(self) -> Any:
        items = yield self._open_items()
        clients = yield self._clients()
        made = 0
        public = sorted(clients)
        for start in range(0, len(public), self._batch):
            chunk = public[start:start + self._batch]
            raw = [client for key in chunk for client in clients[key]]
            rows: dict[tuple[str, str], list[tuple[int, tuple[Any, ...]]]] = defaultdict(list)
            rank = 0
            while raw:
                reply = yield self._scripts.run(THREADS, self._p, THREAD_BUDGET, rank, *raw)
                for thread in reply[2:]:
                    _read_thread(thread, rows)
                stopped_at, rank = int(reply[0]), int(reply[1])
                raw = raw[stopped_at - 1:] if stopped_at else []
                yield self._renew()
            made += yield self._write([
                conversation_from_queue(route, client, [row for _, row in sorted(found)],
                                        _unanswered(items.pop((route, client), [])),
                                        self._bounds)
                for (route, client), found in sorted(rows.items())])
        # Items without messages (none the queue's scripts make, but a
        # store that lost its messages key should keep its waiting clients).
        left = sorted(items.items())
        for start in range(0, len(left), self._batch):
            made += yield self._write([
                conversation_from_queue(route, client, [
                    (route, client, "in", "client", text, at, 1)
                    for at, _, text in sorted(waiting)], _unanswered(waiting), self._bounds)
                for (route, client), waiting in left[start:start + self._batch]])
        return made

    @inlineCallbacks
    def _open_items(self) -> Any:
        """The queue's open items, read a batch at a time in arrival order."""
        found: _OpenItems = defaultdict(list)
        after = "-inf"
        while True:
            page = yield self._link.call("ZRANGEBYSCORE", self._p + "open", after, "+inf",
                                         "WITHSCORES", "LIMIT", "0", str(self._batch))
            if not page:
                return found
            ids = page[0::2]
            after = f"({page[-1]}"
            fields = ("route", "client_id", "created_at", "fallback_sent", "state", "text")
            reply = yield self._scripts.run(READ_HASHES, self._p, len(fields), *fields,
                                            *(f"item:{item_id}" for item_id in ids))
            for route, client, created_at, fallback, state, text in reply:
                if state in ("queued", "claimed") and route is not None:
                    found[(route, public_id_of_legacy(client))].append(
                        (float(created_at), fallback == "1", text or ""))
            yield self._renew()

    @inlineCallbacks
    def _clients(self) -> Any:
        """
        Every client with a thread (C{conv:C}), by its public id: walked
        through the queue's index of every message number, a batch at a time.
        """
        clients: dict[str, set[str]] = defaultdict(set)
        after = "-inf"
        while True:
            seqs = yield self._link.call("ZRANGEBYSCORE", self._p + "conv", after, "+inf",
                                         "LIMIT", "0", str(self._batch))
            if not seqs:
                return {key: sorted(raw) for key, raw in clients.items()}
            after = f"({seqs[-1]}"
            for found in (yield self._link.call("HMGET", self._p + "messages", *seqs)):
                if found is not None:
                    raw = str(json.loads(found)["client_id"])
                    clients[public_id_of_legacy(raw)].add(raw)
            yield self._renew()

    @inlineCallbacks
    def _write(self, made: list[tuple[Conversation, list[Message], list[Note]]]) -> Any:
        if not made:
            return 0
        commit = Commit(tuple(c for c, _, _ in made),
                        tuple(m for _, messages, _ in made for m in messages),
                        tuple(n for _, _, notes in made for n in notes))
        reply = yield self._scripts.run(COMMIT, self._p, *write_args(commit, "migrate", 0))
        yield self._renew()
        return int(reply[1])

    def _renew(self) -> Deferred[Any]:
        return self._link.call("EXPIRE", self._p + "c:migrating", str(LOCK_SECONDS))


def _read_thread(thread: list[Any],
                 rows: dict[tuple[str, str], list[tuple[int, tuple[Any, ...]]]]) -> None:
    """
    One client's part of a L{THREADS} reply into C{rows}: per (route,
    public client), (seq, the take-over's row) of each message.
    """
    client = public_id_of_legacy(str(thread[0]))
    for i in range(1, len(thread), 3):
        data = json.loads(thread[i + 1])
        direction = data["direction"]
        delivered = 0 if direction == "out" and thread[i + 2] == "1" else 1
        rows[(data["route"], client)].append((int(thread[i]), (
            data["route"], client, direction, data["sender"], data["body"], data["at"],
            delivered)))


def _unanswered(items: list[tuple[float, bool, str]]) -> list[tuple[float, bool]]:
    """What L{conversation_from_queue} takes of the open items: oldest first."""
    return [(at, fallback) for at, fallback, _ in sorted(items)]
