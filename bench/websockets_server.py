"""
The second baseline: an echo server on websockets (asyncio), on the fastest
event loop that installs here (uvloop; asyncio's own if it is missing), with
the limits of the wsdaemon route it is compared with (1 MiB messages, no
compression, no pings).

    python bench/websockets_server.py PORT
"""

from __future__ import annotations

import asyncio
import sys

from websockets.asyncio.server import ServerConnection, serve


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def main(port: int) -> None:
    async with serve(echo, "127.0.0.1", port, max_size=1 << 20, compression=None,
                     ping_interval=None, backlog=4096) as server:
        print("listening", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main(int(sys.argv[1])))
    except ImportError:
        asyncio.run(main(int(sys.argv[1])))
