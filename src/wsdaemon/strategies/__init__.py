"""
Reply strategies: what a route answers.

Built in: C{echo} (L{wsdaemon.strategies.echo}), C{scripted} (a rules file,
L{wsdaemon.strategies.scripted}) and C{operator} (humans answer from a
console, L{wsdaemon.strategies.operator}). L{wsdaemon.strategies.registry}
finds a factory by the name the config gives (built-in, Twisted plugin or
dotted path).

Writing your own: everything a strategy author needs is importable from
here (the interfaces themselves live in L{wsdaemon.interfaces}).
"""

from wsdaemon.interfaces import IOptionCheck, IReplyStrategy, ISession, IStrategyFactory
from wsdaemon.strategies.api import (
    OptionContext,
    OptionError,
    StrategyContext,
    reject_unknown_options,
)

__all__ = [
    "IOptionCheck",
    "IReplyStrategy",
    "ISession",
    "IStrategyFactory",
    "OptionContext",
    "OptionError",
    "StrategyContext",
    "reject_unknown_options",
]
