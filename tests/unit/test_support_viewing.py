"""
Who views which conversation through the other daemons
(support/viewing.py, RemoteViewers): one conversation per connection,
found by conversation, dropped with its daemon or its daemon's earlier
run, replaced by a snapshot, bounded.
"""

from __future__ import annotations

from wsdaemon.support.viewing import MAX_NAME, RemoteViewers


def test_one_conversation_per_connection() -> None:
    """A connection opening another conversation stops viewing the first;
    each change names the conversations whose viewers moved."""
    viewers = RemoteViewers()
    assert viewers.view("a", "r1", "c1", "alice", "x") == {"x"}
    assert viewers.view("a", "r1", "c2", "alice", "x") == {"x"}
    assert viewers.view("b", "r9", "c1", "bob", "x") == {"x"}
    assert viewers.operators("x") == {"alice", "bob"}
    assert viewers.view("a", "r1", "c1", "alice", "y") == {"x", "y"}
    assert viewers.operators("x") == {"alice", "bob"}  # alice's other connection
    assert viewers.view("a", "r1", "c2", "alice", None) == {"x"}
    assert viewers.operators("x") == {"bob"} and viewers.operators("y") == {"alice"}
    assert viewers.view("a", "r1", "c2", "alice", None) == set()
    assert len(viewers) == 2


def test_a_gone_daemon_and_an_earlier_run_view_nothing() -> None:
    """Forgetting a daemon drops its connections only; news from a new run
    of a daemon drops what its earlier run's connections viewed."""
    viewers = RemoteViewers()
    viewers.view("a", "r1", "c1", "alice", "x")
    viewers.view("b", "r2", "c1", "bob", "y")
    assert viewers.forget("b") == {"y"}
    assert viewers.operators("y") == set() and viewers.operators("x") == {"alice"}
    assert viewers.view("a", "r3", "c7", "carol", "z") == {"x", "z"}
    assert viewers.operators("x") == set() and viewers.operators("z") == {"carol"}
    assert viewers.forget("nobody") == set()


def test_a_snapshot_replaces_a_daemons_state() -> None:
    viewers = RemoteViewers()
    viewers.view("a", "r1", "c1", "alice", "x")
    viewers.view("b", "r2", "c1", "bob", "x")
    changed = viewers.replace("a", "r1", [("c2", "alice", "y"), ("c3", "dave", "y")])
    assert changed == {"x", "y"}
    assert viewers.operators("x") == {"bob"} and viewers.operators("y") == {"alice", "dave"}


def test_bounded_and_malformed_news_is_not_taken() -> None:
    """At the bound, more connections are not remembered (a closing one
    still is dropped); names too long or not text are not taken."""
    viewers = RemoteViewers(max_entries=2)
    viewers.view("a", "r", "c1", "alice", "x")
    viewers.view("a", "r", "c2", "bob", "x")
    assert viewers.view("a", "r", "c3", "carol", "x") == set()
    assert viewers.operators("x") == {"alice", "bob"}
    assert viewers.view("a", "r", "c1", "alice", None) == {"x"}
    assert viewers.view("a", "r", "c3", "carol", "x") == {"x"}
    assert viewers.view("a", "r", "c4", "e" * (MAX_NAME + 1), "y") == set()
    assert viewers.view("a", "r", "c5", "erin", 42) == set()  # type: ignore[arg-type]
    assert viewers.operators("y") == set() and len(viewers) == 2
