"""
The C{[operator]} keys of conversations (issue 22): how conversations are
routed and what visitors are told, read into the core's own value
(L{ConversationSettings}), plus the operators' display names and the
canned replies file. Part of the section's parser
(L{wsdaemon.support.settings}), which the config layer calls.

Conversations are the only model: C{model = conversations} is accepted
(it is the default), C{model = queue} is refused (the item queue was
retired; conversations take over its store on start).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any

from wsdaemon.config import parse_bool, parse_count, parse_seconds
from wsdaemon.conversations.settings import ConversationSettings, Routing
from wsdaemon.interfaces import SectionReader
from wsdaemon.spelling import did_you_mean

__all__ = ["CONVERSATION_KEYS", "DEFAULT_MODEL", "MODELS", "conversation_settings", "display_names"]

#: The engines an [operator] section may choose.
MODELS = ("conversations",)
#: Why C{model = queue} is refused.
QUEUE_RETIRED = (
    "the item queue was retired in this version; conversations take over its store on start "
    "(the SQLite file or Redis keys stay where they are): remove this line")
#: What an [operator] section without a C{model} key gets.
DEFAULT_MODEL = "conversations"
#: The keys this module reads (the section's other keys are the channel's
#: and the store's, read by L{wsdaemon.support.settings}).
CONVERSATION_KEYS = {
    "model", "routing", "capacity", "reassign_after", "notices_once", "ack_message",
    "offline_message", "contact_message", "max_unanswered", "typing_timeout",
    "display_names", "canned_file",
}
#: The longest display name an operator may be given.
MAX_DISPLAY_NAME = 64
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
#: Each notice's placeholders.
_PLACEHOLDERS: dict[str, tuple[str, ...]] = {
    "ack_message": (), "offline_message": (), "fallback_message": (),
    "contact_message": ("email",),
}


def _check_template(reader: SectionReader, key: str, text: str) -> None:
    """
    Notices are sent as written, but for their placeholders: a C{{word}}
    that is not one of them is a mistake the visitor would see verbatim.
    """
    allowed = _PLACEHOLDERS[key]
    for name in _PLACEHOLDER.findall(text):
        if name in allowed:
            continue
        if name in ("position", "item") and key == "ack_message":
            raise reader.error(key, (
                f"{{{name}}} is gone: conversations are assigned, not served as numbered items "
                "in queue order; write the acknowledgement without it, e.g. "
                "'Thanks! An operator will answer here soon.'"))
        wanted = ", ".join(f"{{{n}}}" for n in allowed) if allowed else "no placeholders"
        hint = did_you_mean(name, allowed, "{{{}}}")
        raise reader.error(key,
                           f"unknown placeholder {{{name}}}{hint}; expected {wanted}")


def _message(reader: SectionReader, key: str, default: str) -> str:
    values = reader.values
    if key not in values:
        return default
    text = values[key].strip()
    _check_template(reader, key, text)
    return text


def conversation_settings(reader: SectionReader,
                          shared: Mapping[str, Any]) -> tuple[str, ConversationSettings]:
    """
    @param shared: the values of the keys the queue and conversations share
        (C{fallback_after}, C{fallback_message}, C{max_open_per_route},
        C{max_open_total}), as the section gave them (absent: default).
    @return: the model (C{conversations}, the only one) and the core's
        settings.
    """
    values = reader.values
    model = values.get("model", DEFAULT_MODEL).strip().lower()
    if model == "queue":
        raise reader.error("model", QUEUE_RETIRED)
    if model not in MODELS:
        raise reader.error("model", f"expected {' or '.join(MODELS)}, "
                                    f"got {values['model'].strip()!r}"
                                    f"{did_you_mean(model, MODELS)}")
    settings: dict[str, Any] = {}
    if "routing" in values:
        raw = values["routing"].strip().lower()
        choices = [r.value for r in Routing]
        if raw not in choices:
            raise reader.error("routing", f"expected manual or auto, got "
                                      f"{values['routing'].strip()!r}"
                                      f"{did_you_mean(raw, choices)}")
        settings["routing"] = Routing(raw)
    if "capacity" in values:
        settings["default_capacity"] = reader.convert("capacity", parse_count)
    if "max_unanswered" in values:
        settings["max_unanswered"] = reader.convert("max_unanswered", parse_count)
    for key, allow_zero in (("reassign_after", True), ("typing_timeout", False)):
        if key in values:
            settings[key] = reader.convert(key, partial(parse_seconds, allow_zero=allow_zero))
    if "notices_once" in values:
        settings["notices_once"] = reader.convert("notices_once", parse_bool)
    defaults = ConversationSettings()
    for key in ("ack_message", "offline_message", "contact_message"):
        settings[key] = _message(reader, key, getattr(defaults, key))
    if "fallback_message" in shared:
        _check_template(reader, "fallback_message", shared["fallback_message"])
    for key in ("fallback_after", "fallback_message", "max_open_per_route", "max_open_total"):
        if key in shared:
            settings[key] = shared[key]
    return model, replace(defaults, **settings)


def display_names(reader: SectionReader, operators: Mapping[str, str]) -> Mapping[str, str]:
    """
    C{name: Display Name} lines: what visitors see as the operator's name.

    @param operators: token -> operator name (the section's tokens), so a
        display name for nobody is refused.
    @return: operator name -> display name; an operator without a line is
        shown by its name.
    """
    values = reader.values
    if "display_names" not in values:
        return MappingProxyType({})
    known = set(operators.values())
    names: dict[str, str] = {}
    for number, raw in enumerate(values["display_names"].splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, display = line.partition(":")
        name, display = name.strip(), " ".join(display.split())
        where = f"line {number} of this value: "
        if not sep or not _NAME.fullmatch(name) or not display:
            raise reader.error("display_names",
                               f"{where}expected `operator: Display Name`, got {line!r}")
        if name not in known:
            raise reader.error("display_names",
                               f"{where}{name!r} is not an operator of this section's tokens"
                               f"{did_you_mean(name, sorted(known))}")
        if len(display) > MAX_DISPLAY_NAME or not display.isprintable():
            raise reader.error("display_names",
                               f"{where}expected a printable name of at most "
                               f"{MAX_DISPLAY_NAME} characters for {name!r}")
        names[name] = display
    return MappingProxyType(names)


def canned_path(reader: SectionReader) -> Path | None:
    """
    @return: the canned replies file (relative to the config file), which
        must be readable now; None when the section names none.
    """
    if "canned_file" not in reader.values:
        return None
    path = reader.path_of("canned_file")
    try:
        path.read_bytes()
    except OSError as e:
        raise reader.error("canned_file",
                           f"cannot read {path}: {e.strerror or e}") from None
    return path
