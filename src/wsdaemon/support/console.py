"""
The terminal console for conversations (operator protocol v2): command
lines in, requests out, answers and events printed
(L{wsdaemon.support.console_display}, everything from the network
escaped). No I/O of its own: C{wsdaemon-operator}
(L{wsdaemon.support.terminal}) runs it, with its connection, reconnection
and line reading.

Commands run one at a time, each waiting for its answer, and none before
the greeting. Each greeting (after a reconnection too) sets the operator's
availability again (online unless it chose otherwise) and fetches the
canned replies. At the end of piped input it stops once every command was
answered, with status 1 if any failed.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import tzinfo
from typing import Any, Protocol

from twisted.internet.interfaces import IReactorTime

from wsdaemon.escaping import visible
from wsdaemon.support.canned import expand
from wsdaemon.support.console_commands import HELP, list_request, parse_when, search_request
from wsdaemon.support.console_display import (
    entry_line,
    event_line,
    presence_line,
    profile_lines,
    search_heading,
    search_lines,
    summary_line,
    team_line,
)
from wsdaemon.support.console_export import export_requests

__all__ = ["HELP", "KNOWN_SUMMARIES", "ConversationConsole", "parse_when"]

#: Conversation summaries remembered (the newest seen), for canned
#: placeholders and names.
KNOWN_SUMMARIES = 1000


class Output(Protocol):
    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


def _resend(request: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**{k: v for k, v in request.items() if k != "id"}, **changes}


class ConversationConsole:
    """
    @param stop: ends the program with an exit status.
    @param clock: the time (snooze durations, "today" in times).
    @param tz: the operator's time zone (None: the machine's).
    """

    def __init__(self, out: Output, err: Output, stop: Callable[[int], None], *,
                 clock: IReactorTime, tz: tzinfo | None = None) -> None:
        self.out = out
        self.err = err
        self._stop = stop
        self._clock = clock
        self._tz = tz
        self._send: Callable[[dict[str, Any]], None] | None = None
        self._commands: deque[str] = deque()
        self._followups: deque[dict[str, Any]] = deque()
        self._waiting: dict[str, Any] | None = None
        self._next_id = 1
        self._input_done = False
        self._last_list: dict[str, Any] | None = None
        self._older: dict[str, Any] | None = None
        self.stopping = False
        self.connected_once = False
        self.failures = 0
        self.me = ""
        self.display_name = ""
        self.availability = "online"
        self.current: str | None = None
        self.canned: dict[str, str] = {}
        self.known: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def complain(self, text: str) -> None:
        self.failures += 1
        self.err.write(f"error: {visible(text)}\n")
        self.err.flush()

    def _now(self) -> float:
        return self._clock.seconds()

    def _remember(self, summary: Any) -> None:
        if isinstance(summary, dict) and isinstance(summary.get("id"), str):
            self.known[summary["id"]] = summary
            self.known.move_to_end(summary["id"])
            while len(self.known) > KNOWN_SUMMARIES:
                self.known.popitem(last=False)

    # -- connection ------------------------------------------------------------

    def connected(self, send: Callable[[dict[str, Any]], None]) -> None:
        self._send = send
        self.connected_once = True

    def disconnected(self, reason: str) -> None:
        self._send = None
        if self.stopping:
            return
        if self._waiting is not None:
            # The greeting's own requests are asked again on the next one.
            if not self._waiting.get("_greeting"):
                self.complain(f"connection lost before the answer to "
                              f"{self._waiting['type']}; check with `list`")
            self._waiting = None
            self._followups.clear()
        self.say(f"-- disconnected ({visible(reason)}); reconnecting...")

    # -- what the daemon says ----------------------------------------------------

    def event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "hello":
            self._hello(event)
        elif kind in ("ok", "error") and self._waiting is not None \
                and event.get("id") == self._waiting["id"]:
            request, self._waiting = self._waiting, None
            if kind == "ok":
                self._answered(request, event)
            else:
                self._followups.clear()
                self._refused(event)
            self._next_command()
        elif kind == "error":
            self._refused(event)
        else:
            self._remember(event.get("conversation"))
            if kind == "viewing" and event.get("conversation") == self.current:
                others = [visible(n) for n in event.get("operators", []) if n != self.me]
                if others:
                    self.say("     also viewing: " + ", ".join(others))
                return
            summary = event.get("conversation")
            if kind == "presence" and isinstance(summary, dict) \
                    and summary.get("id") == self.current:
                self.say("     " + presence_line(summary))
                return
            line = event_line(event, self.me, self._now(), self._tz)
            if line is not None:
                self.say(line)

    def _refused(self, event: dict[str, Any]) -> None:
        text = str(event.get("error"))
        candidates = event.get("candidates")
        self.complain(text.split("; give more")[0] if candidates else text)
        for candidate in candidates or []:
            if isinstance(candidate, dict):
                self.say(f"   {visible(candidate.get('alias'))}: "
                         f"#{visible(candidate.get('id'))}")

    def _hello(self, event: dict[str, Any]) -> None:
        self.me = str(event.get("operator", ""))
        self.display_name = str(event.get("display_name") or self.me)
        team = event.get("team") or []
        # The team as it is once this console's availability (asked for
        # just below) is taken: the others as the greeting says, and me.
        others = sum(1 for o in team if isinstance(o, dict) and o.get("name") != self.me
                     and o.get("availability") == "online")
        online = others + (self.availability == "online")
        self.say(f"-- connected as {visible(self.display_name)} ({visible(self.me)}); "
                 f"{event.get('total', 0)} open conversation(s), {online} operator(s) online "
                 f"(you: {self.availability})")
        self._show_page(event, {"type": "conversations"})
        self._followups.append({"type": "availability", "availability": self.availability,
                                "_then": lambda answer: None, "_greeting": True})
        self._followups.append(self._canned_request(None, quiet=True))
        self._next_command()

    def _show_page(self, answer: dict[str, Any], request: dict[str, Any]) -> None:
        for summary in answer.get("conversations", []):
            self._remember(summary)
            self.say("   " + summary_line(summary))
        self._last_list = (_resend(request, after=answer["next"]) if answer.get("more")
                           else None)
        if self._last_list is not None:
            self.say("   ... more: type `more` for the next page")

    def _show_found(self, answer: dict[str, Any], request: dict[str, Any]) -> None:
        self.say(search_heading(answer))
        for result in answer.get("results", []):
            self._remember(result.get("conversation"))
            for line in search_lines(result, self._now(), self._tz):
                self.say("   " + line)
        self._show_page({"more": answer.get("more"), "next": answer.get("next")}, request)

    def _canned_request(self, after: str | None, *, quiet: bool) -> dict[str, Any]:
        def take(answer: dict[str, Any]) -> None:
            for reply in answer.get("canned", []):
                self.canned[str(reply["shortcut"])] = str(reply["text"])
                if not quiet:
                    self.say(f"   /{visible(reply['shortcut'])}: {visible(reply['text'])}")
            if answer.get("more"):
                self._followups.appendleft(self._canned_request(answer.get("next"),
                                                                quiet=quiet))
            elif not quiet and not self.canned:
                self.say("   no canned replies (the [operator] section names none)")

        # Quiet: the greeting's own request (and its next pages).
        return {"type": "canned", "limit": 500, **({"after": after} if after else {}),
                "_then": take, "_greeting": quiet}

    def _answered(self, request: dict[str, Any], answer: dict[str, Any]) -> None:
        self._remember(answer.get("conversation"))
        then = request.get("_then")
        kind = request["type"]
        if then is not None:
            then(answer)
        elif kind == "conversations":
            self.say(f"{answer['total']} conversation(s)")
            self._show_page(answer, request)
        elif kind == "search":
            self._show_found(answer, request)
        elif kind in ("open", "history"):
            self._show_thread(answer, opened=kind == "open")
        elif kind == "reply":
            self.say(f"ok: sent to {self._name(answer['conversation'])}")
        elif kind == "note":
            self.say(f"ok: note added to {self._name(answer['conversation'])}")
        elif kind in ("availability", "capacity", "team"):
            for operator in answer.get("team", []):
                self.say("   " + team_line(operator))
        elif kind == "close":
            self.say("ok: closed")
        else:
            self.say("ok: " + summary_line(answer["conversation"]))

    def _name(self, summary: dict[str, Any]) -> str:
        return visible(summary.get("name") or summary.get("alias"))

    def _show_thread(self, answer: dict[str, Any], *, opened: bool) -> None:
        summary = answer["conversation"]
        alias = str(summary.get("name") or summary.get("alias"))
        if opened:
            self.current = str(summary["id"])
            self.say(summary_line(summary))
            for line in profile_lines(answer.get("profile")):
                self.say("   " + line)
        for entry in answer.get("entries", []):
            self.say("   " + entry_line(entry, alias, self._now(), self._tz))
        self._older = ({"type": "history", "conversation": summary["id"],
                        "before": answer.get("before"), "before_note": answer.get("before_note")}
                       if answer.get("more") else None)
        if self._older is not None:
            self.say("   ... older entries: type `older`")
        if opened and summary.get("unread"):
            self._followups.append({"type": "read", "conversation": summary["id"],
                                    "_then": lambda answer: None})

    # -- commands --------------------------------------------------------------

    def line(self, line: str) -> None:
        if line.strip() and not line.lstrip().startswith("#"):
            self._commands.append(line.strip())
            self._next_command()

    def input_ended(self) -> None:
        self._input_done = True
        self._next_command()

    def _target(self, rest: str) -> tuple[str, str]:
        """The conversation a command names (#REF) or the open one, and the rest."""
        if rest.startswith("#"):
            head, _, tail = rest.partition(" ")
            if len(head) > 1:
                return head[1:], tail.strip()
        if self.current is None:
            raise ValueError("no conversation open: `open #REF` first, or give #REF")
        return self.current, rest

    def _canned_reply(self, shortcut: str, reference: str, extra: str) -> dict[str, Any]:
        text = self.canned.get(shortcut.lower())
        if text is None:
            known = ", ".join("/" + name for name in sorted(self.canned)[:20]) or "none"
            raise ValueError(f"no canned reply /{shortcut} (known: {known})")

        def send(answer: dict[str, Any]) -> None:
            summary = answer["conversation"]
            filled = expand(text, {"name": summary.get("name"), "alias": summary.get("alias"),
                                   "email": summary.get("email"),
                                   "operator": self.display_name})
            self._followups.appendleft({"type": "reply", "conversation": summary["id"],
                                        "text": (filled + " " + extra).strip()})

        # The conversation's summary first: its placeholders' values.
        return {"type": "history", "conversation": reference, "limit": 1, "_then": send}

    def _request_for(self, line: str) -> dict[str, Any] | None:
        try:
            return self._parse(line)
        except ValueError as e:
            self.complain(str(e))
            return None

    def _parse(self, line: str) -> dict[str, Any] | None:  # noqa: PLR0911, PLR0912
        words = line.split(None, 1)
        verb, rest = words[0].lower(), (words[1].strip() if len(words) > 1 else "")
        if verb.startswith("/") and len(verb) > 1:
            reference, extra = self._target(rest)
            return self._canned_reply(verb[1:], reference, extra)
        if verb in ("help", "?"):
            self.say(HELP)
            return None
        if verb in ("quit", "exit"):
            self._commands.clear()
            self._input_done = True
            return None
        if verb in ("list", "ls"):
            return list_request(rest)
        if verb == "search":
            return search_request(rest)
        if verb in ("more", "older"):
            last = self._last_list if verb == "more" else self._older
            if last is None:
                raise ValueError("nothing more: the last list was complete" if verb == "more"
                                 else "no older entries: open a conversation first")
            return dict(last)
        if verb == "open":
            if not rest:
                raise ValueError("usage: open #REF")
            return {"type": "open", "conversation": rest.lstrip("#")}
        if verb == "close":
            self.current = None
            return {"type": "close"}
        if verb in ("reply", "note"):
            reference, text = self._target(rest)
            if not text:
                raise ValueError(f"usage: {verb} [#REF] TEXT")
            if verb == "reply" and text.startswith("/") and len(text) > 1:
                shortcut, _, extra = text[1:].partition(" ")
                return self._canned_reply(shortcut, reference, extra.strip())
            return {"type": verb, "conversation": reference, "text": text}
        if verb in ("resolve", "reopen"):
            reference, extra = self._target(rest)
            if extra:
                raise ValueError(f"usage: {verb} [#REF]")
            return {"type": verb, "conversation": reference}
        if verb == "snooze":
            reference, when = self._target(rest)
            until = parse_when(when, self._now(), self._tz) if when else None
            return {"type": "snooze", "conversation": reference, "until": until}
        if verb in ("assign", "transfer"):
            reference, who = self._target(rest)
            if not who or " " in who:
                raise ValueError(f"usage: {verb} [#REF] OPERATOR"
                                 + ("|none" if verb == "assign" else ""))
            if verb == "transfer":
                return {"type": "transfer", "conversation": reference, "to": who}
            return {"type": "assign", "conversation": reference,
                    "operator": None if who.lower() == "none" else who}
        if verb == "labels":
            reference, changes = self._target(rest)
            add = [w[1:] for w in changes.split() if w.startswith("+") and len(w) > 1]
            remove = [w[1:] for w in changes.split() if w.startswith("-") and len(w) > 1]
            if not add and not remove or len(add) + len(remove) != len(changes.split()):
                raise ValueError("usage: labels [#REF] +LABEL -LABEL ...")
            return {"type": "labels", "conversation": reference, "add": add, "remove": remove}
        if verb == "export":
            target, _, rest = rest.partition(" ")
            if not target:
                raise ValueError("usage: export FILE [#REF]")
            reference, extra = self._target(rest.strip())
            if extra:
                raise ValueError("usage: export FILE [#REF]")
            return export_requests(target, reference, self._followups, self.say,
                                   self.complain)
        if verb == "canned":
            self.canned.clear()
            return self._canned_request(None, quiet=False)
        if verb in ("online", "away", "offline"):
            self.availability = verb
            return {"type": "availability", "availability": verb}
        if verb == "capacity":
            if not (rest.isascii() and rest.isdigit()):
                raise ValueError("usage: capacity N (0: no cap)")
            return {"type": "capacity", "n": int(rest)}
        if verb == "team":
            return {"type": "team"}
        raise ValueError(f"unknown command {visible(verb)!r}; type help")

    def _next_command(self) -> None:
        while self._waiting is None and self._send is not None:
            request: dict[str, Any] | None
            if self._followups:
                request = self._followups.popleft()
            elif self._commands:
                request = self._request_for(self._commands.popleft())
            else:
                break
            if request is None:
                continue
            if request["type"] == "_local":
                request["_then"](None)
                continue
            request["id"] = self._next_id
            self._next_id += 1
            self._waiting = request
            self._send({k: v for k, v in request.items() if not k.startswith("_")})
        if (self._input_done and not self._commands and not self._followups
                and self._waiting is None):
            self._stop(1 if self.failures else 0)
