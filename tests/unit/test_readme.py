"""
The README's INI examples as the daemon's parser reads them.
"""

from __future__ import annotations

import re
from pathlib import Path

from wsdaemon.config._reader import _parse

README = Path(__file__).resolve().parents[2] / "README.md"
_SNIPPET = re.compile(r"```ini\n(.*?)```", re.S)
#: What a comment after a value would look like (inline comments are off).
_INLINE_COMMENT = re.compile(r"\s[;#]")


def test_every_ini_snippet_parses_without_inline_comments() -> None:
    """Every ```ini block of the README parses with the daemon's own parser,
    and no value carries what was meant as a trailing comment."""
    snippets = _SNIPPET.findall(README.read_text(encoding="utf-8"))
    assert len(snippets) >= 5
    for number, snippet in enumerate(snippets, 1):
        parser = _parse(Path(f"README.md#ini-{number}"), snippet)
        for section in parser.sections():
            for key, value in parser[section].items():
                assert not _INLINE_COMMENT.search(value), \
                    f"README ini block {number}: [{section}] {key} = {value!r}"
