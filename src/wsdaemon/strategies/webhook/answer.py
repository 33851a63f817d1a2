"""
What the backend's answer to one event says to do.

A C{text/*} body is one text message back (an empty body, or 204: nothing).
A JSON body (C{application/json}) is an object, every key optional::

    {"messages": [{"text": "hi"}, {"binary_b64": "AAE="}],
     "close": {"code": 4000, "reason": "bye"},
     "state": <any JSON, sent back with the connection's next events>,
     "client_id": "alice"}

C{client_id} only in the answer to C{connect}: the client's id from then
on (1 to 128 characters, none of them control characters).

Anything else (another type, JSON that does not follow this, a close code
the daemon may not send, a state over C{max_state}) is the backend's
mistake: L{AnswerError}.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from wsdaemon.strategies import SENDABLE_CLOSE_CODES, SENDABLE_CLOSE_CODES_TEXT, visible

__all__ = ["Answer", "AnswerError", "parse_answer"]

_KEYS = {"messages", "close", "state"}
#: The most messages one answer may hold.
MAX_MESSAGES = 1000


class AnswerError(ValueError):
    """The backend's answer does not say anything the daemon can do."""


@dataclass(frozen=True)
class Answer:
    """
    @ivar state: the new state as JSON text; None to keep the one held.
    @ivar client_id: the client's id from now on (connect answers only).
    """

    messages: tuple[str | bytes, ...] = ()
    close: tuple[int, str] | None = None
    state: str | None = None
    client_id: str | None = None


def _media_type(content_type: str) -> str:
    return content_type.partition(";")[0].strip().lower()


def _message(item: Any, index: int) -> str | bytes:
    if isinstance(item, dict) and set(item) == {"text"} and isinstance(item["text"], str):
        return str(item["text"])
    if isinstance(item, dict) and set(item) == {"binary_b64"} and isinstance(
            item["binary_b64"], str):
        try:
            return base64.b64decode(item["binary_b64"], validate=True)
        except (binascii.Error, ValueError):
            raise AnswerError(f"messages[{index}].binary_b64 is not base64") from None
    raise AnswerError(f'messages[{index}] is neither {{"text": ...}} nor {{"binary_b64": ...}}')


def _close(value: Any) -> tuple[int, str]:
    if not isinstance(value, dict) or not set(value) <= {"code", "reason"}:
        raise AnswerError('close is not {"code": ..., "reason": ...}')
    code = value.get("code", 1000)
    reason = value.get("reason", "")
    if type(code) is not int or code not in SENDABLE_CLOSE_CODES:
        raise AnswerError(f"close.code is not one of {SENDABLE_CLOSE_CODES_TEXT}")
    if not isinstance(reason, str) or len(reason.encode("utf-8")) > 123:
        raise AnswerError("close.reason is not a text of at most 123 bytes")
    return code, reason


def _client_id(value: Any) -> str:
    if (not isinstance(value, str) or not 1 <= len(value) <= 128
            or visible(value) != value):
        raise AnswerError("client_id is not a text of 1 to 128 characters without control "
                          "characters")
    return value


def _json(body: bytes, max_state: int, connect: bool) -> Answer:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise AnswerError("the body is not valid JSON") from None
    if not isinstance(document, dict):
        raise AnswerError("the body is not a JSON object")
    unknown = sorted(set(document) - _KEYS - ({"client_id"} if connect else set()))
    if unknown:
        raise AnswerError(f"unknown key {unknown[0]!r} (expected messages, close, state"
                          f"{', client_id' if connect else ''})")
    items = document.get("messages", [])
    if not isinstance(items, list) or len(items) > MAX_MESSAGES:
        raise AnswerError(f"messages is not a list of at most {MAX_MESSAGES}")
    messages = tuple(_message(item, i) for i, item in enumerate(items))
    close = _close(document["close"]) if document.get("close") is not None else None
    state = None
    if "state" in document:
        state = json.dumps(document["state"], separators=(",", ":"), ensure_ascii=False)
        if len(state.encode("utf-8")) > max_state:
            raise AnswerError(f"state is over max_state ({max_state} bytes as JSON)")
    client_id = _client_id(document["client_id"]) if "client_id" in document else None
    return Answer(messages, close, state, client_id)


def parse_answer(status: int, content_type: str, body: bytes, max_state: int,
                 connect: bool = False) -> Answer:
    """
    @param status: a 2xx status (others are not answers).
    @param connect: whether it answers a C{connect} event (which may set
        C{client_id}).
    @return: what to do.
    @raise AnswerError: saying what is wrong with it.
    """
    if status == 204 or not body:
        return Answer()
    media = _media_type(content_type)
    if media == "application/json" or media.endswith("+json"):
        return _json(body, max_state, connect)
    if media.startswith("text/"):
        try:
            return Answer((body.decode("utf-8"),))
        except UnicodeDecodeError:
            raise AnswerError("the text body is not UTF-8") from None
    raise AnswerError(f"unsupported content type {media or '(none)'!r} (expected text/plain "
                      "or application/json)")
