"""
The README's examples: INI blocks as the daemon's parser reads them, and
the strategy example as the daemon runs it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock

from wsdaemon.config import ConfigError, load_config
from wsdaemon.config._reader import _parse
from wsdaemon.server.assembly import Assembly
from wsdaemon.testing import RecordingSession

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


def test_the_strategy_example_works(tmp_path: Path, monkeypatch: Any) -> None:
    """The README's shout.py, saved as it is, is checked when the config is
    read (a long suffix is refused there) and answers once built."""
    text = README.read_text(encoding="utf-8")
    source = re.search(r"```python\n(# shout\.py\n.*?)```", text, re.S)
    assert source is not None
    (tmp_path / "shout.py").write_text(source.group(1))
    monkeypatch.syspath_prepend(str(tmp_path))
    ini = "[wsdaemon]\nlisten = tcp:0:interface=127.0.0.1\n[route:/shout]\n" \
          "strategy = shout.ShoutFactory\nsuffix = {suffix}\n"
    config_path = tmp_path / "wsdaemon.ini"
    config_path.write_text(ini.format(suffix="?!?!"))
    with pytest.raises(ConfigError, match=r"\[route:/shout\] suffix: expected at most 3"):
        load_config(config_path)
    config_path.write_text(ini.format(suffix="?!"))
    config = load_config(config_path)
    assert config.routes[0].strategy.checked == "?!"
    route = Assembly(Clock()).fresh(config).routes[0]
    session = RecordingSession()
    assert route.strategy.message_received(session, "hi") == "HI?!"
