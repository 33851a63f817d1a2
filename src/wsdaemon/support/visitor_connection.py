"""
One visitor connection as the conversation side writes to it
(L{VisitorConnection}): each message once and in C{seq} order, what is
delivered while a page is read held and written after it (without what
the page held), the hold bounded, nothing written bigger than the
connection takes.

Why holding works: a message is committed before the driver delivers it,
and a page read starts after the connection begins holding, so every
message is in the page, in what was held, or both. Past C{max_buffered}
held frames the held messages are dropped: a structured connection is
then I{behind} (it gets no live message until a C{history} page reaches
the end), a plain one is read again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from twisted.logger import Logger

from wsdaemon.conversations.model import Message
from wsdaemon.interfaces import ISession
from wsdaemon.support.visitor_protocol import message_frame

__all__ = ["DEFAULT_MAX_BUFFERED", "Mode", "VisitorConnection"]

#: Frames held for one connection while its page is read.
DEFAULT_MAX_BUFFERED = 256

_log = Logger(namespace="wsdaemon.support.visitors")


class Mode(StrEnum):
    """How a connection speaks, chosen at its handshake: text frames or C{wsdaemon.chat.v1}."""

    PLAIN = "plain"
    STRUCTURED = "structured"


@dataclass(eq=False)
class _Held:
    """A frame held while a page is read: a message (C{seq}) or anything else."""

    frame: str
    seq: int | None = None


@dataclass(eq=False)
class VisitorConnection:
    """
    One open connection of a visitor.

    @ivar sent: the highest C{seq} written to it as a message (or that the
        client said it has).
    @ivar syncing: a page is being read: what is delivered meanwhile is held.
    @ivar behind: (structured) messages were left out: it is not written
        live messages until a C{history} page reaches the end.
    @ivar told_available: the availability it was last told (None: not yet).
    @ivar max_bytes: the largest message it takes (its route's
        C{max_message_size}; 0: any).
    @ivar max_buffered: frames held at most while a page is read.
    @ivar had: (plain, daemons sharing the store) what was recorded
        delivered when its catch-up began: the visitor has it, through
        another connection (maybe on another daemon, which it left for this
        one); a live message up to it, held while the page was read (the
        other daemon's news of it came late), is not written again.
    """

    session: ISession
    route: str
    visitor: str
    mode: Mode
    max_bytes: int = 0
    sent: int = 0
    syncing: bool = True
    behind: bool = False
    overflowed: bool = False
    held: list[_Held] = field(default_factory=list)
    told_available: bool | None = None
    max_buffered: int = DEFAULT_MAX_BUFFERED
    had: int = 0

    @property
    def structured(self) -> bool:
        return self.mode is Mode.STRUCTURED

    def resync(self) -> None:
        """A page is about to be read for it: hold what is delivered meanwhile."""
        if not self.syncing:
            self.syncing = True
            self.overflowed = False
            self.held.clear()

    def synced(self, start: int, end: int, more: bool) -> bool:
        """
        Its page (messages after C{start} up to C{end}) was written: write
        what was held meanwhile that the page did not hold, in order.

        A structured connection skips held messages up to C{end} (the page,
        or what the client said it has); a plain one only those the page
        wrote (after C{start} up to C{end}): one delivered to another tab
        before is still new to this one.

        @param more: the page left messages out (structured: the client
            pages on; it is written no live message until a page reaches
            the end).
        @return: whether it is up to date (False: plain, messages were
            dropped from its buffer: read again after C{sent}).
        """
        self.sent = max(self.sent, end)
        held, self.held = self.held, []
        overflowed, self.overflowed = self.overflowed, False
        self.syncing = False
        if self.structured:
            self.behind = more or overflowed
        for entry in held:
            if entry.seq is None:
                self._send(entry.frame)
                continue
            if self.behind:
                continue
            if entry.seq <= self.sent and (self.structured or entry.seq > start):
                continue
            if entry.seq <= self.had:
                continue
            self._send(entry.frame)
            self.sent = max(self.sent, entry.seq)
        if not self.structured and overflowed:
            self.syncing = True
            return False
        return True

    def send(self, frame: str) -> bool:
        """
        Write a frame now (a page, an answer), past what is held: one it
        cannot take is not written (logged), a failure is logged.

        @return: whether it was written.
        """
        return self._send(frame)

    def write(self, frame: str, seq: int | None, *, keep: bool = False) -> bool:
        """
        Write (or hold, while a page is read) one frame: a message (C{seq}),
        or another frame (an acknowledgement, C{keep}: held past the bound,
        which the pending bound limits; a signal: dropped past it).

        @return: whether it was written now.
        """
        if self.syncing:
            full = len(self.held) >= self.max_buffered
            if seq is not None:
                if full or self.overflowed:
                    self.overflowed = True
                    return False
            elif full and not keep:
                return False
            self.held.append(_Held(frame, seq))
            return False
        if seq is not None:
            if self.behind or seq <= self.sent:
                return False
            self.sent = seq
        return self._send(frame)

    def fitted(self, frame: str, message: Message) -> str:
        """The message's frame as it takes it (cut when too big)."""
        if self.max_bytes and len(frame) * 4 > self.max_bytes and \
                len(frame.encode("utf-8")) > self.max_bytes:
            return message_frame(message, self.max_bytes)
        return frame

    def _send(self, frame: str) -> bool:
        """
        Write one frame; one it cannot take (bigger than its route's
        max_message_size: a plain message) is not written, and said.
        """
        if self.max_bytes and len(frame) * 4 > self.max_bytes and \
                len(frame.encode("utf-8")) > self.max_bytes:
            _log.warn("conversations: a message of {size} bytes is more than {client_id} on "
                      "{route} takes ({limit}): not written", size=len(frame.encode("utf-8")),
                      client_id=self.visitor, route=self.route,
                      limit=self.max_bytes)
            return False
        try:
            return self.session.send(frame)
        except Exception:
            _log.failure("conversations: writing to {client_id} on {route} failed",
                         client_id=self.visitor, route=self.route)
            return False
