"""
The item queue is deprecated (issue 22): conversations are the default
model, and C{model = queue} is kept only so a running service can switch
when it chooses. Whichever queue starts (SQLite or Redis) says so once, in
the log, with what the switch does to its store.
"""

from __future__ import annotations

from twisted.logger import Logger

__all__ = ["QUEUE_DEPRECATED", "warn_queue_deprecated"]

_log = Logger(namespace="wsdaemon.operators")

#: The warning's text (a log format: C{{store}} is where the queue keeps its
#: items, as the take-over will find them).
QUEUE_DEPRECATED = (
    "[operator] model = queue is deprecated and will be removed: set model = conversations "
    "(or drop the key: conversations are the default). On its first start the conversation "
    "store takes over this queue's store ({store}): open items and transcripts become "
    "conversations, once; the queue's own data is left as it was"
)


def warn_queue_deprecated(store: str) -> None:
    """
    Log the deprecation once, as the queue starts.

    @param store: where the queue keeps its items (the SQLite file, or the
        Redis prefix), shown as the place the take-over reads.
    """
    _log.warn(QUEUE_DEPRECATED, store=store)
