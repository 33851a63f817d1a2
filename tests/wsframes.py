"""
A tiny, independent RFC 6455 frame codec for tests that must send what a
well-behaved client library refuses to send (invalid UTF-8, bad frames), and
for reading what the server wrote to an in-memory transport.
"""

from __future__ import annotations

import base64
import os
import struct
from dataclasses import dataclass

TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


def handshake_request(path: str = "/echo", origin: str | None = None, host: str = "127.0.0.1",
                      extra: str = "") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    if extra:
        lines.append(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def client_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A masked frame, as a client must send it."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def close_frame(code: int, reason: bytes = b"") -> bytes:
    return client_frame(CLOSE, struct.pack("!H", code) + reason)


@dataclass
class Frame:
    opcode: int
    payload: bytes
    fin: bool

    @property
    def close_code(self) -> int | None:
        if self.opcode != CLOSE or len(self.payload) < 2:
            return None
        code: int = struct.unpack("!H", self.payload[:2])[0]
        return code


def split_response(data: bytes) -> tuple[bytes, bytes]:
    """Split the server's bytes into the HTTP response head and the rest."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, f"no complete HTTP response in {data[:200]!r}"
    return head, rest


def split_frames(data: bytes) -> tuple[list[Frame], bytes]:
    """Parse the complete unmasked server frames; return them and the rest."""
    frames = []
    i = 0
    while i + 2 <= len(data):
        b0, b1 = data[i], data[i + 1]
        assert not b1 & 0x80, "server frames must not be masked"
        n = b1 & 0x7F
        j = i + 2
        if n == 126:
            if j + 2 > len(data):
                break
            (n,) = struct.unpack("!H", data[j : j + 2])
            j += 2
        elif n == 127:
            if j + 8 > len(data):
                break
            (n,) = struct.unpack("!Q", data[j : j + 8])
            j += 8
        if j + n > len(data):
            break
        frames.append(Frame(opcode=b0 & 0x0F, payload=data[j : j + n], fin=bool(b0 & 0x80)))
        i = j + n
    return frames, data[i:]


def parse_frames(data: bytes) -> list[Frame]:
    """Parse unmasked server frames; fails on a truncated frame."""
    frames, rest = split_frames(data)
    assert rest == b"", "truncated frame"
    return frames
