"""
One section of the file as its parser sees it: what the config layer hands
a component's section parser (L{wsdaemon.interfaces.ISectionParser}).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import TypeVar

from wsdaemon.config._credentials import read_path, read_secrets
from wsdaemon.config._model import ConfigError
from wsdaemon.config._reader import _Reader

__all__ = ["SectionView"]

_T = TypeVar("_T")


class SectionView:
    """
    L{wsdaemon.interfaces.SectionReader} on one section of a parsed file:
    every error it makes names the file, the line, the section and the key.
    """

    def __init__(self, reader: _Reader, section: str) -> None:
        self._reader = reader
        self._section = section

    @property
    def path(self) -> Path:
        return self._reader.path

    @property
    def section(self) -> str:
        return self._section

    @property
    def values(self) -> Mapping[str, str]:
        return self._reader.parser[self._section]

    def error(self, key: str | None, message: str) -> ConfigError:
        return self._reader.error(self._section, key, message)

    def convert(self, key: str, parse: Callable[[str], _T]) -> _T:
        value: _T = self._reader.convert(self._section, key, parse)
        return value

    def check_keys(self, allowed: Collection[str]) -> None:
        self._reader.check_keys(self._section, allowed)

    def path_of(self, key: str) -> Path:
        return read_path(self._reader, self._section, key)

    def secrets(self, inline_key: str, file_key: str, what: str) -> dict[str, str]:
        return read_secrets(self._reader, self._section, inline_key, file_key, what)
