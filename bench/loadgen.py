"""
The load generator: picows clients on uvloop (compiled, not the bottleneck).

    python bench/loadgen.py echo URL CONNECTIONS SIZE KIND SECONDS
        request/response on CONNECTIONS connections; prints messages/s
    python bench/loadgen.py latency URL SIZE KIND COUNT
        one connection, COUNT round trips; prints p50/p99/max in µs
    python bench/loadgen.py handshakes URL SECONDS CONCURRENCY
        open+close connections as fast as possible; prints handshakes/s
    python bench/loadgen.py storm URL CLIENTS CONCURRENCY ORIGIN [hold]
        CLIENTS connections at once, CONCURRENCY handshakes in flight, all
        held open until the last is connected, then all closed; prints the
        time until all were connected, handshake p50/p99 and failures; with
        "hold", prints "connected" once all are and closes them only on a
        stdin line (so that the caller can read the server's CPU time)
    python bench/loadgen.py bystander URL ORIGIN
        one connection sending 64 B every 2 ms; prints "ready", then on a
        stdin line "T0 T1" (time.monotonic) the round-trip p50/p99/max of
        the messages sent between them and of those sent before T0
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect


class EchoClient(WSListener):
    def __init__(self, payload: bytes, kind: WSMsgType, deadline: float) -> None:
        self.payload = payload
        self.kind = kind
        self.deadline = deadline
        self.count = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.latencies: list[float] = []
        self.sent_at = 0.0
        self.limit = 0
        #: Echoes that differ from what was sent (a wrong server must not look fast).
        self.wrong = 0

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def start(self) -> None:
        self.sent_at = time.perf_counter()
        self.transport.send(self.kind, self.payload)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            return
        now = time.perf_counter()
        self.count += 1
        if frame.msg_type != self.kind or frame.get_payload_as_bytes() != self.payload:
            self.wrong += 1
        if self.limit:
            self.latencies.append(now - self.sent_at)
            if self.count >= self.limit:
                self.done.set_result(None)
                return
        elif now >= self.deadline:
            if not self.done.done():
                self.done.set_result(None)
            return
        self.sent_at = now
        transport.send(self.kind, self.payload)


def _payload(size: int, kind: str) -> tuple[bytes, WSMsgType]:
    if kind == "text":
        return (b"a" * size), WSMsgType.TEXT
    return bytes(range(256)) * (size // 256) + bytes(size % 256), WSMsgType.BINARY


async def echo(url: str, connections: int, size: int, kind: str, seconds: float) -> None:
    payload, msg_type = _payload(size, kind)
    deadline = time.perf_counter() + 3600
    pairs = [await ws_connect(lambda: EchoClient(payload, msg_type, deadline), url,
                              max_frame_size=1 << 21) for _ in range(connections)]
    clients = [client for _, client in pairs]
    started = time.perf_counter()
    for client in clients:
        client.deadline = started + seconds
        client.start()
    await asyncio.gather(*(c.done for c in clients))
    elapsed = time.perf_counter() - started
    wrong = sum(c.wrong for c in clients)
    if wrong:
        raise SystemExit(f"{wrong} echoes differ from what was sent")
    print(json.dumps({"msgs_per_s": sum(c.count for c in clients) / elapsed}))
    for transport, _ in pairs:
        transport.disconnect()


async def latency(url: str, size: int, kind: str, count: int) -> None:
    payload, msg_type = _payload(size, kind)
    transport, client = await ws_connect(lambda: EchoClient(payload, msg_type, 0), url,
                                         max_frame_size=1 << 21)
    client.limit = count
    client.start()
    await client.done
    if client.wrong:
        raise SystemExit(f"{client.wrong} echoes differ from what was sent")
    values = sorted(client.latencies[count // 10:])  # drop the warm-up tenth
    pick = lambda q: values[min(len(values) - 1, int(q * len(values)))] * 1e6  # noqa: E731
    print(json.dumps({"p50_us": pick(0.5), "p99_us": pick(0.99), "max_us": values[-1] * 1e6}))
    transport.disconnect()


class Quiet(WSListener):
    pass


async def handshakes(url: str, seconds: float, concurrency: int) -> None:
    deadline = time.perf_counter() + seconds
    done = 0

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            transport, _ = await ws_connect(Quiet, url)
            transport.disconnect(graceful=False)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    print(json.dumps({"handshakes_per_s": done / (time.perf_counter() - started)}))


async def storm(url: str, clients: int, concurrency: int, origin: str,
                hold: bool = False) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, clients + 100)), hard))
    gate = asyncio.Semaphore(concurrency)
    headers = {"Origin": origin}
    durations: list[float] = []
    transports: list[WSTransport] = []
    errors: dict[str, int] = {}

    async def one() -> None:
        async with gate:
            began = time.perf_counter()
            try:
                transport, _ = await ws_connect(Quiet, url, extra_headers=headers)
            except Exception as e:  # noqa: BLE001 - every failure is counted, by kind
                kind = f"{type(e).__name__}: {str(e)[:80]}"
                errors[kind] = errors.get(kind, 0) + 1
                return
            durations.append(time.perf_counter() - began)
            transports.append(transport)

    t0 = time.monotonic()
    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(clients)))
    connected_s = time.perf_counter() - started
    t1 = time.monotonic()
    if hold:
        print("connected", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    closing = time.perf_counter()
    for transport in transports:
        transport.disconnect()
    await asyncio.wait_for(asyncio.gather(*(t.wait_disconnected() for t in transports)), 60)
    values = sorted(durations) or [float("nan")]
    pick = lambda q: values[min(len(values) - 1, int(q * len(values)))] * 1e3  # noqa: E731
    print(json.dumps({"connected_s": connected_s, "p50_ms": pick(0.5), "p99_ms": pick(0.99),
                      "max_ms": values[-1] * 1e3, "connected": len(transports),
                      "failures": clients - len(transports), "errors": errors,
                      "close_s": time.perf_counter() - closing, "t0": t0, "t1": t1}))


class Bystander(WSListener):
    """Sends 64 B every 2 ms (under the shipped 1000 msg/s rate limit)."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self.sent_at = 0.0

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def send(self) -> None:
        self.sent_at = time.monotonic()
        self.transport.send(WSMsgType.BINARY, bytes(64))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.BINARY:
            self.samples.append((self.sent_at, time.monotonic() - self.sent_at))
            asyncio.get_running_loop().call_later(0.002, self.send)


