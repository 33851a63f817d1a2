"""
Reading the INI text with line numbers, so that errors can name them.
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from wsdaemon.config._model import ConfigError
from wsdaemon.spelling import did_you_mean

ROUTE_PREFIX = "route:"


class _Reader:
    """
    Reads values out of a parsed file and turns failures into L{ConfigError}.
    """

    def __init__(self, path: Path, text: str, parser: configparser.ConfigParser,
                 environ: Mapping[str, str] | None = None) -> None:
        self.path = path
        self.parser = parser
        #: Where C{${CREDENTIALS_DIRECTORY}} is looked up (L{_credentials}).
        self.environ: Mapping[str, str] = environ if environ is not None else {}
        self._lines = text.splitlines()

    def line_of(self, section: str, key: str | None = None) -> int | None:
        """
        @return: the 1-based line of C{[section]} (or of C{key} in it).
        """
        current: str | None = None
        key_pattern = re.compile(rf"^\s*{re.escape(key)}\s*[=:]", re.IGNORECASE) if key else None
        for number, line in enumerate(self._lines, start=1):
            stripped = line.strip()
            if stripped.startswith("[") and "]" in stripped:
                current = stripped[1 : stripped.index("]")].strip()
                if key is None and current == section:
                    return number
                continue
            if current == section and key_pattern is not None and key_pattern.match(line):
                return number
        return None

    def error(self, section: str, key: str | None, message: str) -> ConfigError:
        return ConfigError(
            self.path, message, section=section, key=key, line=self.line_of(section, key)
        )

    def check_keys(self, section: str, allowed: Collection[str]) -> None:
        for key in self.parser[section]:
            if key not in allowed:
                raise self.error(section, key, f"unknown key{did_you_mean(key, allowed)}; "
                                               f"expected one of: {', '.join(sorted(allowed))}")

    def convert(self, section: str, key: str, parse: Callable[[str], Any]) -> Any:
        try:
            return parse(self.parser[section][key])
        except ValueError as e:
            raise self.error(section, key, str(e)) from None


def _read_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, "config file not found") from None
    except UnicodeDecodeError as e:
        raise ConfigError(path, f"config file is not UTF-8 text ({e.reason})") from None
    except OSError as e:
        raise ConfigError(path, f"cannot read config file: {e.strerror}") from None


def _parse(path: Path, text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(
        interpolation=None, default_section="\x00no-defaults", inline_comment_prefixes=None
    )
    try:
        parser.read_string(text, source=str(path))
    except configparser.DuplicateSectionError as e:
        message = "duplicate section"
        if e.section.startswith(ROUTE_PREFIX):
            message = f"duplicate route {e.section[len(ROUTE_PREFIX):]!r}"
        raise ConfigError(path, message, section=e.section, line=e.lineno) from None
    except configparser.DuplicateOptionError as e:
        raise ConfigError(
            path, "key given twice in one section", section=e.section, key=e.option,
            line=e.lineno,
        ) from None
    except configparser.MissingSectionHeaderError as e:
        raise ConfigError(
            path, "expected a [section] header before the first key", line=e.lineno
        ) from None
    except configparser.ParsingError as e:
        lineno, line = e.errors[0]
        raise ConfigError(
            path, f"expected 'key = value', got {line.strip()!r}", line=lineno
        ) from None
    return parser
