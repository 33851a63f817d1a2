"""
The C{[operator]} section, owned by the support component (issue 22, item
9): its values (L{OperatorSettings}) and its parser (L{OperatorSection}),
which the entry point hands the config layer
(L{wsdaemon.components.SECTIONS}). The config layer reads the file, checks
the sections' names and the generic rules, and calls L{OperatorSection.parse}
with the section (L{wsdaemon.interfaces.SectionReader}): every error names
the file, the line, the section and the key.

The keys only the retired item queue read (L{RETIRED_KEYS}) are ignored
with a one-line warning each, logged when the daemon is built or reloaded:
they were tuning knobs, and the shipped config set some of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any

from wsdaemon.config import (
    ASSETS_PATH,
    URL_PATH,
    DaemonConfig,
    parse_count_in,
    parse_seconds,
    parse_size,
    refuse_exposed_examples,
)
from wsdaemon.conversations.settings import ConversationSettings
from wsdaemon.interfaces import SectionContext, SectionReader
from wsdaemon.spelling import did_you_mean
from wsdaemon.support.conversation_settings import (
    CONVERSATION_KEYS,
    canned_path,
    conversation_settings,
    display_names,
)

__all__ = ["OPERATOR_SECTION", "RETIRED_KEYS", "OperatorSection", "OperatorSettings",
           "operator_settings"]

OPERATOR_SECTION = "operator"
MiB = 1024 * 1024
#: The keys of the channel and the store (the conversations' own are
#: L{CONVERSATION_KEYS}).
_KEYS = {"path", "console_path", "store", "tokens", "tokens_file", "fallback_after",
         "fallback_message", "max_open_per_route", "max_open_total", "max_message_size",
         "max_outbound_buffer"}
#: The retired queue's keys, with what takes their place: ignored, with a
#: warning.
RETIRED_KEYS = {
    "lease": "conversations are assigned, not leased (reassign_after moves a waiting one)",
    "fallback_when_offline": "offline_message is what a visitor gets when nobody is online",
    "keep_after_fallback": "a conversation stays open after the fallback",
    "max_open_per_client": "max_unanswered caps a visitor's unanswered messages",
    "max_item_size": "a route's max_message_size bounds a visitor's message",
    "page_size": "the operator channel's pages have sizes of their own",
    "preview_chars": "conversations keep previews of a fixed length",
}


@dataclass(frozen=True)
class OperatorSettings:
    """
    The C{[operator]} section.

    @ivar store_path: the SQLite file of the conversations (a retired
        queue's file is taken over on start); unused with a shared broker.
    @ivar tokens: secret token -> operator name.
    @ivar path: where operators connect (WebSocket).
    @ivar console_path: the web inbox's page.
    @ivar max_message_size: the operator channel's own limit on one
        message either way (independent of the client routes').
    @ivar max_outbound_buffer: bytes an operator that stops reading may
        leave waiting before it is cut off.
    @ivar model: C{conversations}, the only one.
    @ivar conversations: the conversation core's settings (routing,
        notices, caps), read from the same section.
    @ivar display_names: operator name -> the name visitors see.
    @ivar canned_path: the canned replies file, or None.
    @ivar shared: daemons share a broker: the conversations are in Redis.
    @ivar ignored: each retired key the section still sets, with its
        warning naming the file, line and key (L{RETIRED_KEYS}).
    """

    store_path: Path
    tokens: Mapping[str, str] = field(default_factory=dict)
    path: str = "/operator"
    console_path: str = "/console"
    max_message_size: int = 4 * MiB
    max_outbound_buffer: int = 4 * MiB
    model: str = "conversations"
    conversations: ConversationSettings = field(default_factory=ConversationSettings)
    display_names: Mapping[str, str] = field(default_factory=dict)
    canned_path: Path | None = None
    shared: bool = False
    ignored: Mapping[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        """
        @return: the operators' part of C{--check-config}'s line (token
            count, never a token).
        """
        store = "redis" if self.shared else str(self.store_path)
        line = (f"operators: {len(self.tokens)} token(s), channel {self.path}, console "
                f"{self.console_path}, store {store}")
        if self.ignored:
            line += f" (ignored, retired with the queue: {', '.join(self.ignored)})"
        return line


def operator_settings(config: DaemonConfig) -> OperatorSettings | None:
    """
    @return: C{config}'s C{[operator]} section, or None without one.
    """
    settings = config.sections.get(OPERATOR_SECTION)
    return settings if isinstance(settings, OperatorSettings) else None


def _url_path(reader: SectionReader, key: str) -> str:
    value = reader.values[key].strip()
    if not URL_PATH.fullmatch(value) or value == ASSETS_PATH or \
            value.startswith(ASSETS_PATH + "/"):
        raise reader.error(key, f"expected a URL path such as /operator (not under "
                                f"{ASSETS_PATH}), got {value!r}")
    return value


def _ignored(reader: SectionReader) -> Mapping[str, str]:
    return MappingProxyType({
        key: str(reader.error(key, f"ignored since the item queue was retired ({instead}): "
                                   "remove this line"))
        for key, instead in RETIRED_KEYS.items() if key in reader.values})


def _check_keys(reader: SectionReader) -> None:
    """
    Every key known: the section's, or a retired one (ignored, warned
    about); a mistyped key is never offered a retired one as what was meant.
    """
    known = _KEYS | CONVERSATION_KEYS
    for key in reader.values:
        if key not in known and key not in RETIRED_KEYS:
            raise reader.error(key, f"unknown key{did_you_mean(key, known)}; "
                                    f"expected one of: {', '.join(sorted(known))}")


class OperatorSection:
    """
    The parser of C{[operator]} (L{wsdaemon.interfaces.ISectionParser}).
    """

    section = OPERATOR_SECTION

    def parse(self, reader: SectionReader, context: SectionContext) -> OperatorSettings:
        """
        @return: the section's settings; the operator channel and the inbox
            must not collide with a route, and the shipped example tokens
            are refused on any listener other than loopback.
        """
        _check_keys(reader)
        values = reader.values
        tokens = reader.secrets("tokens", "tokens_file", "operator token")
        refuse_exposed_examples(reader, "tokens", tokens, context.listen)
        settings: dict[str, Any] = {}
        for key in ("path", "console_path"):
            if key in values:
                settings[key] = _url_path(reader, key)
        shared: dict[str, Any] = {}
        if "fallback_after" in values:
            shared["fallback_after"] = reader.convert(
                "fallback_after", partial(parse_seconds, allow_zero=True))
        for key in ("max_open_per_route", "max_open_total"):
            if key in values:
                shared[key] = reader.convert(key, partial(parse_count_in, low=0, high=None))
        for key in ("max_message_size", "max_outbound_buffer"):
            if key in values:
                settings[key] = reader.convert(key, parse_size)
        if "fallback_message" in values:
            shared["fallback_message"] = values["fallback_message"].strip()
            if not shared["fallback_message"]:
                raise reader.error("fallback_message", "expected a message, got nothing")
        store = values.get("store", "wsdaemon-queue.sqlite3").strip()
        if not store:
            raise reader.error("store", "expected the path of the SQLite file")
        model, conversations = conversation_settings(reader, shared)
        result = OperatorSettings(
            store_path=reader.path.parent / store, tokens=tokens, model=model,
            conversations=conversations, display_names=display_names(reader, tokens),
            canned_path=canned_path(reader), shared=context.shared,
            ignored=_ignored(reader), **settings)
        _refuse_collisions(reader, result, context.routes)
        return result


def _refuse_collisions(reader: SectionReader, settings: OperatorSettings,
                       routes: tuple[str, ...]) -> None:
    for special in (settings.path, settings.console_path):
        clash = [route for route in routes
                 if special == route or special.startswith(route + "/")
                 or route.startswith(special + "/")]
        if clash:
            raise reader.error(None, f"{special} collides with route {clash[0]}; give the "
                                     "operator channel and console paths of their own")