async def bystander(url: str, origin: str) -> None:
    transport, client = await ws_connect(Bystander, url, extra_headers={"Origin": origin})
    assert isinstance(client, Bystander)
    client.send()
    print("ready", flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    t0, t1 = (float(v) for v in line.split())
    if client.sent_at and len(client.samples) and client.samples[-1][0] != client.sent_at:
        # still waiting for an echo: it counts as at least this late
        client.samples.append((client.sent_at, time.monotonic() - client.sent_at))

    def stats(values: list[float]) -> dict[str, float]:
        values = sorted(values) or [float("nan")]
        pick = lambda q: values[min(len(values) - 1, int(q * len(values)))] * 1e6  # noqa: E731
        return {"p50_us": pick(0.5), "p99_us": pick(0.99), "max_us": values[-1] * 1e6,
                "count": len(values)}

    print(json.dumps({"storm": stats([rtt for sent, rtt in client.samples if t0 <= sent <= t1]),
                      "quiet": stats([rtt for sent, rtt in client.samples if sent < t0])}))
    transport.disconnect()


def main() -> None:
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "echo":
        coroutine = echo(args[0], int(args[1]), int(args[2]), args[3], float(args[4]))
    elif mode == "latency":
        coroutine = latency(args[0], int(args[1]), args[2], int(args[3]))
    elif mode == "handshakes":
        coroutine = handshakes(args[0], float(args[1]), int(args[2]))
    elif mode == "storm":
        coroutine = storm(args[0], int(args[1]), int(args[2]), args[3], args[4:5] == ["hold"])
    elif mode == "bystander":
        coroutine = bystander(args[0], args[1])
    else:
        raise SystemExit(__doc__)
    uvloop.run(coroutine)


if __name__ == "__main__":
    main()
