"""
What the operator queue refuses, and why.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["QueueError", "QueueRefused", "check_sendable", "send_limit", "too_long"]


class QueueError(Exception):
    """
    An operator's request cannot be done; C{str()} says why.
    """


class QueueRefused(Exception):  # noqa: N818 - a refusal, not a failure
    """
    A client message was not accepted (over one of the queue's caps).

    @ivar why: C{too_long}, C{client}, C{route} or C{total}: which cap.
    @ivar limit: the cap's value.
    """

    def __init__(self, why: str, limit: int) -> None:
        super().__init__(f"over the queue's {why} limit ({limit})")
        self.why = why
        self.limit = limit


def check_sendable(text: str, limit: int, route: str) -> None:
    """
    Refuse, before anything is stored, a text that could never be written to
    a client of C{route}: one holding a lone surrogate (not valid Unicode,
    so not valid UTF-8 either) or bigger than the route's message limit.

    @raise QueueError: saying why.
    """
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as e:
        raise QueueError(
            f"the text holds a lone surrogate (U+{ord(text[e.start]):04X} at character "
            f"{e.start}): it is not valid Unicode and cannot be sent") from None
    if limit and size > limit:
        where = f"route {route}" if route else "the client's route"
        raise QueueError(f"the text is {size} bytes; {where} accepts messages of at most "
                         f"{limit} bytes")


def send_limit(limits: Mapping[str, int], route: str) -> int:
    """
    @param limits: route -> largest message its clients accept; C{""} for a
        client whose route is unknown.
    @return: the limit for C{route} (0: none known).
    """
    return limits.get(route, limits.get("", 0))


def too_long(text: str, limit: int) -> bool:
    """
    @return: whether C{text} is more than C{limit} UTF-8 bytes (0: no
        limit), encoding it only when it may be (a character is at most 4).
    """
    return bool(limit) and len(text) * 4 > limit \
        and len(text.encode("utf-8", "surrogatepass")) > limit
