"""
The values of the sections that configure services: C{[operator]} (the
operator queue and its channel) and C{[broker]} (Redis).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from wsdaemon.conversations.settings import ConversationSettings

__all__ = ["MAX_PAGE", "BrokerSettings", "OperatorSettings"]

MiB = 1024 * 1024
#: The most items (or lines) one page of the operator protocol may ask for.
MAX_PAGE = 1000


@dataclass(frozen=True)
class OperatorSettings:
    """
    The C{[operator]} section.

    @ivar tokens: secret token -> operator name.
    @ivar fallback_after: seconds without an answer before the fallback
        message is sent; 0 never.
    @ivar max_open_per_client: open items one client may have; more are
        refused (the client is told), until an operator answers.
    @ivar max_open_per_route: open items from one route.
    @ivar max_open_total: open items in all.
    @ivar max_item_size: the longest client message (UTF-8 bytes) that is
        queued on an operator route; longer ones are refused.
    @ivar max_message_size: the operator channel's own limit on one
        message either way (independent of the client routes').
    @ivar max_outbound_buffer: bytes an operator that stops reading may
        leave waiting before it is cut off.
    @ivar page_size: items (or transcript lines) per page by default.
    @ivar preview_chars: texts longer than this are shown shortened, with
        the whole text fetched on request.
    @ivar model: C{conversations} (the default: one conversation per
        visitor, routed to a team) or C{queue} (items, as before;
        deprecated).
    @ivar conversations: the conversation core's settings (routing,
        notices, caps), read from the same section.
    @ivar display_names: operator name -> the name visitors see.
    @ivar canned_path: the canned replies file, or None.
    """

    store_path: Path
    tokens: Mapping[str, str] = field(default_factory=dict)
    path: str = "/operator"
    console_path: str = "/console"
    lease: float = 120.0
    fallback_after: float = 300.0
    fallback_message: str = (
        "Sorry, no operator could answer yet. We will reply here as soon as one does."
    )
    fallback_when_offline: bool = True
    keep_after_fallback: bool = True
    ack_message: str = "Thanks! Your message is number {position} in the queue."
    max_open_per_client: int = 20
    max_open_per_route: int = 50_000
    max_open_total: int = 100_000
    max_item_size: int = 64 * 1024
    max_message_size: int = 4 * MiB
    max_outbound_buffer: int = 4 * MiB
    page_size: int = 100
    preview_chars: int = 500
    model: str = "conversations"
    conversations: ConversationSettings = field(default_factory=ConversationSettings)
    display_names: Mapping[str, str] = field(default_factory=dict)
    canned_path: Path | None = None


@dataclass(frozen=True)
class BrokerSettings:
    """
    The C{[broker]} section when it selects Redis.

    @ivar prefix: prepended to every key, so several services can share one
        Redis.
    @ivar timeout: seconds a call may take before it fails.
    @ivar heartbeat: seconds between a daemon's heartbeats; a daemon silent
        for three heartbeats counts as gone (its operators, its clients).
    @ivar sweep_interval: seconds between checks for expired leases and
        due fallbacks (every daemon checks; each item is handled once).
    @ivar daemon_id: this daemon's name among the others; empty: the
        assembly makes one up (host, process, a random part).
    """

    url: str
    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    password: str | None = None
    prefix: str = "wsdaemon:"
    timeout: float = 5.0
    heartbeat: float = 2.0
    sweep_interval: float = 1.0
    daemon_id: str = ""
