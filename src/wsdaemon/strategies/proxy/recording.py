"""
Recordings of proxied conversations: one JSON object per line.

    {"event": "open", "conversation": "c1", "time": 1795..., "path": "/live",
     "subprotocol": "v2", "upstream": "ws://..."}
    {"event": "message", "conversation": "c1", "at": 0.125, "from": "client",
     "type": "text", "text": "hello"}
    {"event": "message", "conversation": "c1", "at": 0.180, "from": "server",
     "type": "binary", "base64": "AAEC"}
    {"event": "close", "conversation": "c1", "at": 2.5, "by": "server",
     "code": 1000, "reason": ""}

C{at} is seconds since the conversation opened. Files are bounded: past
C{max_bytes} nothing more is written (logged once).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from twisted.logger import Logger

__all__ = ["Conversation", "Recorder", "read_recording"]

_log = Logger(namespace="wsdaemon.proxy")


class Recorder:
    """
    Appends conversations to one file.

    @param clock: the time of each event.
    """

    def __init__(self, path: Path, max_bytes: int, clock: Callable[[], float]) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._clock = clock
        self._file: IO[str] | None = None
        self._written = path.stat().st_size if path.exists() else 0
        self._full_logged = False
        self._count = 0

    def _write(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, ensure_ascii=False) + "\n"
        if self._written + len(line) > self.max_bytes:
            if not self._full_logged:
                self._full_logged = True
                _log.warn("recording {path} reached {limit} bytes (record_max_bytes): not "
                          "recording more", path=str(self.path), limit=self.max_bytes)
            return
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
        self._file.write(line)
        self._written += len(line.encode("utf-8"))

    def conversation(self, path: str, subprotocol: str | None, upstream: str) -> Conversation:
        self._count += 1
        started = self._clock()
        name = f"{int(started)}-{self._count}"
        self._write({"event": "open", "conversation": name, "time": started, "path": path,
                     "subprotocol": subprotocol, "upstream": upstream})
        return Conversation(self, name, started)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


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
        event: dict[str, Any] = {"event": "message", "conversation": self.name,
                                 "at": self._at(), "from": sender}
        if isinstance(data, bytes):
            event.update(type="binary", base64=base64.b64encode(data).decode("ascii"))
        else:
            event.update(type="text", text=data)
        self._recorder._write(event)

    def closed(self, by: str, code: int | None, reason: str) -> None:
        self._recorder._write({"event": "close", "conversation": self.name, "at": self._at(),
                               "by": by, "code": code, "reason": reason})
        self._recorder.flush()


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
