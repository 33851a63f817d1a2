"""
What strategy factories are given and what they may raise (re-exported by
L{wsdaemon.strategies}, where strategy authors import them from).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from twisted.internet.interfaces import IReactorTime

__all__ = ["OptionContext", "OptionError", "StrategyContext", "reject_unknown_options"]


class OptionError(ValueError):
    """
    A strategy option is wrong.

    @ivar key: the option's name (None when the problem is not one key's).
    @ivar expected: what a correct value looks like, said to the user.
    @ivar line: a line number inside another file the option names (e.g. a
        rules file), with C{path}; None when the problem is the INI value.
    @ivar known: when C{key} is not an option of the strategy, the options
        it takes; None for any other problem. The config then words the
        message itself, suggesting the closest of these and of the route
        keys the daemon reads.
    """

    def __init__(
        self,
        key: str | None,
        expected: str,
        *,
        path: Path | None = None,
        line: int | None = None,
        known: Iterable[str] | None = None,
    ) -> None:
        super().__init__(expected)
        self.key = key
        self.expected = expected
        self.path = path
        self.line = line
        self.known = None if known is None else tuple(known)


@dataclass(frozen=True)
class StrategyContext:
    """
    Everything a strategy may use besides its options.

    @ivar clock: the only source of time and timers a strategy may use.
    @ivar config_dir: the directory of the INI file, for relative paths.
    @ivar route: the URL path the strategy serves.
    @ivar checked: what the factory's C{check} returned for these options
        when the config was read (see L{wsdaemon.interfaces.IOptionCheck}),
        or None: then C{create} checks the options itself.
    """

    clock: IReactorTime
    config_dir: Path
    route: str
    checked: object = None


@dataclass(frozen=True)
class OptionContext:
    """
    What a factory's option check may look at: nothing that runs.

    @ivar config_dir: the directory of the INI file, for relative paths.
    @ivar route: the URL path the strategy will serve.
    @ivar sections: the names of the config file's sections (C{operator},
        C{route:/chat}...), so that a check can say what else a strategy
        needs ("needs an [operator] section").
    """

    config_dir: Path
    route: str
    sections: frozenset[str] = frozenset()


def reject_unknown_options(options: Mapping[str, str], known: Iterable[str]) -> None:
    """
    Raise L{OptionError} for the first option not in C{known}.
    """
    allowed = sorted(known)
    for key in options:
        if key not in allowed:
            wanted = ", ".join(allowed) if allowed else "no strategy options"
            raise OptionError(key, f"unknown option; this strategy takes {wanted}",
                              known=allowed)
