"""
What a commit's event in the stream tells the other daemons sharing Redis
(L{wsdaemon.support.redis_feed}): the daemon and the commit's number, the
changed conversations' records, and the transition's effects for
connections (deliveries, visitor signals, operator notifications, the
team's changes), as plain JSON values; and that read back.

Not sent: the commit itself (the records are), timers (each daemon derives
its own from the records), measures (taken where it was decided), refusals
(answered to the connection that sent the message) and acknowledgements (by
the daemon the message came through: the visitor's tabs on other daemons
get the message itself). Typing is
not kept in records, but it is news: a record carries who is typing; a
notification's conversation is named when it is one of the records, else
sent whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wsdaemon.conversations.codec import (
    conversation_from_row,
    conversation_row,
    message_from_row,
    message_row,
    note_from_row,
    note_row,
)
from wsdaemon.conversations.effects import (
    AnnounceAvailability,
    ConfirmVisitorMessage,
    DeliverMessage,
    Effect,
    NotifyOperators,
    NotifyTeam,
    SignalVisitor,
)
from wsdaemon.conversations.model import (
    Availability,
    Conversation,
    Message,
    conversation_id_for,
    evolve,
)
from wsdaemon.conversations.transition import Transition
from wsdaemon.support.peers import Adopted

__all__ = ["NEWS_TYPES", "Change", "decode_change", "encode_news"]


@dataclass(frozen=True)
class Change:
    """
    A transition another daemon committed, as its event tells it.

    @ivar token: the commit's number on its daemon.
    @ivar last_chosen: the round's place after it.
    @ivar team_raised: the operators whose load it raised, with their
        raises counted once it was written (L{wsdaemon.support.redis_scripts.COMMIT}).
    """

    daemon: str
    token: int
    conversations: tuple[Conversation, ...]
    effects: tuple[Effect, ...]
    last_chosen: str | None
    durable: bool = True
    team_raised: dict[str, int] | None = None

    @property
    def adopted(self) -> Adopted:
        """What the driver takes of it."""
        return Adopted(self.conversations, self.effects, self.last_chosen, self.durable)

    @property
    def lane(self) -> str | None:
        return self.adopted.lane


def _row(c: Conversation) -> dict[str, Any]:
    """The store's row, and who is typing (not stored, but news)."""
    row = conversation_row(c)
    if c.typing:
        row["typing"] = [list(entry) for entry in c.typing]
    if c.visitor_typing_until is not None:
        row["visitor_typing_until"] = c.visitor_typing_until
    return row


def _from_row(row: dict[str, Any]) -> Conversation:
    conversation = conversation_from_row(row)
    if "typing" in row or "visitor_typing_until" in row:
        conversation = evolve(
            conversation, typing=tuple((str(n), float(u)) for n, u in row.get("typing", ())),
            visitor_typing_until=row.get("visitor_typing_until"))
    return conversation


def _conversation(c: Conversation, rows: dict[str, Conversation]) -> Any:
    """A conversation the rows hold as it is: named; else its whole row."""
    return c.conversation_id if rows.get(c.conversation_id) == c else _row(c)


def _effect_news(effect: Effect, rows: dict[str, Conversation],
                 stored: dict[tuple[str, int], Message]) -> dict[str, Any] | None:
    if isinstance(effect, DeliverMessage):
        return {"k": "deliver", "route": effect.route, "visitor": effect.visitor,
                "message": message_row(effect.message)}
    if isinstance(effect, ConfirmVisitorMessage):
        # The visitor's own message: acknowledged by the daemon it was sent
        # through; the visitor's tabs on other daemons get it as a message.
        message = stored.get((conversation_id_for(effect.route, effect.visitor), effect.seq))
        if effect.duplicate or message is None:
            return None
        return {"k": "deliver", "route": effect.route, "visitor": effect.visitor,
                "message": message_row(message)}
    if isinstance(effect, SignalVisitor):
        return {"k": "signal", "route": effect.route, "visitor": effect.visitor,
                "signal": effect.signal, "on": effect.on, "name": effect.name,
                "upto": effect.upto, "status": effect.status}
    if isinstance(effect, AnnounceAvailability):
        return {"k": "announce", "available": effect.available}
    if isinstance(effect, NotifyOperators):
        return {"k": "notify", "kind": effect.kind,
                "conversation": _conversation(effect.conversation, rows),
                "message": None if effect.message is None else message_row(effect.message),
                "note": None if effect.note is None else note_row(effect.note),
                "operator": effect.operator, "actor": effect.actor}
    if isinstance(effect, NotifyTeam):
        news = {"k": "team", "operator": effect.operator, "availability": effect.availability,
                "capacity": effect.capacity, "load": effect.load}
        if effect.joined or effect.left:
            news["roster"] = "joined" if effect.joined else "left"
        return news
    return None  # the commit, timers, measures, refusals: the deciding daemon's own


def encode_news(transition: Transition, daemon: str, token: int) -> dict[str, Any]:
    """
    @return: the fields a commit's event carries for the other daemons
        (plain JSON values).
    """
    rows = {c.conversation_id: c for c in transition.conversations}
    commit = transition.commit
    stored = {(m.conversation_id, m.seq): m for m in (commit.messages if commit else ())}
    effects = [news for news in (_effect_news(e, rows, stored) for e in transition.effects)
               if news is not None]
    return {"daemon": daemon, "token": token,
            "rows": [_row(c) for c in transition.conversations],
            "effects": effects, "round": transition.team.last_chosen}


def _effect(news: dict[str, Any], rows: dict[str, Conversation]) -> Effect:
    kind = news["k"]
    if kind == "deliver":
        return DeliverMessage(news["route"], news["visitor"], message_from_row(news["message"]))
    if kind == "signal":
        return SignalVisitor(news["route"], news["visitor"], news["signal"], bool(news["on"]),
                             news["name"], int(news["upto"]), news["status"])
    if kind == "announce":
        return AnnounceAvailability(bool(news["available"]))
    if kind == "notify":
        named = news["conversation"]
        conversation = rows[named] if isinstance(named, str) else _from_row(named)
        return NotifyOperators(
            news["kind"], conversation,
            None if news["message"] is None else message_from_row(news["message"]),
            None if news["note"] is None else note_from_row(news["note"]),
            news["operator"], news["actor"])
    if kind == "team":
        roster = news.get("roster")
        return NotifyTeam(str(news["operator"]), str(Availability(news["availability"])),
                          int(news["capacity"]), int(news["load"]),
                          joined=roster == "joined", left=roster == "left")
    raise ValueError(f"unknown effect {kind!r}")


#: A commit's event (the commit script's), and a transition that stored
#: nothing (typing, the team's availability: published after the fact).
NEWS_TYPES = ("conversations", "conversation_news")


def decode_change(event: dict[str, Any]) -> Change | None:
    """
    @return: the transition a conversations event tells, or None for an
        event that is not one (the queue's, a push, a commit from before
        events carried news).
    @raise ValueError: (or KeyError, TypeError) for a malformed one.
    """
    if event.get("type") not in NEWS_TYPES or "daemon" not in event:
        return None
    conversations = tuple(_from_row(row) for row in event["rows"])
    rows = {c.conversation_id: c for c in conversations}
    effects = tuple(_effect(news, rows) for news in event["effects"])
    team = event.get("team_raised")
    return Change(str(event["daemon"]), int(event["token"]), conversations, effects,
                  event.get("round"), durable=event["type"] == "conversations",
                  team_raised=None if not team else {str(k): int(v) for k, v in team.items()})
