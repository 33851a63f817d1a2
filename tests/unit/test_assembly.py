"""
The assembly: config values in, a running daemon out; a reload builds the
new routes around what persists and swaps, or changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactorClock

from wsdaemon.components import operator_component
from wsdaemon.config import ConfigError, load_config
from wsdaemon.interfaces import IReplyStrategy
from wsdaemon.server.assembly import Assembly
from wsdaemon.strategies.echo import EchoStrategy
from wsdaemon.strategies.scripted.strategy import ScriptedStrategy
from wsdaemon.support.component import SupportComponent
from wsdaemon.support.visitor import ConversationStrategy
from wsdaemon.testing import RecordingSession

CONFIG = """
[wsdaemon]
listen = {listen}

[operator]
tokens = alice:aaaaaaaaaaaaaaaaaaaaaaaa
store = q.sqlite3

[route:/echo]
strategy = echo

[route:/bot]
strategy = scripted
rules = bot.toml

[route:/support]
strategy = operator
"""
RULES = '[[rule]]\ntext = "ping"\nreply = "{reply}"\n'


def daemon(write_config: Callable[..., Path], listen: str = "tcp:8080:interface=127.0.0.1"
           ) -> tuple[Assembly, Path]:
    path = write_config(CONFIG.format(listen=listen))
    (path.parent / "bot.toml").write_text(RULES.format(reply="pong"))
    reactor = MemoryReactorClock()
    assembly = Assembly(reactor, lambda: load_config(path), components=operator_component)
    assembly.build(load_config(path), handle_signals=False)
    return assembly, path


def answer(strategy: IReplyStrategy) -> list[str | bytes]:
    session = RecordingSession()
    strategy.connection_opened(session)
    reply = strategy.message_received(session, "ping")
    strategy.connection_closed(session, 1000, "")
    return session.sent + ([reply] if isinstance(reply, str) else list(reply or []))


def test_build_makes_every_part(write_config: Callable[..., Path]) -> None:
    """Each route gets its strategy built by its factory, the operator route
    on the one conversations component."""
    assembly, _ = daemon(write_config)
    service = assembly.service
    assert service is not None
    strategies = {route.path: route.strategy for route in service.parts.routes}
    assert isinstance(strategies["/echo"], EchoStrategy)
    assert isinstance(strategies["/bot"], ScriptedStrategy)
    support = strategies["/support"]
    component = service.parts.component
    assert isinstance(component, SupportComponent)
    assert isinstance(support, ConversationStrategy) and support.driver is component.driver
    assert service.parts.link is None
    assert set(service.webroot.factories) == {"/echo", "/bot", "/support"}


def test_reload_builds_new_routes_and_keeps_what_persists(
        write_config: Callable[..., Path]) -> None:
    """A reload re-reads the rules file, builds new strategies, and keeps the
    component, the route factories and the service's index."""
    assembly, path = daemon(write_config)
    service = assembly.service
    assert service is not None
    before = service.parts
    factories = dict(service.webroot.factories)
    (path.parent / "bot.toml").write_text(RULES.format(reply="PONG"))
    after = assembly.reload()
    assert service.parts is after and after.component is before.component
    bot = {route.path: route for route in after.routes}["/bot"]
    old_bot = {route.path: route for route in before.routes}["/bot"]
    assert bot.strategy is not old_bot.strategy
    assert isinstance(bot.strategy, ScriptedStrategy)
    assert answer(bot.strategy) == ["PONG"] and answer(old_bot.strategy) == ["pong"]
    assert service.webroot.factories == factories
    assert all(factories[r.path].route is r for r in after.routes)


@pytest.mark.parametrize("change, key", [
    (lambda text: text.replace("rules = bot.toml", "rules = missing.toml"), "rules"),
    (lambda text: text.replace("tcp:8080", "tcp:8081"), "listen"),
    (lambda text: text.replace("store = q.sqlite3", "store = other.sqlite3"), "store"),
])
def test_a_refused_reload_changes_nothing(write_config: Callable[..., Path],
                                          change: Callable[[str], str], key: str) -> None:
    """A wrong config, or one only a restart can apply, raises ConfigError
    naming the key, and the daemon keeps every part it had."""
    assembly, path = daemon(write_config)
    service = assembly.service
    assert service is not None
    before, resource = service.parts, service.site.resource
    path.write_text(change(path.read_text()))
    with pytest.raises(ConfigError) as error:
        assembly.reload()
    assert error.value.key == key
    assert service.parts is before and service.site.resource is resource
