"""
Handshakes answered on purpose: refuse the next N with a status and
headers, negotiate (or require) a subprotocol. What a route does now, from
its strategy's plan (a rules file's C{[handshake]}) or the admin API's.
"""

from __future__ import annotations

from autobahn.websocket.types import ConnectionDeny

from wsdaemon.records import HandshakePlan

__all__ = ["HandshakeState"]

class HandshakeState:
    """
    One route's plan and how many refusals it has left.
    """

    def __init__(self, plan: HandshakePlan | None = None) -> None:
        self.plan = plan or HandshakePlan()
        self.refusals_left = self.plan.refuse_next

    def set(self, plan: HandshakePlan) -> None:
        self.plan = plan
        self.refusals_left = plan.refuse_next

    def refusal(self) -> tuple[int, dict[str, str]] | None:
        """
        @return: the status and headers for this handshake if it is to be
            refused (counting it), else None.
        """
        if self.refusals_left <= 0:
            return None
        self.refusals_left -= 1
        return self.plan.refuse_status, dict(self.plan.refuse_headers)

    def subprotocol(self, offered: list[str]) -> str | None:
        """
        @return: the subprotocol to accept, or None.
        @raise ConnectionDeny: 400, when one is required and none matches.
        """
        accepted = self.plan.subprotocols
        for name in accepted:
            if name in offered:
                return name
        if self.plan.require_subprotocol:
            raise ConnectionDeny(ConnectionDeny.BAD_REQUEST,
                                 "none of the offered subprotocols is accepted")
        return None

    def describe(self) -> dict[str, object]:
        return {**self.plan.to_json(), "refusals_left": self.refusals_left}
