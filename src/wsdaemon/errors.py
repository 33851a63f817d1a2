"""
Errors that cross layers: raised below, caught by the HTTP surfaces and the
operator channel.
"""

from __future__ import annotations

__all__ = ["BrokerUnavailable"]


class BrokerUnavailable(Exception):  # noqa: N818 - says what happened
    """
    Redis did not answer in time; the operation may or may not have been
    done (a script is atomic: it was done entirely or not at all).
    """
