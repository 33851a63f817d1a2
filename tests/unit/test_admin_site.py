"""
The admin site runs its timed work on the clock it is given: idempotency
keys expire and journal queries step on it, not on the global reactor.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry
from twisted.internet.task import Clock

from wsdaemon.server.admin import AdminSite, PushCounters


def test_journal_queries_and_idempotency_use_the_injected_clock() -> None:
    """Both collaborators hold the clock passed to the site."""
    clock = Clock()
    daemon: Any = object()
    site = AdminSite(daemon, {}, 1024, CollectorRegistry(), PushCounters(), clock=clock)
    journal = site.resource.getStaticEntity(b"journal")
    assert journal.queries.clock is clock
    assert site.pushes_done._clock is clock
