#!/usr/bin/env python3
"""
A trivial webhook backend for bench/hooks_bench.py: HTTP/1.1 with
keep-alive on asyncio + uvloop, no framework. A `message` event is answered
with its text (text/plain: the daemon sends it back to the client), any
other event with 204. With DELAY, every answer waits that many seconds (a
slow backend, for the memory test).

    python bench/webhook_backend.py PORT [DELAY]
"""

from __future__ import annotations

import asyncio
import json
import sys

import uvloop


class Backend(asyncio.Protocol):
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in self.buffer[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4:end + 4 + length]
            self.buffer = self.buffer[end + 4 + length:]
            answer = self.answer(body)
            if self.delay:
                asyncio.get_running_loop().call_later(self.delay, self.write, answer)
            else:
                self.write(answer)

    def write(self, answer: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(answer)

    @staticmethod
    def answer(body: bytes) -> bytes:
        event = json.loads(body)
        if event.get("type") != "message":
            return b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"
        text = event["message"].encode("utf-8")
        return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
                b"Content-Length: " + str(len(text)).encode() + b"\r\n\r\n" + text)


async def main(port: int, delay: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Backend(delay), "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 0.0))
