"""
Browser HAR files and recordings, both ways.

A browser's DevTools saves a page's traffic as HAR 1.2; Chromium adds each
WebSocket's frames to the entry of its handshake (the one answered 101,
C{"_resourceType": "websocket"}) as C{_webSocketMessages}: C{{"type":
"send" | "receive", "time": seconds since the epoch, "opcode": 1 | 2,
"data": text, or base64 for binary}}. L{read_har} turns each such entry
into a conversation of a recording (named C{entry-N}, N its index in
C{log.entries}), which C{wsdaemon-replay} replays like one a C{proxy} route
recorded; L{to_har} does the reverse, so DevTools (Network panel, "Import
HAR file") shows a recorded conversation's frames.

Bounded: a file over L{MAX_HAR_BYTES} is refused before it is read, and an
entry with more than C{max_messages} frames (L{MAX_MESSAGES} by default)
is refused; errors name the file and the entry (C{x.har:
log.entries[3]._webSocketMessages[5]: ...}).

HAR has no place for a close; an export keeps the recorded close in the
entry's C{_wsdaemonClose} (which DevTools ignores), and an import reads it
back, so a recording survives the round trip.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = ["MAX_HAR_BYTES", "MAX_MESSAGES", "HarError", "read_har", "recording_size_check",
           "to_har", "write_har"]

#: Bytes of a HAR file (or of a recording exported as one), at most.
MAX_HAR_BYTES = 64 * 1024 * 1024
#: WebSocket messages of one connection, at most (C{--max-messages}).
MAX_MESSAGES = 100_000

_DIRECTIONS = {"send": "client", "receive": "server"}
#: Control frames (close, ping, pong): not messages, skipped.
_CONTROL = frozenset({8, 9, 10})


class HarError(ValueError):
    """
    A HAR file (or a recording to export) that cannot be used: the message
    names the file and where in it.
    """


def _check_size(path: Path, what: str) -> None:
    size = path.stat().st_size
    if size > MAX_HAR_BYTES:
        raise HarError(f"{path}: {size} bytes, more than the {MAX_HAR_BYTES} bytes "
                       f"(64 MiB) {what} may have")


def _epoch(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _header(message: Mapping[str, Any], name: str) -> str | None:
    headers = message.get("headers")
    if not isinstance(headers, list):
        return None
    for header in headers:
        if isinstance(header, dict) and str(header.get("name", "")).lower() == name:
            value = header.get("value")
            return value if isinstance(value, str) else None
    return None


def _is_websocket(entry: Mapping[str, Any]) -> bool:
    response = entry.get("response")
    return isinstance(response, dict) and response.get("status") == 101


def _frames(where: str, entry: Mapping[str, Any], name: str, started: float | None,
            max_messages: int) -> list[dict[str, Any]]:
    """
    @return: the entry's messages as recorded message events.
    """
    frames = entry.get("_webSocketMessages", [])
    if not isinstance(frames, list):
        raise HarError(f"{where}._webSocketMessages: expected a list")
    if len(frames) > max_messages:
        raise HarError(f"{where}: {len(frames)} WebSocket messages, more than {max_messages} "
                       "(--max-messages)")
    events: list[dict[str, Any]] = []
    base = started
    for number, frame in enumerate(frames):
        at_frame = f"{where}._webSocketMessages[{number}]"
        if not isinstance(frame, dict):
            raise HarError(f"{at_frame}: expected an object")
        sender = _DIRECTIONS.get(frame.get("type"))  # type: ignore[arg-type]
        if sender is None:
            raise HarError(f"{at_frame}: type: expected \"send\" or \"receive\", got "
                           f"{frame.get('type')!r}")
        opcode = frame.get("opcode")
        if opcode in _CONTROL:
            continue
        data = frame.get("data", "")
        if opcode not in (1, 2) or not isinstance(data, str):
            raise HarError(f"{at_frame}: expected opcode 1 (text) or 2 (binary) and data, a "
                           f"string; got opcode {opcode!r}")
        time = frame.get("time")
        if isinstance(time, bool) or not isinstance(time, int | float):
            raise HarError(f"{at_frame}: time: expected seconds since the epoch, got {time!r}")
        if base is None or time < base:
            base = float(time)
        event: dict[str, Any] = {"event": "message", "conversation": name,
                                 "at": round(float(time) - base, 6), "from": sender}
        if opcode == 2:
            try:
                payload = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                raise HarError(f"{at_frame}: data: a binary message (opcode 2) must be "
                               "base64") from None
            event.update(type="binary", base64=base64.b64encode(payload).decode("ascii"))
        else:
            event.update(type="text", text=data)
        events.append(event)
    return events


def _entry_events(where: str, entry: Mapping[str, Any], name: str,
                  max_messages: int) -> list[dict[str, Any]]:
    request = entry.get("request")
    url = request.get("url") if isinstance(request, dict) else None
    if not isinstance(url, str):
        raise HarError(f"{where}.request.url: expected the WebSocket's URL")
    started = _epoch(entry.get("startedDateTime"))
    messages = _frames(where, entry, name, started, max_messages)
    parts = urlsplit(url)
    opening: dict[str, Any] = {
        "event": "open", "conversation": name, "time": started,
        "path": (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
        "subprotocol": _header(entry["response"], "sec-websocket-protocol"), "upstream": url}
    events = [opening, *messages]
    close = entry.get("_wsdaemonClose")
    if isinstance(close, dict) and close.get("by") in ("client", "server", "proxy"):
        code, at = close.get("code"), close.get("at")
        events.append({"event": "close", "conversation": name,
                       "at": at if isinstance(at, int | float) else 0.0,
                       "by": close["by"], "code": code if isinstance(code, int) else None,
                       "reason": str(close.get("reason") or "")})
    return events


def read_har(path: Path, url_filter: str | None = None,
             max_messages: int = MAX_MESSAGES) -> list[dict[str, Any]]:
    """
    @param url_filter: only WebSocket entries whose URL holds this text.
    @return: the WebSocket conversations of a HAR file as recording events
        (one conversation per entry answered 101, in the file's order).
    @raise HarError: naming the file and entry, for a file too big, not
        HAR, or an entry that cannot be read.
    @raise OSError: if it cannot be read at all.
    """
    _check_size(path, "a HAR file")
    try:
        document = json.loads(path.read_bytes())
    except RecursionError:
        raise HarError(f"{path}: nested too deeply to be a HAR file") from None
    except ValueError as e:
        raise HarError(f"{path}: not JSON ({e})") from None
    log = document.get("log") if isinstance(document, dict) else None
    entries = log.get("entries") if isinstance(log, dict) else None
    if not isinstance(entries, list):
        raise HarError(f"{path}: not a HAR file (expected {{\"log\": {{\"entries\": [...]}}}})")
    events: list[dict[str, Any]] = []
    for index, entry in enumerate(entries):
        where = f"{path}: log.entries[{index}]"
        if not isinstance(entry, dict):
            raise HarError(f"{where}: expected an object")
        if not _is_websocket(entry):
            continue
        if url_filter is not None:
            request = entry.get("request")
            url = request.get("url") if isinstance(request, dict) else None
            if not isinstance(url, str) or url_filter not in url:
                continue
        events += _entry_events(where, entry, f"entry-{index}", max_messages)
    return events


def _iso(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _url(opening: Mapping[str, Any]) -> str:
    """
    @return: the URL the browser would have opened: the upstream's (what the
        proxy talked to), else the route's path on localhost.
    """
    upstream = opening.get("upstream")
    if isinstance(upstream, str) and upstream.startswith(("ws://", "wss://")):
        return upstream
    return f"ws://localhost{opening.get('path') or '/'}"


def _entry(name: str, events: Sequence[dict[str, Any]], max_messages: int) -> dict[str, Any]:
    opening = next((e for e in events if e["event"] == "open"), {})
    started = float(opening.get("time") or 0.0)
    url = _url(opening)
    protocol = opening.get("subprotocol")
    upgrade = [{"name": "Upgrade", "value": "websocket"},
               {"name": "Connection", "value": "Upgrade"}]
    offered = upgrade + ([{"name": "Sec-WebSocket-Protocol", "value": protocol}]
                         if isinstance(protocol, str) and protocol else [])
    frames: list[dict[str, Any]] = []
    last = 0.0
    close: dict[str, Any] | None = None
    for event in events:
        at = float(event.get("at", 0.0))
        if event["event"] == "message":
            binary = event.get("type") == "binary"
            frames.append({"type": "send" if event.get("from") == "client" else "receive",
                           "time": round(started + at, 6), "opcode": 2 if binary else 1,
                           "data": event.get("base64", "") if binary else event.get("text", "")})
            last = max(last, at)
        elif event["event"] == "close":
            close = {k: event.get(k) for k in ("at", "by", "code", "reason")}
            last = max(last, at)
    if len(frames) > max_messages:
        raise HarError(f"conversation {name}: {len(frames)} messages, more than {max_messages} "
                       "(--max-messages)")
    entry: dict[str, Any] = {
        "startedDateTime": _iso(started),
        "time": round(last * 1000, 3),
        "request": {"method": "GET", "url": url, "httpVersion": "HTTP/1.1", "cookies": [],
                    "headers": offered,
                    "queryString": [{"name": k, "value": v}
                                    for k, v in parse_qsl(urlsplit(url).query)],
                    "headersSize": -1, "bodySize": 0},
        "response": {"status": 101, "statusText": "Switching Protocols",
                     "httpVersion": "HTTP/1.1", "cookies": [], "headers": offered,
                     "content": {"size": 0, "mimeType": "x-unknown"}, "redirectURL": "",
                     "headersSize": -1, "bodySize": 0},
        "cache": {},
        "timings": {"blocked": -1, "dns": -1, "ssl": -1, "connect": -1, "send": 0, "wait": 0,
                    "receive": round(last * 1000, 3)},
        "comment": f"wsdaemon conversation {name}",
        "_resourceType": "websocket",
        "_webSocketMessages": frames,
    }
    if close is not None:
        entry["_wsdaemonClose"] = close
    return entry


def to_har(conversations: Mapping[str, Sequence[dict[str, Any]]], version: str,
           max_messages: int = MAX_MESSAGES) -> dict[str, Any]:
    """
    @param conversations: each conversation's recorded events.
    @param version: wsdaemon's version, for C{log.creator}.
    @return: a HAR 1.2 document, one entry per conversation.
    @raise HarError: for a conversation of more than C{max_messages}.
    """
    return {"log": {
        "version": "1.2",
        "creator": {"name": "wsdaemon-replay", "version": version},
        "pages": [],
        "entries": [_entry(name, events, max_messages)
                    for name, events in conversations.items()],
    }}


def write_har(path: Path, har: Mapping[str, Any]) -> None:
    """
    Write C{har} to C{path}, readable by its owner only (it holds what the
    clients said, like the recording).
    """
    data = json.dumps(har, ensure_ascii=False, indent=1).encode("utf-8")
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(data)


def recording_size_check(path: Path) -> None:
    """
    Refuse a recording too big to export as a HAR that can be read again.

    @raise HarError: naming the file.
    """
    _check_size(path, "a recording to export")

