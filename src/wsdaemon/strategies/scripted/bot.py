"""
What a bot's rules file may say: the same format as a scripted route's
(matchers, C{reply}/C{[[...send]]} with delays, templates, C{once},
C{cycle}, C{nth}, C{[[greeting]]}, C{[default]}), read by the same loader
with C{bot=True}, for a support route whose bot answers visitors first
(route option C{bot = FILE}, L{wsdaemon.support.bot}).

A bot writes text messages into a conversation's thread: nothing that acts
on a WebSocket connection means anything there (closing, dropping,
pausing, fragmenting, pinging, binary data, tickers, sequences, the
handshake and conditions on it), and a scenario's state would be shared
by every visitor of the route. Those keys are refused with their line, so
a rules file does not silently do less than it says.

A rule may hand the conversation over to the operators after its messages:
C{handoff = true} (the reason shown to operators is the rule's name) or
C{handoff = "why"}. Only a bot's file takes the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["BOT_ONLY", "MAX_HANDOFF_REASON", "handoff_reason", "refused_in_bot"]

#: The key only a bot's rules may use.
BOT_ONLY = "handoff"
#: The longest reason a rule may give (the core keeps this many characters).
MAX_HANDOFF_REASON = 200

_CONNECTION = "acts on a WebSocket connection, and a bot writes into a conversation"
#: Keys of a rule (or [default]) a bot's file refuses, and why.
_REFUSED_RULE_KEYS: dict[str, str] = {
    "close": _CONNECTION, "fail_close": _CONNECTION, "drop": _CONNECTION,
    "pause_reading": _CONNECTION, "stall_replies": _CONNECTION, "fragments": _CONNECTION,
    "ping": _CONNECTION, "broadcast": "would write to every visitor of the route",
    "steps": "sequences wait on a connection's next frames; use rules with nth or once",
    "start_ticker": "tickers would write to a visitor on their own",
    "stop_ticker": "tickers would write to a visitor on their own",
    "when": "a visitor's handshake is not a bot's input",
    "scenario": "a scenario's state would be shared by every visitor of the route",
    "when_state": "a scenario's state would be shared by every visitor of the route",
    "set_state": "a scenario's state would be shared by every visitor of the route",
}
#: Keys of a message table (C{[[...send]]}, C{[[greeting]]}) a bot refuses.
_REFUSED_MESSAGE_KEYS: dict[str, str] = {
    "hex": "a bot writes text messages", "base64": "a bot writes text messages",
    "fragments": _CONNECTION, "when": "a visitor's handshake is not a bot's input",
}
#: Top-level tables a bot's file refuses.
_REFUSED_TOP_KEYS: dict[str, str] = {
    "handshake": "the route's handshake is the support route's, not the bot's",
}


def _first(table: Mapping[str, Any], refused: Mapping[str, str]) -> tuple[str, str] | None:
    for key in table:
        if key in refused:
            return key, f"{key}: not in a bot's rules ({refused[key]})"
    return None


def refused_in_bot(table: Any, kind: str) -> tuple[str, str] | None:
    """
    @param table: a rule's, a message's (one C{[[...send]]} or
        C{[[greeting]]}) or the document's table, as parsed.
    @param kind: C{rule}, C{message} or C{top}.
    @return: (the first key a bot's file refuses, the message saying why),
        or None.
    """
    if not isinstance(table, Mapping):
        return None
    refused = {"rule": _REFUSED_RULE_KEYS, "message": _REFUSED_MESSAGE_KEYS,
               "top": _REFUSED_TOP_KEYS}[kind]
    return _first(table, refused)


def handoff_reason(value: Any, rule_name: str) -> str | None:
    """
    @param value: the rule's C{handoff}: true, false or a reason.
    @return: why the rule hands over (None: it does not).
    @raise ValueError: with what was expected.
    """
    if value is False:
        return None
    if value is True:
        return rule_name
    if isinstance(value, str) and value.strip() and len(value) <= MAX_HANDOFF_REASON \
            and value.isprintable():
        return " ".join(value.split())
    raise ValueError(f"handoff: expected true, false or a reason of 1 to "
                     f"{MAX_HANDOFF_REASON} printable characters for the operators, "
                     f"got {value!r}")
