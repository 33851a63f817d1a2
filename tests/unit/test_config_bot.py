"""
A support route's bot in the config (issue 22, item 5): C{bot = FILE} on an
operator route of C{model = conversations} is read when the config is,
and every mistake is one line naming the config file, line, section and
key, and the rules file's own line.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet.task import Clock

from wsdaemon.config import ConfigError, load_config
from wsdaemon.support.bot_settings import BotSettings, Unmatched


def config_with(tmp_path: Path, route: str, model: str = "conversations") -> Path:
    path = tmp_path / "wsdaemon.ini"
    path.write_text(
        "[wsdaemon]\nlisten = tcp:8080:interface=127.0.0.1\n\n"
        f"[operator]\nmodel = {model}\ntokens = alice:0123456789abcdef0123\n\n"
        f"[route:/support]\nstrategy = operator\n{route}\n", encoding="utf-8")
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, clock=Clock())
    return str(caught.value)


def test_the_bot_is_read_with_the_config(tmp_path: Path) -> None:
    """The route's bot is checked once, at load: its value travels with the route."""
    (tmp_path / "bot.toml").write_text('[[rule]]\nregex = "hi"\nreply = "Hello!"\n')
    config = load_config(config_with(tmp_path, "bot = bot.toml\nbot_name = Robo\n"
                                               "bot_unmatched = silent"), clock=Clock())
    [route] = config.routes
    checked = route.strategy.checked
    assert isinstance(checked, BotSettings)
    assert checked.name == "Robo" and checked.unmatched is Unmatched.SILENT


def test_a_missing_bot_file(tmp_path: Path) -> None:
    """Named with the config file, its line, section and key."""
    path = config_with(tmp_path, "bot = nowhere.toml")
    message = error_of(path)
    assert message.startswith(f"{path}:10: [route:/support] bot: the bot's rules file ")
    assert message.endswith("nowhere.toml not found")


def test_a_bad_bot_file_names_its_own_line(tmp_path: Path) -> None:
    """The scripted loader's error, at the rules file's line."""
    rules = tmp_path / "bot.toml"
    rules.write_text('[[rule]]\nregex = "hi"\nreply = "Hello!"\n\n[[rule]]\ntext = "x"\n'
                     'drop = true\n')
    message = error_of(config_with(tmp_path, "bot = bot.toml"))
    assert f"{rules}:7" in message
    assert "drop: not in a bot's rules" in message


def test_bot_options_need_a_bot(tmp_path: Path) -> None:
    """bot_name without bot is refused."""
    assert "needs bot = FILE" in error_of(config_with(tmp_path, "bot_name = Robo"))
