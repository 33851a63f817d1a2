"""
Finding a strategy factory by the name the config gives.

A name is, in this order of lookup:
  1. a built-in short name (C{echo}, ...);
  2. the C{name} of a Twisted plugin providing L{IStrategyFactory} found in
     any C{twisted/plugins/} folder on C{sys.path};
  3. a dotted path (C{package.module.attribute}) to a provider of
     L{IStrategyFactory}, or to a class whose instances provide it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

from twisted.plugin import getPlugins
from twisted.python.reflect import namedAny

from wsdaemon.interfaces import IStrategyFactory
from wsdaemon.spelling import did_you_mean

__all__ = ["BUILTIN_STRATEGIES", "StrategyRegistry", "UnknownStrategyError"]

#: Built-in strategies, short name -> "module:attribute" (imported lazily).
BUILTIN_STRATEGIES: dict[str, str] = {
    "echo": "wsdaemon.strategies.echo:EchoStrategyFactory",
    "scripted": "wsdaemon.strategies.scripted.strategy:ScriptedStrategyFactory",
    # Conversations with operators: this one checks a route's options when
    # the config is read; the daemon serves the one the [operator] section's
    # component contributes, bound to its driver.
    "operator": "wsdaemon.support.visitor:ConversationStrategyFactory",
    "proxy": "wsdaemon.strategies.proxy.strategy:ProxyStrategyFactory",
    "command": "wsdaemon.strategies.command.strategy:CommandStrategyFactory",
    "webhook": "wsdaemon.strategies.webhook.strategy:WebhookStrategyFactory",
}


class UnknownStrategyError(LookupError):
    """
    No strategy goes by that name; C{str()} says which ones do.
    """


def _load_builtin(spec: str) -> object:
    module_name, _, attribute = spec.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def _plugins() -> list[IStrategyFactory]:
    return list(getPlugins(IStrategyFactory))


def _as_factory(obj: object) -> IStrategyFactory | None:
    if IStrategyFactory.providedBy(obj):
        return obj
    if isinstance(obj, type) and IStrategyFactory.implementedBy(obj):
        factory_class: Any = obj
        instance: IStrategyFactory = factory_class()
        return instance
    return None


class StrategyRegistry:
    """
    Resolves strategy names to factories.

    @param builtins: short name -> "module:attribute".
    @param plugins: returns the factories found as Twisted plugins; only
        called when a name is not a built-in (the scan touches every plugin
        module on C{sys.path}).
    """

    def __init__(
        self,
        builtins: dict[str, str] | None = None,
        plugins: Callable[[], Iterable[IStrategyFactory]] = _plugins,
    ) -> None:
        self._builtins = dict(BUILTIN_STRATEGIES if builtins is None else builtins)
        self._plugins = plugins
        self._plugin_cache: dict[str, IStrategyFactory] | None = None

    def _plugin_map(self) -> dict[str, IStrategyFactory]:
        if self._plugin_cache is None:
            found: dict[str, IStrategyFactory] = {}
            for plugin in self._plugins():
                found.setdefault(str(plugin.name), plugin)
            self._plugin_cache = found
        return self._plugin_cache

    def known_names(self) -> list[str]:
        """
        @return: the built-in and plugin names, sorted, built-ins first.
        """
        plugin_names = sorted(set(self._plugin_map()) - set(self._builtins))
        return sorted(self._builtins) + plugin_names

    def resolve(self, name: str) -> IStrategyFactory:
        """
        @return: the factory called C{name}.
        @raise UnknownStrategyError: with a message listing the known names.
        """
        if name in self._builtins:
            factory = _as_factory(_load_builtin(self._builtins[name]))
            if factory is None:  # pragma: no cover - a packaging mistake
                raise UnknownStrategyError(f"built-in strategy {name!r} is broken")
            return factory
        plugin = self._plugin_map().get(name)
        if plugin is not None:
            return plugin
        if "." in name:
            try:
                obj = namedAny(name)
            except Exception as e:
                raise UnknownStrategyError(
                    f"cannot import {name!r} ({type(e).__name__}: {e}); expected a dotted "
                    "path to an IStrategyFactory provider"
                ) from None
            factory = _as_factory(obj)
            if factory is None:
                raise UnknownStrategyError(
                    f"{name!r} does not provide IStrategyFactory; expected a dotted path to "
                    "an IStrategyFactory provider or a class implementing it"
                )
            return factory
        known = self.known_names()
        raise UnknownStrategyError(
            f"unknown strategy {name!r}{did_you_mean(name, known)}; expected one of: "
            f"{', '.join(known)}, or a dotted path (package.module.attribute)"
        )
