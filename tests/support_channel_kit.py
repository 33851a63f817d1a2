"""
What the operator channel v2's tests run: a conversation driver on a
memory store and a L{Clock}, the operator hub as its operator port, the
channel factory, and operators connected to it over in-memory transports
(L{twisted.test.iosim}) with Autobahn's own client: real handshakes and
frames, no sockets, no global reactor.
"""

from __future__ import annotations

import json
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.test import iosim
from zope.interface import implementer

from wsdaemon.config import ProtocolSettings
from wsdaemon.conversations import ConversationSettings, Inbox, VisitorMessage
from wsdaemon.conversations.transition import Transition
from wsdaemon.support.canned import CannedReplies, parse_canned
from wsdaemon.support.channel import OperatorChannelFactory
from wsdaemon.support.driver import ConversationDriver
from wsdaemon.support.hub import OperatorHub
from wsdaemon.support.memory import MemoryConversationStore
from wsdaemon.support.operator_requests import ChannelLimits
from wsdaemon.support.ports import IConversationMeasures, IVisitorPort

ROUTE = "/support"
TOKENS = {"a" * 20: "alice", "b" * 20: "bob", "c" * 20: "carol"}
NAMES = {"alice": "Alice A.", "bob": "Bob B."}
CANNED = "/hello Hello {name}, this is {operator}\n/bye Bye!\n"


@implementer(IVisitorPort, IConversationMeasures)
class Visitors:
    """The visitors' side, recording what reaches it."""

    def __init__(self) -> None:
        self.said: list[Any] = []

    def deliver(self, effect: Any) -> bool:
        self.said.append(effect)
        return False

    def tell(self, effect: Any) -> None:
        self.said.append(effect)

    def announce(self, effect: Any) -> None:
        self.said.append(effect)

    def observe(self, effect: Any) -> None:
        self.said.append(effect)


class Operator(WebSocketClientProtocol):
    """An operator's client: records every JSON message it gets."""

    def __init__(self) -> None:
        super().__init__()
        self.got: list[dict[str, Any]] = []
        self.closed: tuple[bool, int | None, str | None] | None = None
        self.opened = False
        self._ids = 0

    def onOpen(self) -> None:
        self.opened = True

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.got.append(json.loads(payload))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.closed = (wasClean, code, reason)

    def send(self, request: dict[str, Any]) -> int:
        self._ids += 1
        self.sendMessage(json.dumps({"id": self._ids, **request}).encode("utf-8"), False)
        return self._ids

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.got if e.get("type") == kind]


class Desk:
    """The driver, the hub, the channel, and operators connected to it."""

    def __init__(self, settings: ConversationSettings | None = None,
                 protocol: ProtocolSettings | None = None,
                 limits: ChannelLimits | None = None, canned: str = CANNED) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.store = MemoryConversationStore()
        self.inbox = Inbox(settings or ConversationSettings())
        self.visitors = Visitors()
        self.hub = OperatorHub(self.inbox, self.clock)
        self.driver = ConversationDriver(self.store, self.inbox, self.clock, self.visitors,
                                         self.hub, self.visitors)
        self.driver.start()
        self.canned: CannedReplies = parse_canned(canned.splitlines())
        self.factory = OperatorChannelFactory(
            self.driver, self.hub, TOKENS, NAMES, self.canned,
            protocol or ProtocolSettings(max_message_size=1 << 20, max_frame_size=1 << 20),
            limits=limits, clock=self.clock, reactor=self.clock)
        self.pumps: list[iosim.IOPump] = []

    def connect(self, token: str | None = "a" * 20, *,
                headers: dict[str, str] | None = None) -> Operator:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        client_factory = WebSocketClientFactory("ws://127.0.0.1:8080/operator", headers=sent,
                                                reactor=self.clock)
        client_factory.protocol = Operator
        server = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 8080))
        client: Operator = client_factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 8080))
        server_transport = iosim.FakeTransport(server, isServer=True)
        client_transport = iosim.FakeTransport(client, isServer=False)
        pump = iosim.connect(server, server_transport, client, client_transport,
                             greet=False)
        self.pumps.append(pump)
        self.flush()
        return client

    def flush(self) -> None:
        for _ in range(5):
            for pump in self.pumps:
                pump.flush()

    def ask(self, operator: Operator, request: dict[str, Any]) -> dict[str, Any]:
        """Send a request and return its answer (ok or error)."""
        request_id = operator.send(request)
        self.flush()
        answers = [e for e in operator.got if e.get("id") == request_id
                   and e.get("type") in ("ok", "error")]
        assert len(answers) == 1, operator.got[-5:]
        return answers[0]

    def visitor(self, visitor: str, text: str = "Hello?") -> Transition:
        d = self.driver.submit(VisitorMessage(ROUTE, visitor, text))
        self.flush()
        return d.result  # type: ignore[no-any-return]
