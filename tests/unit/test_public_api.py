"""
What wsdaemon promises to strategy writers: pinned, so that a change to the
public surface is a deliberate one.
"""

from __future__ import annotations

import wsdaemon.interfaces
import wsdaemon.strategy
import wsdaemon.testing


def test_interfaces() -> None:
    """Interfaces."""
    assert set(wsdaemon.interfaces.__all__) == {
        "IOperatorQueue", "IPushBus", "IQueueStore", "IReplyStrategy", "ISession",
        "IStrategyFactory"}
    assert set(wsdaemon.interfaces.IReplyStrategy.names()) == {
        "connection_opened", "message_received", "connection_closed"}
    assert set(wsdaemon.interfaces.ISession.names()) == {
        "session_id", "client_id", "route", "peer", "connected_at", "is_open", "send", "close"}
    assert set(wsdaemon.interfaces.IStrategyFactory.names()) == {
        "name", "description", "create"}


def test_strategy_helpers() -> None:
    """Strategy helpers."""
    assert set(wsdaemon.strategy.__all__) == {
        "OptionError", "StrategyContext", "reject_unknown_options"}


def test_testing_helpers() -> None:
    """Testing helpers."""
    assert set(wsdaemon.testing.__all__) == {
        "RecordingSession", "check_strategy", "is_valid_reply"}


def test_every_interface_method_documents_its_return() -> None:
    """Every interface method's docstring says what it returns."""
    for interface in (wsdaemon.interfaces.IReplyStrategy, wsdaemon.interfaces.ISession,
                      wsdaemon.interfaces.IQueueStore, wsdaemon.interfaces.IPushBus,
                      wsdaemon.interfaces.IStrategyFactory,
                      wsdaemon.interfaces.IOperatorQueue):
        for name, description in interface.namesAndDescriptions():
            if hasattr(description, "getSignatureString"):
                assert "@return" in (description.getDoc() or ""), f"{interface.__name__}.{name}"


def test_both_operator_queues_provide_the_interface() -> None:
    """The embedded and the Redis-backed queue offer the same calls."""
    from zope.interface.verify import verifyClass

    from wsdaemon.broker.queue import SharedOperatorQueue
    from wsdaemon.operators.queue import OperatorQueue

    for queue_class in (OperatorQueue, SharedOperatorQueue):
        assert verifyClass(wsdaemon.interfaces.IOperatorQueue, queue_class)
