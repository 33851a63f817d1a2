"""
What the terminal console shows of conversations, as lines: the list (alias,
unread, waiting time as C{4m}, assignee, preview), the thread (local,
readable times, who wrote, notes marked), events.

Everything that came from the network (texts, names, aliases, labels,
ids) goes through L{visible}: control characters and invisible formatting
are shown escaped, never interpreted, so a visitor can neither drive the
operator's terminal nor start a line of its own; one entry stays one line.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from wsdaemon.escaping import visible

__all__ = ["ID_SHOWN", "PREVIEW_SHOWN", "duration", "entry_line", "event_line", "local_time",
           "presence_line", "profile_lines", "search_heading", "search_lines", "summary_line",
           "team_line"]

#: Characters of a conversation id shown beside its alias (a prefix any
#: command takes).
ID_SHOWN = 8
#: Characters of a preview in a list line.
PREVIEW_SHOWN = 60


def duration(seconds: float) -> str:
    """C{45s}, C{4m}, C{2h05m}, C{3d}: how long, at a glance."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d"


def _moment(at: float, tz: tzinfo | None) -> datetime:
    return datetime.fromtimestamp(at, tz) if tz is not None \
        else datetime.fromtimestamp(at).astimezone()


def local_time(at: float, now: float, tz: tzinfo | None = None) -> str:
    """
    C{14:03} today, C{Dec 05 14:03} another day, in the operator's time
    zone (C{tz}; None: the machine's).
    """
    when, today = _moment(at, tz), _moment(now, tz)
    if when.date() == today.date():
        return when.strftime("%H:%M")
    return when.strftime("%b %d %H:%M")


def _short(text: str, chars: int) -> str:
    one = visible(text)
    return one if len(one) <= chars else one[:chars - 3] + "..."


def _who(summary: dict[str, Any]) -> str:
    alias = visible(summary.get("name") or summary.get("alias") or "?")
    return f"{alias} ({visible(str(summary.get('id', ''))[:ID_SHOWN])})"


def summary_line(summary: dict[str, Any]) -> str:
    """One conversation in a list."""
    unread = int(summary.get("unread") or 0)
    parts = [_who(summary)]
    parts.append(f"{unread} unread" if unread else "read")
    if summary.get("waiting_since") is not None:
        parts.append(f"waiting {duration(float(summary.get('waiting') or 0))}")
    status = str(summary.get("status"))
    if status != "open":
        parts.append(visible(status))
    assignee = summary.get("assignee")
    if summary.get("with_bot"):
        parts.append("bot answers")
    else:
        parts.append(f"@{visible(assignee)}" if assignee else "unassigned")
    labels = summary.get("labels") or []
    if labels:
        parts.append("[" + ", ".join(visible(label) for label in labels) + "]")
    viewing = summary.get("viewing") or []
    if viewing:
        parts.append("viewed by " + ", ".join(visible(name) for name in viewing))
    if summary.get("visitor_online") is False:
        parts.append("left")
    return "  ".join(parts) + ": " + _short(str(summary.get("preview") or ""), PREVIEW_SHOWN)


def presence_line(summary: dict[str, Any]) -> str:
    """
    The opened conversation's visitor came or went (its C{presence} event):
    whether a reply reaches them now or waits for their return.
    """
    who = visible(summary.get("name") or summary.get("alias") or "the visitor")
    if summary.get("visitor_online"):
        return f"{who} is connected: your replies reach them now"
    return f"{who} left: your replies wait for them to come back"


def search_heading(answer: dict[str, Any]) -> str:
    """How many a search found, and whether it looked everywhere."""
    partial = " (stopped at its bound: narrow it)" if answer.get("partial") else ""
    live = " (open and snoozed only: this store keeps no index)" \
        if answer.get("scope") == "live" else ""
    return f"{answer.get('total', 0)} conversation(s) found{partial}{live}"


def search_lines(result: dict[str, Any], now: float, tz: tzinfo | None = None) -> list[str]:
    """
    One conversation a search found: who, status, assignee, last activity;
    then a line per hit (which message or note, its snippet).
    """
    summary = result.get("conversation") or {}
    assignee = summary.get("assignee")
    at = summary.get("last_activity_at")
    head = "  ".join([_who(summary), visible(str(summary.get("status"))),
                      f"@{visible(assignee)}" if assignee else "unassigned",
                      local_time(float(at), now, tz) if isinstance(at, int | float) else "?"])
    lines = [head]
    for hit in result.get("hits") or []:
        kind = hit.get("kind")
        where = (f"message {visible(str(hit.get('seq')))}" if kind == "message"
                 else f"note {visible(str(hit.get('note')))}" if kind == "note"
                 else visible(str(kind)))
        lines.append(f"   {where}: {_short(str(hit.get('snippet') or ''), 2 * PREVIEW_SHOWN)}")
    return lines


