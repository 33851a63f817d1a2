"""
A support route's bot, as its route options say (issue 22, item 5): read
and checked when the config is read (the operator strategy's option check
on C{[operator] model = conversations}), kept as an immutable value.

Route options (all but C{bot} and C{bot_url} need one of them):

- C{bot = FILE}: the bot's rules, a scripted rules file (TOML) read with
  C{bot=True} (L{wsdaemon.strategies.scripted.bot}), relative to the
  config file; every mistake named with the file and line.
- C{bot_url = URL} instead (issue 24, item 3): the team's own backend is
  the bot, each visitor message POSTed to it (its C{bot_*} options:
  L{wsdaemon.support.hook_bot_settings}).
- C{bot_name = Bot}: the name visitors and operators see on its messages.
- C{handoff_phrases = human, agent, person, operator}: a visitor message
  holding one of them (case-insensitive, whole words; a phrase may be
  several words) goes to the operators at once, the rules not asked.
  Empty: none.
- C{bot_unmatched = handoff}: what a message no rule answers (nor
  C{[default]}) does: C{handoff} to the operators, or C{silent} (it waits
  in the thread, which operators see, for an operator to take it). Rules
  only: a backend answering nothing leaves the message waiting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from wsdaemon.spelling import did_you_mean
from wsdaemon.strategies.api import OptionContext, OptionError
from wsdaemon.strategies.scripted.rules import RulesError, RuleSet, load_rules
from wsdaemon.support.hook_bot_settings import BACKEND_OPTIONS, BotBackend, bot_backend

__all__ = ["BOT_OPTIONS", "DEFAULT_BOT_NAME", "DEFAULT_HANDOFF_PHRASES", "MAX_BOT_NAME",
           "MAX_PHRASE", "MAX_PHRASES", "BotSettings", "Unmatched", "bot_settings"]

#: The route options a bot takes.
BOT_OPTIONS = ("bot", "bot_name", "handoff_phrases", "bot_unmatched", *BACKEND_OPTIONS)
DEFAULT_BOT_NAME = "Bot"
DEFAULT_HANDOFF_PHRASES = ("human", "agent", "person", "operator")
#: The longest bot name, in characters (as operators' display names).
MAX_BOT_NAME = 64
#: At most this many handoff phrases, each at most this many characters.
MAX_PHRASES = 50
MAX_PHRASE = 64
_WORD = re.compile(r"\w+")


class Unmatched(StrEnum):
    """What a visitor message no rule answers does."""

    HANDOFF = "handoff"
    SILENT = "silent"


def phrase_pattern(phrases: tuple[str, ...]) -> re.Pattern[str] | None:
    """
    @return: a pattern finding any phrase as whole words, case-insensitive,
        any run of spaces between its words (None: no phrases).
    """
    if not phrases:
        return None
    parts = sorted((r"\s+".join(map(re.escape, p.split())) for p in phrases), key=len,
                   reverse=True)
    return re.compile(r"(?<!\w)(?:" + "|".join(parts) + r")(?!\w)", re.IGNORECASE)


@dataclass(frozen=True)
class BotSettings:
    """
    @ivar rules: the bot's rules, checked (None: the bot is C{backend}).
    @ivar name: shown on its messages.
    @ivar handoff_phrases: lower-case phrases (words separated by one space).
    @ivar unmatched: what a message no rule answers does.
    @ivar backend: the team's backend that answers instead of rules.
    """

    rules: RuleSet | None
    name: str = DEFAULT_BOT_NAME
    handoff_phrases: tuple[str, ...] = DEFAULT_HANDOFF_PHRASES
    unmatched: Unmatched = Unmatched.HANDOFF
    backend: BotBackend | None = None

    _pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (self.rules is None) == (self.backend is None):
            raise ValueError("a bot has either rules or a backend")
        object.__setattr__(self, "_pattern", phrase_pattern(self.handoff_phrases))

    def asked_for_person(self, text: str) -> str | None:
        """@return: the handoff phrase C{text} holds (as written), or None."""
        found = self._pattern.search(text) if self._pattern is not None else None
        return None if found is None else " ".join(found.group(0).split())


def _phrases(raw: str) -> tuple[str, ...]:
    found: list[str] = []
    for part in raw.split(","):
        words = part.split()
        if not words:
            continue
        phrase = " ".join(words).lower()
        if len(phrase) > MAX_PHRASE or not all(_WORD.fullmatch(w) for w in words):
            raise OptionError("handoff_phrases", f"expected comma-separated words or phrases "
                              f"of letters and digits, each at most {MAX_PHRASE} characters, "
                              f"got {part.strip()!r}")
        if phrase not in found:
            found.append(phrase)
    if len(found) > MAX_PHRASES:
        raise OptionError("handoff_phrases", f"at most {MAX_PHRASES} phrases, got {len(found)}")
    return tuple(found)


def _name(raw: str) -> str:
    name = " ".join(raw.split())
    if not name or len(name) > MAX_BOT_NAME or not name.isprintable():
        raise OptionError("bot_name", f"expected a printable name of 1 to {MAX_BOT_NAME} "
                          f"characters, got {raw.strip()!r}")
    return name


def _rules(raw: str, context: OptionContext) -> RuleSet:
    if not raw.strip():
        raise OptionError("bot", "expected the path of the bot's rules file (TOML, the "
                          "scripted format), relative to the config file's directory")
    path = Path(context.config_dir, raw.strip())
    try:
        return load_rules(path, bot=True)
    except FileNotFoundError:
        raise OptionError("bot", f"the bot's rules file {path} not found") from None
    except OSError as e:
        raise OptionError("bot", f"cannot read the bot's rules file {path}: "
                          f"{e.strerror or e}") from None
    except RulesError as e:
        raise OptionError("bot", e.message, path=path, line=e.line) from None


def bot_settings(options: Mapping[str, str], context: OptionContext) -> BotSettings | None:
    """
    @return: the route's bot, its rules read and checked (None: it has none).
    @raise OptionError: naming the option (and the rules file's line).
    """
    if "bot" in options and "bot_url" in options:
        raise OptionError("bot_url", "a route's bot is either rules (bot = FILE) or the "
                          "team's backend (bot_url = URL), not both")
    if "bot" not in options and "bot_url" not in options:
        for key in BOT_OPTIONS:
            if key in options:
                raise OptionError(key, "needs bot = FILE (the bot's rules) or bot_url = URL "
                                  "(the team's backend) on the same route")
        return None
    rules, backend = None, None
    if "bot" in options:
        rules = _rules(options["bot"], context)
        for key in BACKEND_OPTIONS:
            if key in options:
                raise OptionError(key, "is for a backend bot (bot_url = URL); this route's "
                                  "bot is rules (bot = FILE)")
    else:
        backend = bot_backend(options, Path(context.config_dir))
        if "bot_unmatched" in options:
            raise OptionError("bot_unmatched", "is for a bot of rules (bot = FILE): a backend "
                              "that answers nothing (204) leaves the message to the operators' "
                              "thread, one that answers {\"handoff\": true} hands over")
    settings = BotSettings(rules, backend=backend)
    name = _name(options["bot_name"]) if "bot_name" in options else settings.name
    phrases = _phrases(options["handoff_phrases"]) if "handoff_phrases" in options \
        else settings.handoff_phrases
    unmatched = settings.unmatched
    if "bot_unmatched" in options:
        raw = options["bot_unmatched"].strip().lower()
        choices = [u.value for u in Unmatched]
        if raw not in choices:
            raise OptionError("bot_unmatched", f"expected handoff or silent, got "
                              f"{options['bot_unmatched'].strip()!r}"
                              f"{did_you_mean(raw, choices)}")
        unmatched = Unmatched(raw)
    return BotSettings(rules, name, phrases, unmatched, backend)
