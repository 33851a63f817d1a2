"""
The baseline: a plain Autobahn-on-Twisted echo server with the same
protocol options as the wsdaemon route it is compared with.

    python bench/raw_autobahn_server.py PORT
"""

from __future__ import annotations

import sys

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import reactor


class Echo(WebSocketServerProtocol):
    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.sendMessage(payload, isBinary)


def main() -> None:
    port = int(sys.argv[1])
    factory = WebSocketServerFactory(f"ws://127.0.0.1:{port}")
    factory.protocol = Echo
    factory.setProtocolOptions(
        maxFramePayloadSize=1 << 20, maxMessagePayloadSize=1 << 20,
        openHandshakeTimeout=5, closeHandshakeTimeout=1, autoPingInterval=0,
        allowedOrigins=["*"], allowNullOrigin=True, failByDrop=False, webStatus=False,
    )
    reactor.listenTCP(port, factory, interface="127.0.0.1", backlog=4096)  # type: ignore[attr-defined]
    print("listening", flush=True)
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
