"""
One SQLite connection, used only by one thread, writing in group commits.

Work is done in the order it was asked for; what arrives while a commit is
under way goes into the next transaction (one fsync for many), each piece
in a savepoint of its own, so one that fails is undone alone. A Deferred
fires only once its transaction is committed (C{synchronous=FULL}).

The conversations' SQLite store (L{wsdaemon.support.store}) writes through
it.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from threading import Thread
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

__all__ = ["SQLiteWriter", "StoreThreadPool", "private"]

T = TypeVar("T")


class _StoreThread(Thread):
    """A daemon thread: see L{StoreThreadPool}."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.daemon = True


class StoreThreadPool(ThreadPool):
    """
    A store's threads, which do not keep the process alive: a store left
    open (a test that failed before closing it, a start that failed half
    way) no longer makes the interpreter wait for its idle thread forever
    at exit. The daemon closes its stores when it stops, as before; a write
    cut short by an exit is a transaction SQLite rolls back on the next
    open, as after a crash.
    """

    threadFactory = _StoreThread


class SQLiteWriter:
    """
    @param path: the database file (created, with its directory, if missing;
        made readable by the daemon's user only).
    @param reactor: for handing results back to the reactor thread.
    """

    def __init__(self, path: Path, reactor: Any, name: str) -> None:
        self.path = path
        self._reactor = reactor
        self._pool = StoreThreadPool(minthreads=1, maxthreads=1, name=name)
        self._db: sqlite3.Connection | None = None
        self._pending: list[tuple[Callable[[sqlite3.Connection], Any], Deferred[Any]]] = []
        self._committing = False

    def open(self, prepare: Callable[[sqlite3.Connection], None]) -> Deferred[None]:
        """Connect (WAL, FULL) and run C{prepare} (schema, migrations) on the thread."""
        self._pool.start()

        def connect() -> None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            private(self.path)
            db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=5000")
            db.isolation_level = "DEFERRED"  # transactions managed by `with db`
            prepare(db)
            self._db = db

        return deferToThreadPool(self._reactor, self._pool, connect)

    def close(self) -> Deferred[None]:
        def disconnect() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        def stop_pool(result: Any) -> Any:
            self._pool.stop()
            return result

        d: Deferred[Any] = deferToThreadPool(self._reactor, self._pool, disconnect)
        d.addBoth(stop_pool)
        return d

    def run(self, work: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        """C{work(db)} in the next transaction: its result once committed."""
        d: Deferred[T] = Deferred()
        self._pending.append((work, d))
        if not self._committing:
            self._commit_next()
        return d

    def _commit_next(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            self._committing = False
            return
        self._committing = True
        works = [work for work, _ in batch]
        done: Deferred[list[tuple[bool, Any]]] = deferToThreadPool(
            self._reactor, self._pool, self._execute, works)

        def deliver(outcomes: list[tuple[bool, Any]]) -> None:
            for (_, d), (ok, value) in zip(batch, outcomes, strict=True):
                if ok:
                    d.callback(value)
                else:
                    d.errback(value)

        def commit_failed(failure: Failure) -> None:
            for _, d in batch:
                d.errback(failure)

        done.addCallbacks(deliver, commit_failed)
        done.addBoth(lambda _: self._commit_next())

    def _execute(self, works: list[Callable[[sqlite3.Connection], Any]]) -> list[tuple[bool, Any]]:
        db = self._db
        assert db is not None, "store is not open"
        outcomes: list[tuple[bool, Any]] = []
        with db:  # one transaction: one fsync, or rolled back on error
            if not db.in_transaction:
                db.execute("BEGIN")  # or each SAVEPOINT would commit on its own
            for work in works:
                db.execute("SAVEPOINT work")
                try:
                    outcomes.append((True, work(db)))
                except Exception as e:
                    db.execute("ROLLBACK TO work")
                    outcomes.append((False, e))
                db.execute("RELEASE work")
        return outcomes


def private(path: Path) -> None:
    """
    The database file (and its WAL and SHM files) readable by the daemon's
    user only, whatever the umask: every conversation is in it.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm"):
        companion = path.with_name(path.name + suffix)
        if companion.exists() and companion.stat().st_mode & 0o077:
            companion.chmod(0o600)
