"""
What wsdaemon promises to strategy writers: pinned, so that a change to the
public surface is a deliberate one.
"""

from __future__ import annotations

import pytest

import wsdaemon.interfaces
import wsdaemon.strategies
import wsdaemon.strategies.api
import wsdaemon.testing


def test_interfaces() -> None:
    """Interfaces."""
    assert set(wsdaemon.interfaces.__all__) == {
        "IConnectionFaults", "IFlowControl", "IHandshakeHook", "IHandshakePolicy",
        "IJournalNotes", "IOptionCheck", "IReplyStrategy", "IResettable",
        "IRulesReplaceable", "IScenarios", "ISession", "IStrategyFactory"}
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


def test_testing_helpers() -> None:
    """Testing helpers."""
    assert set(wsdaemon.testing.__all__) == {
        "HarnessClient", "RecordingSession", "StrategyHarness", "check_strategy",
        "is_valid_reply"}


def test_every_interface_method_documents_its_return() -> None:
    """Every interface method's docstring says what it returns."""
    from wsdaemon.broker.bus import IPushBus
    from wsdaemon.support.ports import IConversationStore

    for interface in (wsdaemon.interfaces.IReplyStrategy, wsdaemon.interfaces.ISession,
                      IConversationStore, IPushBus, wsdaemon.interfaces.IStrategyFactory,
                      wsdaemon.interfaces.IComponent, wsdaemon.interfaces.IOptionCheck,
                      wsdaemon.interfaces.IResettable, wsdaemon.interfaces.IRulesReplaceable,
                      wsdaemon.interfaces.IConnectionFaults, wsdaemon.interfaces.IHandshakeHook,
                      wsdaemon.interfaces.IFlowControl):
        for name, description in interface.namesAndDescriptions():
            if hasattr(description, "getSignatureString"):
                assert "@return" in (description.getDoc() or ""), f"{interface.__name__}.{name}"


def test_every_conversation_store_provides_the_interface() -> None:
    """The SQLite, Redis and memory conversation stores offer the same calls."""
    from zope.interface.verify import verifyClass

    from wsdaemon.support.memory import MemoryConversationStore
    from wsdaemon.support.ports import IConversationStore
    from wsdaemon.support.redis_store import RedisConversationStore
    from wsdaemon.support.store import SQLiteConversationStore

    for store_class in (SQLiteConversationStore, RedisConversationStore,
                        MemoryConversationStore):
        assert verifyClass(IConversationStore, store_class)


def test_no_old_module_names() -> None:
    """Module names that were never released are gone: no alias imports them."""
    import importlib

    import pytest

    for old in ("wsdaemon.strategy", "wsdaemon.operators", "wsdaemon.protocol",
                "wsdaemon.scripted", "wsdaemon._compat"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(old)


def test_the_retired_queue_is_gone() -> None:
    """The operator queue's modules were retired with it (issue 22): none is
    left to import by mistake; its terminal client lives on in support."""
    import importlib

    import pytest

    for old in ("wsdaemon.strategies.operator", "wsdaemon.broker.queue",
                "wsdaemon.broker.queue_component", "wsdaemon.broker.delivery",
                "wsdaemon.broker.mirror", "wsdaemon.broker.scripts"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(old)
    from importlib.resources import files

    for page in ("console.html", "console.js", "console.css"):
        assert not files("wsdaemon").joinpath(f"static/{page}").is_file(), page
    assert callable(importlib.import_module("wsdaemon.support.terminal").main)


@pytest.mark.parametrize("package", ["wsdaemon.strategies.webhook", "wsdaemon.strategies.command"])
def test_built_in_strategies_use_only_the_public_api(package: str) -> None:
    """The webhook and command strategies import nothing of wsdaemon but
    the public face (wsdaemon.strategies) and their own modules: a third
    party could have written them."""
    import grimp

    graph = grimp.build_graph("wsdaemon")
    reached = {
        (module, imported)
        for module in graph.find_descendants(package) | {package}
        for imported in graph.find_modules_directly_imported_by(module)
        if imported.startswith("wsdaemon.") and imported != "wsdaemon.strategies"
        and not imported.startswith(package + ".")
    }
    assert reached == set()


def test_public_face_for_strategy_authors() -> None:
    """wsdaemon.strategies is the one module strategy authors import from:
    the interfaces they implement, the context and requests they get, the
    errors and answers they give, a few helpers; each name documented."""
    assert set(wsdaemon.strategies.__all__) == {
        "IReplyStrategy", "IStrategyFactory", "IOptionCheck", "IHandshakeHook",
        "ISession", "IFlowControl", "StrategyContext", "OptionContext", "HandshakeRequest",
        "MessageLimits", "OptionError", "HandshakeRefused", "HandshakeAnswer",
        "reject_unknown_options", "SENDABLE_CLOSE_CODES", "SENDABLE_CLOSE_CODES_TEXT",
        "public_query", "public_headers", "visible"}
    for name in wsdaemon.strategies.__all__:
        assert f"L{{{name}}}" in (wsdaemon.strategies.__doc__ or ""), name
