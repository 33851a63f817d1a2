"""
Recordings of proxied conversations: one JSON object per line.

    {"event": "open", "conversation": "9f0c...", "time": 1795..., "path": "/live",
     "subprotocol": "v2", "upstream": "ws://..."}
    {"event": "message", "conversation": "9f0c...", "at": 0.125, "from": "client",
     "type": "text", "text": "hello"}
    {"event": "message", "conversation": "9f0c...", "at": 0.180, "from": "server",
     "type": "binary", "base64": "AAEC"}
    {"event": "close", "conversation": "9f0c...", "at": 2.5, "by": "server",
     "code": 1000, "reason": ""}

A conversation is named by its session id (the one the daemon's log and
journal show), so conversations never share a name, even when several
workers append to one file. C{at} is seconds since the conversation opened;
C{by} is C{client}, C{server} (the upstream) or C{proxy} (the daemon closed
both sides, e.g. an upstream message over the route's limits).

A file holds conversations, so it is created 0600 (and made 0600 if others
could read it), like the operator store. Files are bounded in bytes: an
event that would take the file past C{max_bytes} is not written, nor is
anything after it (logged once); a message that cannot fit is refused
before it is encoded. Each event is one C{write} on a file opened for
appending, under an exclusive C{flock}, so that workers sharing the file
neither interleave their lines nor pass the bound together.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from twisted.logger import Logger

__all__ = ["Conversation", "Recorder", "read_recording"]

_log = Logger(namespace="wsdaemon.proxy")

#: Bytes of a message event besides its data, at least (its keys and values).
_EVENT_OVERHEAD = 80


class Recorder:
    """
    Appends conversations to one file.

    @param clock: the time of each event.
    """

    def __init__(self, path: Path, max_bytes: int, clock: Callable[[], float]) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._clock = clock
        self._fd: int | None = None
        #: The file's size when last seen: it only grows, so a lower bound.
        self._seen = path.stat().st_size if path.exists() else 0
        self._stopped = False

    def _fits(self, least: int) -> bool:
        """
        @param least: the fewest bytes the next event can take.
        @return: whether it may fit; if not, the recording stops.
        """
        if self._stopped:
            return False
        if self._seen + least > self.max_bytes:
            self._stop()
            return False
        return True

    def _stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            _log.warn("recording {path} reached {limit} bytes (record_max_bytes): not "
                      "recording more", path=str(self.path), limit=self.max_bytes)

    def _write(self, event: dict[str, Any]) -> None:
        line = (json.dumps(event, ensure_ascii=False) + "\n").encode("utf-8")
        if not self._fits(len(line)):
            return
        try:
            self._append(line)
        except OSError as e:
            self._stopped = True
            _log.error("recording {path} cannot be written ({error}): not recording more",
                       path=str(self.path), error=e.strerror or str(e))

    def _append(self, line: bytes) -> None:
        fd = self._fd
        if fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                         0o600)
            self._fd = fd
            if os.fstat(fd).st_mode & 0o077:
                os.fchmod(fd, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            self._seen = os.fstat(fd).st_size
            if self._seen + len(line) > self.max_bytes:
                self._stop()
                return
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
            self._seen += len(line)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def conversation(self, path: str, subprotocol: str | None, upstream: str,
                     session_id: str | None = None) -> Conversation:
        """
        @param session_id: the connection's session, which names the
            conversation (a new unique name if None).
        """
        started = self._clock()
        name = session_id or uuid.uuid4().hex
        self._write({"event": "open", "conversation": name, "time": started, "path": path,
                     "subprotocol": subprotocol, "upstream": upstream})
        return Conversation(self, name, started)

    def flush(self) -> None:
        """
        Nothing to do: every event is written when it happens.
        """

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Conversation:
    """
    One proxied connection's events.
    """

    def __init__(self, recorder: Recorder, name: str, started: float) -> None:
        self._recorder = recorder
        self.name = name
        self._started = started

    def _at(self) -> float:
        return round(self._recorder._clock() - self._started, 6)

    def message(self, sender: str, data: str | bytes) -> None:
        recorder = self._recorder
        # The fewest bytes its line can take, known before encoding: base64's
        # length, or one byte per character.
        least = _EVENT_OVERHEAD + (
            (len(data) + 2) // 3 * 4 if isinstance(data, bytes) else len(data))
        if not recorder._fits(least):
            return
        event: dict[str, Any] = {"event": "message", "conversation": self.name,
                                 "at": self._at(), "from": sender}
        if isinstance(data, bytes):
            event.update(type="binary", base64=base64.b64encode(data).decode("ascii"))
        else:
            event.update(type="text", text=data)
        recorder._write(event)

    def closed(self, by: str, code: int | None, reason: str) -> None:
        self._recorder._write({"event": "close", "conversation": self.name, "at": self._at(),
                               "by": by, "code": code, "reason": reason})


def read_recording(path: Path) -> Iterator[dict[str, Any]]:
    """
    @return: the events of a recording, in order.
    @raise ValueError: naming the line that is not a recorded event.
    """
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError as e:
                raise ValueError(f"{path}:{number}: not JSON ({e})") from None
            if not isinstance(event, dict) or event.get("event") not in (
                    "open", "message", "close") or "conversation" not in event:
                raise ValueError(f"{path}:{number}: not a recorded event")
            yield event
