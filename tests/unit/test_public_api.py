"""
What wsdaemon promises to strategy writers: pinned, so that a change to the
public surface is a deliberate one.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest

import wsdaemon.interfaces
import wsdaemon.strategies
import wsdaemon.strategies.api
import wsdaemon.testing
from wsdaemon._compat import MOVED


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


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_module_names_still_import(old: str) -> None:
    """A moved module imports under its old name: the same object, with a DeprecationWarning."""
    new = MOVED[old]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sys.modules.pop(old, None)
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    assert module.__spec__ is not None and module.__spec__.name == new
    assert any(issubclass(w.category, DeprecationWarning) and new in str(w.message)
               for w in caught)


def test_old_names_inside_moved_packages() -> None:
    """Names third parties used keep working: old strategy helpers, queue, console."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from wsdaemon.operators.queue import OperatorQueue as OldQueue
        from wsdaemon.scripted.strategy import ScriptedStrategyFactory as OldScripted
        from wsdaemon.sessions import PushTarget as OldTarget
        from wsdaemon.strategy import OptionError as OldOptionError
    from wsdaemon.records import PushTarget
    from wsdaemon.strategies.operator.queue import OperatorQueue
    from wsdaemon.strategies.scripted.strategy import ScriptedStrategyFactory

    assert OldQueue is OperatorQueue and OldScripted is ScriptedStrategyFactory
    assert OldTarget is PushTarget and OldOptionError is wsdaemon.strategies.OptionError
    run = subprocess.run([sys.executable, "-W", "ignore", "-m", "wsdaemon.operators.console",
                          "--help"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "usage: wsdaemon-operator" in run.stdout


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
