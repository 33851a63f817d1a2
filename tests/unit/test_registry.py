"""
Finding strategies by built-in name, plugin name and dotted path.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import twisted.plugins

from wsdaemon.interfaces import IStrategyFactory
from wsdaemon.strategies.echo import EchoStrategyFactory
from wsdaemon.strategies.registry import BUILTIN_STRATEGIES, StrategyRegistry, UnknownStrategyError

THIRDPARTY = Path(__file__).resolve().parent.parent / "thirdparty"


@pytest.fixture
def thirdparty_on_path() -> Iterator[None]:
    # twisted.plugins computes its search path once, at import: extend both.
    plugin_dir = str(THIRDPARTY / "twisted" / "plugins")
    sys.path.insert(0, str(THIRDPARTY))
    twisted.plugins.__path__.append(plugin_dir)
    try:
        yield
    finally:
        sys.path.remove(str(THIRDPARTY))
        twisted.plugins.__path__.remove(plugin_dir)
        sys.modules.pop("twisted.plugins.shout_plugin", None)
        sys.modules.pop("shout_strategy", None)


def test_builtin_echo() -> None:
    """Builtin echo."""
    factory = StrategyRegistry(plugins=lambda: []).resolve("echo")
    assert isinstance(factory, EchoStrategyFactory)
    assert IStrategyFactory.providedBy(factory)


def test_every_builtin_resolves() -> None:
    """Every builtin resolves."""
    registry = StrategyRegistry(plugins=lambda: [])
    for name in BUILTIN_STRATEGIES:
        assert registry.resolve(name).name == name


def test_unknown_lists_known_names() -> None:
    """Unknown lists known names."""
    with pytest.raises(UnknownStrategyError, match=r"unknown strategy 'nope'.*echo"):
        StrategyRegistry(plugins=lambda: []).resolve("nope")


def test_dotted_path_to_instance(thirdparty_on_path: None) -> None:
    """Dotted path to instance."""
    factory = StrategyRegistry(plugins=lambda: []).resolve("shout_strategy.shout")
    assert factory.name == "shout"


def test_dotted_path_to_class(thirdparty_on_path: None) -> None:
    """Dotted path to class."""
    factory = StrategyRegistry(plugins=lambda: []).resolve("shout_strategy.ShoutFactory")
    assert IStrategyFactory.providedBy(factory)


def test_dotted_path_not_a_factory() -> None:
    """Dotted path not a factory."""
    with pytest.raises(UnknownStrategyError, match="does not provide IStrategyFactory"):
        StrategyRegistry(plugins=lambda: []).resolve("os.path.join")


def test_plugin_by_name(thirdparty_on_path: None) -> None:
    """A Twisted plugin found on sys.path is selectable by its name."""
    registry = StrategyRegistry()
    assert "shout" in registry.known_names()
    assert registry.resolve("shout").description == "answers in capitals"


def test_plugins_not_scanned_for_builtins() -> None:
    """Resolving a built-in never scans plugin modules (the scan imports them)."""

    def boom() -> list[IStrategyFactory]:
        raise AssertionError("plugin scan")

    assert StrategyRegistry(plugins=boom).resolve("echo").name == "echo"
