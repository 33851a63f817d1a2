"""
The echo strategy: every message comes back unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping

from zope.interface import implementer

from wsdaemon.interfaces import IOptionCheck, IReplyStrategy, ISession, IStrategyFactory
from wsdaemon.strategies.api import OptionContext, StrategyContext, reject_unknown_options

__all__ = ["EchoStrategy", "EchoStrategyFactory"]


@implementer(IReplyStrategy)
class EchoStrategy:
    """
    Answer each message with itself: text as text, binary as binary.
    """

    def connection_opened(self, session: ISession) -> None:
        pass

    def message_received(self, session: ISession, message: str | bytes) -> str | bytes:
        # A plain return value: the protocol sends it without a Deferred.
        return message

    def connection_closed(self, session: ISession, code: int | None, reason: str) -> None:
        pass


@implementer(IStrategyFactory, IOptionCheck)
class EchoStrategyFactory:
    name = "echo"
    description = "every message comes back unchanged"

    def check(self, options: Mapping[str, str], context: OptionContext) -> None:
        reject_unknown_options(options, ())

    def create(self, options: Mapping[str, str], context: StrategyContext) -> EchoStrategy:
        reject_unknown_options(options, ())
        return EchoStrategy()
