"""
The item queue is deprecated (issue 22): chosen explicitly it still runs,
and says once, as it starts, that it will be removed and what switching to
conversations does to its store.
"""

from __future__ import annotations

from pathlib import Path

from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent

from wsdaemon.strategies.operator.deprecation import QUEUE_DEPRECATED
from wsdaemon.strategies.operator.memory import MemoryStore
from wsdaemon.strategies.operator.queue import OperatorQueue, OperatorSettings


def test_the_queue_warns_once_as_it_starts() -> None:
    """One warning, when the queue starts (not when it is built), naming the
    store the take-over will read."""
    settings = OperatorSettings(store_path=Path("/srv/wsdaemon/queue.sqlite3"), model="queue")
    store = MemoryStore()
    with capturedLogs() as events:
        queue = OperatorQueue(settings, store, Clock())
        assert not [e for e in events if e.get("log_format") == QUEUE_DEPRECATED]
        queue.start()
        assert queue.started
        queue.when_started()
    warnings = [e for e in events if e.get("log_format") == QUEUE_DEPRECATED]
    assert len(warnings) == 1
    [warning] = warnings
    assert warning["log_level"] == LogLevel.warn
    text = formatEvent(warning)
    assert text.startswith("[operator] model = queue is deprecated and will be removed: "
                           "set model = conversations"), text
    assert "the SQLite file /srv/wsdaemon/queue.sqlite3" in text
    assert "become conversations, once" in text
