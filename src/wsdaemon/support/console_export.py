"""
The console's C{export FILE [#REF]}: a conversation's whole thread,
messages and notes, oldest first, as JSON Lines in a file: every page of
its history, then every text the pages cut, whole (C{text} requests), then
the file. Requests are queued as the console's follow-ups, one at a time.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from typing import Any

from wsdaemon.escaping import visible

__all__ = ["export_requests"]


def export_requests(target: str, reference: str, followups: deque[dict[str, Any]],
                    say: Callable[[str], None], complain: Callable[[str], None]
                    ) -> dict[str, Any]:
    """
    @return: the first request; each answer queues the next in C{followups}
        (a request's C{_then} gets its answer; C{_local} ones run in turn).
    """
    collected: list[dict[str, Any]] = []
    base = {"type": "history", "conversation": reference, "limit": 500}

    def page(answer: dict[str, Any]) -> None:
        collected[:0] = answer["entries"]
        conversation = answer["conversation"]["id"]
        if answer["more"]:
            followups.append({**base, "conversation": conversation,
                              "before": answer["before"],
                              "before_note": answer["before_note"], "_then": page})
            return
        for entry in collected:
            if entry.get("truncated"):
                followups.append(whole(conversation, entry, 0))
        followups.append({"type": "_local", "_then": write})

    def whole(conversation: str, entry: dict[str, Any], offset: int) -> dict[str, Any]:
        def take(answer: dict[str, Any]) -> None:
            entry["text"] = (entry["text"][:offset] if offset else "") + answer["text"]
            if answer["more"]:
                followups.appendleft(whole(conversation, entry, offset + len(answer["text"])))
            else:
                entry["truncated"] = False

        which = ({"seq": entry["seq"]} if entry["kind"] == "message"
                 else {"note": entry["note_id"]})
        return {"type": "text", "conversation": conversation, **which, "offset": offset,
                "_then": take}

    def write(_: Any) -> None:
        try:
            with open(target, "w", encoding="utf-8") as f:
                for entry in collected:
                    f.write(json.dumps(entry, ensure_ascii=False) + "\n")
        except OSError as e:
            complain(f"cannot write {target}: {e.strerror or e}")
            return
        say(f"ok: wrote {len(collected)} entries to {visible(target)}")

    return {**base, "_then": page}