def _more(entry: dict[str, Any]) -> str:
    if not entry.get("truncated"):
        return ""
    hidden = int(entry.get("length", 0)) - len(str(entry.get("text", "")))
    return f" [... {hidden} more characters]"


def entry_line(entry: dict[str, Any], alias: str, now: float, tz: tzinfo | None = None) -> str:
    """One entry of a thread: a message (who wrote it) or a private note (marked)."""
    when = local_time(float(entry.get("at") or 0), now, tz)
    text = visible(entry.get("text", "")) + _more(entry)
    if entry.get("kind") == "note":
        return f"[{when}] NOTE by {visible(entry.get('operator'))} (private): {text}"
    author = entry.get("author")
    if author == "visitor":
        who = visible(alias)
    elif author == "operator":
        name, login = entry.get("name"), entry.get("operator")
        who = visible(name or login) + (f" ({visible(login)})" if name and login != name
                                         else "")
    elif author == "bot":  # a support route's bot: its name, marked as a bot
        who = f"{visible(entry.get('name') or 'Bot')} (bot)"
    else:
        who = visible(author)
    return f"[{when}] {who}: {text}"


def profile_lines(profile: dict[str, Any] | None) -> list[str]:
    """
    Who the visitor is, as an open conversation shows it: one line for
    name, email and what proved them, one per attribute.
    """
    if not profile:
        return []
    who = [visible(profile["name"])] if profile.get("name") else []
    if profile.get("email"):
        who.append(f"<{visible(profile['email'])}>")
    proof = "its token" if profile.get("source") == "jwt" else "identify (HMAC)"
    lines = [f"visitor: {' '.join(who) or '(no name)'}, proven by {proof}"]
    lines += [f"  {visible(key)}: {visible(value)}"
              for key, value in (profile.get("attributes") or {}).items()]
    return lines


def team_line(operator: dict[str, Any]) -> str:
    capacity = int(operator.get("capacity") or 0)
    room = f"{operator.get('load', 0)}/{capacity}" if capacity else f"{operator.get('load', 0)}"
    return (f"{visible(operator.get('display_name') or operator.get('name'))} "
            f"({visible(operator.get('name'))}): {visible(operator.get('availability'))}, "
            f"{room} open")


def event_line(event: dict[str, Any], me: str, now: float, tz: tzinfo | None = None
               ) -> str | None:
    """
    An event as one line, or None for those not worth a line (receipts,
    typing and viewing elsewhere than where you look are left to the list).
    """
    kind = event.get("type")
    summary = event.get("conversation")
    if kind == "team":
        operator = event.get("operator") or {}
        if operator.get("left"):
            return (f"team {visible(operator.get('display_name') or operator.get('name'))} "
                    f"({visible(operator.get('name'))}) left the team")
        return "team " + team_line(operator)
    if not isinstance(summary, dict):
        return None
    who = _who(summary)
    alias = str(summary.get("name") or summary.get("alias") or "?")
    actor = event.get("actor")
    if kind == "conversation":
        return f"new  {summary_line(summary)}"
    if kind == "message" and isinstance(event.get("message"), dict):
        return f"msg  {who} " + entry_line(event["message"], alias, now, tz)
    if kind == "note" and isinstance(event.get("note"), dict):
        return f"note {who} " + entry_line(event["note"], alias, now, tz)
    if kind == "assigned":
        return f"mine {who} is assigned to you: " + _short(
            str(summary.get("preview") or ""), PREVIEW_SHOWN)
    if kind == "updated":
        by = f" (by {visible(actor)})" if actor and actor != me else ""
        state = visible(summary.get("status"))
        if summary.get("status") == "open" and summary.get("with_bot"):
            state += ", bot answers"
        elif summary.get("status") == "open":
            assignee = summary.get("assignee")
            state += f", @{visible(assignee)}" if assignee else ", unassigned"
        labels = summary.get("labels") or []
        if labels:
            state += " [" + ", ".join(visible(label) for label in labels) + "]"
        return f"upd  {who}: {state}{by}"
    return None
