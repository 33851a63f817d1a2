"""
The C{operator} reply strategy: client messages queue up for operators.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from wsdaemon.errors import BrokerOutcomeUnknown, BrokerUnavailable
from wsdaemon.interfaces import IOptionCheck, IReplyStrategy, ISession, IStrategyFactory
from wsdaemon.spelling import did_you_mean
from wsdaemon.strategies.api import (
    OptionContext,
    OptionError,
    StrategyContext,
    reject_unknown_options,
)
from wsdaemon.strategies.operator.errors import QueueRefused
from wsdaemon.strategies.operator.ports import IOperatorQueue

__all__ = ["OperatorStrategy", "OperatorStrategyFactory"]

_log = Logger(namespace="wsdaemon.operators")

DEFAULT_ACK = "Thanks! Your message is number {position} in the queue."
NOT_QUEUED = "Sorry, your message could not be queued. Please send it again."
#: Redis stopped answering after the message was sent: it may be queued.
UNCONFIRMED = ("Sorry, we could not confirm that your message was queued. Please send it "
               "again: if it was, it will not be queued twice.")
#: A message sent again (within the shared queue's resend window) whose first
#: send made an item that is closed already (an open one is acknowledged again).
RECEIVED_BEFORE = "We had already received this message; it is not queued a second time."
TEXT_ONLY = "Only text messages reach an operator."
#: What a client is told when its message is over one of the queue's caps
#: (nothing is stored; the connection stays open).
REFUSED = {
    "too_long": "Sorry, your message is too long for an operator (at most {limit} bytes).",
    "client": "You already have {limit} messages waiting for an answer; please wait for a "
              "reply before sending more.",
    "route": "Sorry, the queue is full right now. Please try again later.",
    "total": "Sorry, the queue is full right now. Please try again later.",
}


_NEEDS_OPERATOR = ("the operator strategy needs an [operator] section (tokens, store) in "
                   "the config")


def _check_ack(template: str) -> None:
    for _, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if name not in ("position", "item") or spec or conversion:
            hint = did_you_mean(name, ("position", "item"), "{{{}}}")
            raise OptionError("ack_message", f"unknown placeholder {{{name}}}{hint}; expected "
                                             "{position} or {item}")


@implementer(IReplyStrategy)
class OperatorStrategy:
    """
    Queues each text message; answers with an acknowledgement once the
    message is stored (or with an apology if it could not be).
    """

    def __init__(self, queue: IOperatorQueue, ack_message: str) -> None:
        self.queue = queue
        self.ack_message = ack_message

    def connection_opened(self, session: ISession) -> None:
        self.queue.client_connected(session)

    def message_received(self, session: ISession, message: str | bytes) -> object:
        if isinstance(message, bytes):
            return TEXT_ONLY
        d: Deferred[Any] = self.queue.enqueue(session, message)
        d.addCallbacks(self._acknowledge, self._not_queued, errbackArgs=(session,))
        return d

    def _acknowledge(self, item: Any) -> str | None:
        if not self.ack_message:
            return None
        # A resend (shared queue only): the first send's item, maybe closed.
        if getattr(item, "resent", False) and item.state not in ("queued", "claimed"):
            return RECEIVED_BEFORE
        return self.ack_message.format(position=self.queue.position(item), item=item.item_id)

    def _not_queued(self, failure: Failure, session: ISession) -> str:
        refusal = failure.check(QueueRefused)
        if refusal is not None:
            refused: QueueRefused = failure.value  # type: ignore[assignment]
            _log.info("refused a message from client {client_id} on {route}: {why}",
                      client_id=session.client_id, route=session.route, why=str(refused))
            return REFUSED[refused.why].format(limit=refused.limit)
        if failure.check(BrokerUnavailable):
            # An outage, which the Redis link logs once: not once per message.
            unknown = failure.check(BrokerOutcomeUnknown) is not None
            _log.debug("message from client {client_id} on {route} {outcome}: {why}",
                       client_id=session.client_id, route=session.route,
                       outcome="not confirmed" if unknown else "not queued",
                       why=failure.getErrorMessage())
            return UNCONFIRMED if unknown else NOT_QUEUED
        _log.failure("could not queue a message from client {client_id} on {route}",
                     failure=failure, client_id=session.client_id, route=session.route)
        return NOT_QUEUED

    def connection_closed(self, session: ISession, code: int | None, reason: str) -> None:
        self.queue.client_disconnected(session)


@implementer(IStrategyFactory, IOptionCheck)
class OperatorStrategyFactory:
    """
    @param queue: the operator queue the routes' strategies put messages
        in (the assembly binds it; unbound, the factory checks options
        only).
    """

    name = "operator"
    description = "messages queue up for human operators (terminal or web console)"

    def __init__(self, queue: IOperatorQueue | None = None) -> None:
        self.queue = queue

    def check(self, options: Mapping[str, str], context: OptionContext) -> str:
        """
        @return: the acknowledgement template.
        """
        if "bot" in options:
            raise OptionError("bot", "a bot answers conversations first: it needs model = "
                              "conversations in [operator] (the queue has no bot)")
        reject_unknown_options(options, {"ack_message"})
        if "operator" not in context.sections:
            raise OptionError(None, _NEEDS_OPERATOR)
        ack = options.get("ack_message", DEFAULT_ACK)
        _check_ack(ack)
        return ack

    def create(self, options: Mapping[str, str], context: StrategyContext) -> OperatorStrategy:
        queue = self.queue
        if queue is None or not IOperatorQueue.providedBy(queue):
            raise OptionError(None, _NEEDS_OPERATOR)
        ack = context.checked
        if not isinstance(ack, str):
            ack = self.check(options, OptionContext(context.config_dir, context.route,
                                                    frozenset({"operator"})))
        return OperatorStrategy(queue, ack)
