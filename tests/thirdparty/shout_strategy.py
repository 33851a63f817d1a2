"""
A third-party strategy, outside the wsdaemon package: answers in capitals.

Used by the tests to prove that strategies can be added by dotted path and
as Twisted plugins (see twisted/plugins/shout_plugin.py beside this file).
"""

from __future__ import annotations

from collections.abc import Mapping

from twisted.plugin import IPlugin
from zope.interface import implementer

from wsdaemon.strategies import (
    IReplyStrategy,
    ISession,
    IStrategyFactory,
    OptionError,
    StrategyContext,
    reject_unknown_options,
)


@implementer(IReplyStrategy)
class ShoutStrategy:
    def __init__(self, suffix: str) -> None:
        self.suffix = suffix

    def connection_opened(self, session: ISession) -> None:
        session.send("WELCOME")

    def message_received(self, session: ISession, message: str | bytes) -> object:
        if isinstance(message, bytes):
            return message[::-1]
        if message == "explode":
            raise RuntimeError("the shout strategy exploded (on purpose, for a test)")
        return message.upper() + self.suffix

    def connection_closed(self, session: ISession, code: int | None, reason: str) -> None:
        pass


@implementer(IPlugin, IStrategyFactory)
class ShoutFactory:
    name = "shout"
    description = "answers in capitals"

    def create(self, options: Mapping[str, str], context: StrategyContext) -> ShoutStrategy:
        reject_unknown_options(options, {"suffix"})
        suffix = options.get("suffix", "!")
        if len(suffix) > 3:
            raise OptionError("suffix", f"expected at most 3 characters, got {suffix!r}")
        return ShoutStrategy(suffix)


shout = ShoutFactory()
