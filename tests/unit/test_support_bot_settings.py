"""
A support route's bot options (issue 22, item 5): C{bot = FILE} read with
the scripted loader in bot mode (errors with the file and line),
C{bot_name}, C{handoff_phrases} (whole words, any case), C{bot_unmatched};
the others refused without C{bot}.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from wsdaemon.strategies.api import OptionContext, OptionError
from wsdaemon.support.bot_settings import (
    DEFAULT_BOT_NAME,
    DEFAULT_HANDOFF_PHRASES,
    MAX_PHRASES,
    BotSettings,
    Unmatched,
    bot_settings,
)

GOOD = '[[rule]]\nregex = "hi"\nreply = "Hello!"\n'


def read(tmp_path: Path, options: dict[str, str], rules: str = GOOD) -> BotSettings | None:
    (tmp_path / "bot.toml").write_text(rules, encoding="utf-8")
    return bot_settings(options, OptionContext(tmp_path, "/support", True))


def test_defaults(tmp_path: Path) -> None:
    """bot alone: named Bot, the default phrases, unmatched messages handed over."""
    settings = read(tmp_path, {"bot": "bot.toml"})
    assert settings is not None
    assert settings.name == DEFAULT_BOT_NAME == "Bot"
    assert settings.handoff_phrases == DEFAULT_HANDOFF_PHRASES
    assert settings.unmatched is Unmatched.HANDOFF
    assert [r.name for r in settings.rules.rules] == ["rule 1"]
    assert read(tmp_path, {}) is None


def test_every_option(tmp_path: Path) -> None:
    """Name, phrases (lower-cased, spaces collapsed, duplicates once), silent."""
    settings = read(tmp_path, {"bot": "bot.toml", "bot_name": "  Robo   the bot ",
                               "handoff_phrases": "Human, real   person,, human",
                               "bot_unmatched": "SILENT"})
    assert settings is not None
    assert settings.name == "Robo the bot"
    assert settings.handoff_phrases == ("human", "real person")
    assert settings.unmatched is Unmatched.SILENT
    assert settings.asked_for_person("get me a REAL\tperson") == "REAL person"
    assert settings.asked_for_person("a person") is None
    assert settings.asked_for_person("humans") is None
    none = read(tmp_path, {"bot": "bot.toml", "handoff_phrases": " "})
    assert none is not None and none.asked_for_person("human") is None


@pytest.mark.parametrize(("options", "key", "expected"), [
    ({"bot_name": "Robo"}, "bot_name", "needs bot = FILE"),
    ({"bot": " "}, "bot", "expected the path of the bot's rules file"),
    ({"bot": "missing.toml"}, "bot", "missing.toml not found"),
    ({"bot": "bot.toml", "bot_name": "x" * 65}, "bot_name", "1 to 64 characters"),
    ({"bot": "bot.toml", "bot_name": "a\x07b"}, "bot_name", "printable"),
    ({"bot": "bot.toml", "handoff_phrases": "human, wo-man"}, "handoff_phrases",
     "got 'wo-man'"),
    ({"bot": "bot.toml", "handoff_phrases": ",".join(f"w{n}" for n in range(MAX_PHRASES + 1))},
     "handoff_phrases", f"at most {MAX_PHRASES} phrases"),
    ({"bot": "bot.toml", "bot_unmatched": "handof"}, "bot_unmatched",
     "expected handoff or silent, got 'handof' (did you mean handoff?)"),
])
def test_mistakes(tmp_path: Path, options: dict[str, str], key: str, expected: str) -> None:
    """Each mistake names its option and what was expected."""
    with pytest.raises(OptionError) as caught:
        read(tmp_path, options)
    assert caught.value.key == key
    assert expected in caught.value.expected


def test_a_bad_rules_file_names_file_and_line(tmp_path: Path) -> None:
    """The scripted loader's own error, with the rules file and its line."""
    with pytest.raises(OptionError) as caught:
        read(tmp_path, {"bot": "bot.toml"}, '[[rule]]\nregex = "hi"\nclose = 1000\n')
    assert caught.value.key == "bot"
    assert caught.value.path == tmp_path / "bot.toml" and caught.value.line == 3
    assert "close: not in a bot's rules" in caught.value.expected
