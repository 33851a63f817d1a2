"""
What wsdaemon promises to strategy writers: pinned, so that a change to the
public surface is a deliberate one.
"""

from __future__ import annotations

import wsdaemon.interfaces
import wsdaemon.strategies
import wsdaemon.strategies.api
import wsdaemon.testing


def test_interfaces() -> None:
    """Interfaces."""
    assert set(wsdaemon.interfaces.__all__) == {
        "IConnectionFaults", "IConversationMeasures", "IConversationStore", "IFlowControl",
        "IHandshakeHook", "IHandshakePolicy", "IOperatorPort", "IOperatorQueue",
        "IOptionCheck", "IPushBus", "IQueueStore", "IReplyStrategy", "IResettable",
        "IRulesReplaceable", "ISession", "IStrategyFactory", "IVisitorPort"}
    assert set(wsdaemon.interfaces.IReplyStrategy.names()) == {
        "connection_opened", "message_received", "connection_closed"}
    assert set(wsdaemon.interfaces.ISession.names()) == {
        "session_id", "client_id", "route", "peer", "connected_at", "is_open", "send", "close"}
    assert set(wsdaemon.interfaces.IStrategyFactory.names()) == {
        "name", "description", "create"}
    assert set(wsdaemon.interfaces.IOptionCheck.names()) == {"check"}
    assert set(wsdaemon.interfaces.IFlowControl.names()) == {"register_producer", "hold_reading"}


def test_strategy_helpers() -> None:
    """Strategy helpers."""
    assert set(wsdaemon.strategies.api.__all__) == {
        "OptionContext", "OptionError", "StrategyContext", "reject_unknown_options"}


def test_strategy_authors_find_everything_in_one_package() -> None:
    """wsdaemon.strategies offers the interfaces and the helpers a strategy needs."""
    assert set(wsdaemon.strategies.__all__) == {
        "IOptionCheck", "IReplyStrategy", "ISession", "IStrategyFactory", "OptionContext",
        "OptionError", "StrategyContext", "reject_unknown_options"}
    for name in wsdaemon.strategies.__all__:
        here = getattr(wsdaemon.strategies, name)
        there = getattr(wsdaemon.interfaces, name, None) or getattr(wsdaemon.strategies.api, name)
        assert here is there


def test_testing_helpers() -> None:
    """Testing helpers."""
    assert set(wsdaemon.testing.__all__) == {
        "RecordingSession", "check_strategy", "is_valid_reply"}


def test_every_interface_method_documents_its_return() -> None:
    """Every interface method's docstring says what it returns."""
    for interface in (wsdaemon.interfaces.IReplyStrategy, wsdaemon.interfaces.ISession,
                      wsdaemon.interfaces.IQueueStore, wsdaemon.interfaces.IPushBus,
                      wsdaemon.interfaces.IStrategyFactory,
                      wsdaemon.interfaces.IOperatorQueue, wsdaemon.interfaces.IOptionCheck,
                      wsdaemon.interfaces.IResettable, wsdaemon.interfaces.IRulesReplaceable,
                      wsdaemon.interfaces.IConnectionFaults, wsdaemon.interfaces.IHandshakeHook,
                      wsdaemon.interfaces.IFlowControl):
        for name, description in interface.namesAndDescriptions():
            if hasattr(description, "getSignatureString"):
                assert "@return" in (description.getDoc() or ""), f"{interface.__name__}.{name}"


def test_both_operator_queues_provide_the_interface() -> None:
    """The embedded and the Redis-backed queue offer the same calls."""
    from zope.interface.verify import verifyClass

    from wsdaemon.broker.queue import SharedOperatorQueue
    from wsdaemon.strategies.operator.queue import OperatorQueue

    for queue_class in (OperatorQueue, SharedOperatorQueue):
        assert verifyClass(wsdaemon.interfaces.IOperatorQueue, queue_class)


def test_no_old_module_names() -> None:
    """Module names that were never released are gone: no alias imports them."""
    import importlib

    import pytest

    for old in ("wsdaemon.strategy", "wsdaemon.operators", "wsdaemon.protocol",
                "wsdaemon.scripted", "wsdaemon._compat"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(old)
