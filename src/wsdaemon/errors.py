"""
Errors that cross layers: raised below, caught by the HTTP surfaces and the
operator channel.
"""

from __future__ import annotations

__all__ = ["BrokerOutcomeUnknown", "BrokerUnavailable"]


class BrokerUnavailable(Exception):  # noqa: N818 - says what happened
    """
    Redis could not take the call: it was not reachable (the call was never
    sent), or it refused it for now (loading its data, busy running a
    script). The call was not done.
    """


class BrokerOutcomeUnknown(BrokerUnavailable):
    """
    The call was sent, but no answer came back (the connection broke, or
    Redis did not answer in time): it may or may not have been done (a
    script is atomic: entirely or not at all). Whoever tells a user must
    not say it failed.
    """
