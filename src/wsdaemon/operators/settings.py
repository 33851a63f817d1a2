"""
The C{[operator]} section's values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["OperatorSettings"]

MiB = 1024 * 1024


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
