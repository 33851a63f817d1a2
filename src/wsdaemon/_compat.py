"""
Old module names, kept importable after the layout moved them (0.1 -> 0.2).

C{import wsdaemon.strategy} (or any module below a moved package) gives the
module at its new place, the same object, with a DeprecationWarning naming
it. Nothing in wsdaemon imports an old name.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType
from typing import Any

__all__ = ["MOVED", "install"]

#: old name -> new name; a package's entry covers its modules too.
MOVED: dict[str, str] = {
    "wsdaemon.strategy": "wsdaemon.strategies.api",
    "wsdaemon.registry": "wsdaemon.strategies.registry",
    "wsdaemon.scripted": "wsdaemon.strategies.scripted",
    "wsdaemon.operators.records": "wsdaemon.records",
    "wsdaemon.operators.settings": "wsdaemon.config",
    "wsdaemon.operators": "wsdaemon.strategies.operator",
    "wsdaemon.push": "wsdaemon.broker.local",
    "wsdaemon.session": "wsdaemon.connections.session",
    "wsdaemon.sessions": "wsdaemon.connections.index",
    "wsdaemon.protocol": "wsdaemon.connections.protocol",
    "wsdaemon.backpressure": "wsdaemon.connections.backpressure",
    "wsdaemon.limits": "wsdaemon.connections.limits",
    "wsdaemon.stats": "wsdaemon.connections.stats",
    "wsdaemon.accel": "wsdaemon.connections.accel",
    "wsdaemon.directwrite": "wsdaemon.connections.directwrite",
    "wsdaemon.service": "wsdaemon.server.service",
    "wsdaemon.admin": "wsdaemon.server.admin",
    "wsdaemon.metrics": "wsdaemon.server.metrics",
    "wsdaemon.systemd": "wsdaemon.server.systemd",
    "wsdaemon.webroot": "wsdaemon.server.web",
    "wsdaemon.identity": "wsdaemon.connections.identity",
    "wsdaemon.broker.items": "wsdaemon.broker.mirror",
}


def new_name(old: str) -> str | None:
    """
    @return: where module C{old} lives now, or None if it did not move.
    """
    if old in MOVED:
        return MOVED[old]
    for prefix, target in MOVED.items():
        if old.startswith(prefix + "."):
            return target + old[len(prefix):]
    return None


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target
        self._spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(f"{spec.name} moved to {self.target}; import it from there",
                      DeprecationWarning, stacklevel=2)
        module = importlib.import_module(self.target)
        self._spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The module at its new place is already executed; importlib then
        # stores it in sys.modules under the old name as well. It has just
        # set the module's __spec__ to the alias: give it its own back.
        module.__spec__ = self._spec

    def get_code(self, fullname: str) -> object:
        """
        For C{python -m old.name}: run the module at its new place.
        """
        spec = importlib.util.find_spec(self.target)
        loader: Any = spec.loader if spec is not None else None
        return loader.get_code(self.target) if loader is not None else None


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: object = None,
                  target: object = None) -> importlib.machinery.ModuleSpec | None:
        moved = new_name(fullname)
        if moved is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Alias(moved))


_FINDER = _MovedFinder()


def install() -> None:
    """
    Make the old names importable (once per process).
    """
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
