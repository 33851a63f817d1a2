"""
What a backend bot's answer to a visitor message says (issue 24, item 3).

- status 204, or an empty body: nothing (the message waits in the thread
  the operators read, the bot keeps the conversation);
- a C{text/*} body: one message of the bot;
- a JSON body (C{application/json}), every key optional::

      {"messages": [{"text": "We open at 9."}], "handoff": true}

  C{handoff}: C{true} (or a reason, a text, kept as the handoff's note)
  hands the conversation to the operators after the messages; C{false} or
  absent: the bot keeps it.

Each text is at most L{MAX_TEXT_BYTES} (as a visitor's), at most
L{MAX_MESSAGES} of them. Anything else is the backend's mistake
(L{BotAnswerError}); the conversation is then handed to the operators.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from wsdaemon.support.visitor_protocol import MAX_TEXT_BYTES

__all__ = ["BACKEND_HANDOFF", "MAX_MESSAGES", "BotAnswer", "BotAnswerError",
           "parse_bot_answer"]

#: The most messages one answer may hold.
MAX_MESSAGES = 20
#: The handoff's note when the backend gives no reason.
BACKEND_HANDOFF = "the bot's backend handed over"


class BotAnswerError(ValueError):
    """The backend's answer does not say anything the bot can do."""


@dataclass(frozen=True)
class BotAnswer:
    """
    @ivar handoff: the reason to hand over (None: the bot keeps it).
    """

    messages: tuple[str, ...] = ()
    handoff: str | None = None


def _text(text: str, where: str) -> str:
    if len(text.encode("utf-8", "surrogatepass")) > MAX_TEXT_BYTES:
        raise BotAnswerError(f"{where} is over {MAX_TEXT_BYTES} bytes")
    return text


def _message(item: Any, index: int) -> str:
    if isinstance(item, dict) and set(item) == {"text"} and isinstance(item["text"], str):
        return _text(item["text"], f"messages[{index}].text")
    raise BotAnswerError(f'messages[{index}] is not {{"text": "..."}}')


def _handoff(value: Any) -> str | None:
    if value is None or value is False:
        return None
    if value is True:
        return BACKEND_HANDOFF
    if isinstance(value, str):
        return " ".join(value.split()) or BACKEND_HANDOFF
    raise BotAnswerError("handoff is not true, false or a reason (text)")


def _json(body: bytes) -> BotAnswer:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BotAnswerError("the body is not valid JSON") from None
    if not isinstance(document, dict):
        raise BotAnswerError("the body is not a JSON object")
    unknown = sorted(set(document) - {"messages", "handoff"})
    if unknown:
        raise BotAnswerError(f"unknown key {unknown[0]!r} (expected messages, handoff)")
    items = document.get("messages", [])
    if not isinstance(items, list) or len(items) > MAX_MESSAGES:
        raise BotAnswerError(f"messages is not a list of at most {MAX_MESSAGES}")
    messages = tuple(m for m in (_message(item, i) for i, item in enumerate(items))
                     if m.strip())
    return BotAnswer(messages, _handoff(document.get("handoff")))


def parse_bot_answer(status: int, content_type: str, body: bytes) -> BotAnswer:
    """
    @param status: a 2xx status (others are not answers).
    @raise BotAnswerError: saying what is wrong with it.
    """
    if status == 204 or not body.strip():
        return BotAnswer()
    media = content_type.partition(";")[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return _json(body)
    if media.startswith("text/"):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise BotAnswerError("the text body is not UTF-8") from None
        return BotAnswer((_text(text, "the text body"),))
    raise BotAnswerError(f"unsupported content type {media or '(none)'!r} (expected "
                         "text/plain or application/json)")
