"""
The terminal console's commands and what it prints, apart from I/O: command
lines in, requests out, events and answers printed (everything a client
wrote is escaped: L{wsdaemon.strategies.operator.display}).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from wsdaemon.strategies.operator.display import describe, transcript_line, visible

__all__ = ["HELP", "TOKEN_REVOKED", "Console", "parse_command"]

HELP = """\
commands:
  list                       show the first page of open items (oldest first)
  more                       the next page of the last list, client or search
  client CLIENT              one client's open items
  search TEXT                open items whose text or client id holds TEXT
  show #ID | show seq N      an item's (or a transcript line's) whole text
  reply TEXT                 answer the oldest unclaimed item
  reply #ID TEXT             answer that item (an id prefix is enough)
  claim #ID | release #ID    take an item / give it back
  push CLIENT TEXT           send to one client (kept for it while it is away)
  broadcast ROUTE TEXT       send to every client connected to ROUTE
  transcript [CLIENT]        the newest lines of a conversation (everyone's without CLIENT)
  older                      the lines before the last transcript page
  export FILE [CLIENT]       write a whole transcript as JSON Lines to FILE
  wait [N]                   wait until N (default 1) items are waiting unclaimed
  help | quit

Text from clients is shown with control characters escaped (\\x1b, \\n, ...);
long texts are shortened, with the command that shows them whole."""

#: Close code the daemon uses when a reload revoked our token.
TOKEN_REVOKED = 4001


def parse_command(line: str) -> dict[str, Any] | str:
    """
    @return: the request to send, or a local action ("help", "quit",
        "export ...", "wait N", "more", "older").
    @raise ValueError: saying how the command is used.
    """
    words = line.split(None, 1)
    if not words:
        raise ValueError("empty command")
    verb, rest = words[0].lower(), (words[1] if len(words) > 1 else "").strip()

    def item_and_text(text: str) -> tuple[str | None, str]:
        if text.startswith("#"):
            head, _, tail = text.partition(" ")
            return head[1:], tail.strip()
        return None, text

    if verb in ("list", "ls"):
        return {"type": "list"}
    if verb in ("client", "search"):
        if not rest:
            raise ValueError(f"usage: {verb} {'CLIENT' if verb == 'client' else 'TEXT'}")
        return {"type": "list", verb: rest}
    if verb in ("more", "older"):
        return verb
    if verb == "show":
        item, extra = item_and_text(rest)
        if item and not extra:
            return {"type": "text", "item": item, "offset": 0}
        what, _, number = rest.partition(" ")
        if what == "seq" and number.strip().isascii() and number.strip().isdigit():
            return {"type": "text", "seq": int(number), "offset": 0}
        raise ValueError("usage: show #ID | show seq N")
    if verb == "reply":
        item, text = item_and_text(rest)
        if not text:
            raise ValueError("usage: reply [#ID] TEXT")
        return {"type": "reply", "text": text, **({"item": item} if item else {})}
    if verb in ("claim", "release"):
        item, extra = item_and_text(rest)
        if not item or extra:
            raise ValueError(f"usage: {verb} #ID")
        return {"type": verb, "item": item}
    if verb in ("push", "broadcast"):
        target, _, text = rest.partition(" ")
        if not target or not text.strip():
            raise ValueError(f"usage: {verb} {'CLIENT' if verb == 'push' else 'ROUTE'} TEXT")
        key = "client" if verb == "push" else "route"
        return {"type": verb, key: target, "text": text.strip()}
    if verb == "transcript":
        return {"type": "transcript", **({"client": rest} if rest else {})}
    if verb == "export":
        if not rest:
            raise ValueError("usage: export FILE [CLIENT]")
        return f"export {rest}"
    if verb == "wait":
        if rest and not (rest.isascii() and rest.isdigit()):
            raise ValueError("usage: wait [N]")
        return f"wait {rest or 1}"
    if verb in ("help", "?"):
        return "help"
    if verb in ("quit", "exit"):
        return "quit"
    raise ValueError(f"unknown command {visible(verb)!r}; type help")


class Output(Protocol):
    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


def _resend(request: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**{k: v for k, v in request.items() if k != "id"}, **changes}


class Console:
    """
    @param stop: ends the program with an exit status.
    """

    def __init__(self, out: Output, err: Output, stop: Callable[[int], None]) -> None:
        self.out = out
        self.err = err
        self._stop = stop
        self._send: Callable[[dict[str, Any]], None] | None = None
        self._commands: deque[str] = deque()
        # Requests a command makes on its own behalf (pages of an export,
        # chunks of a long text), sent before the next command.
        self._followups: deque[dict[str, Any]] = deque()
        self._waiting: dict[str, Any] | None = None
        self._next_id = 1
        self._input_done = False
        self._wait_for = 0
        self._last_list: dict[str, Any] | None = None
        self._last_transcript: dict[str, Any] | None = None
        self.stopping = False
        self.connected_once = False
        self.items: dict[str, dict[str, Any]] = {}
        self.failures = 0

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def complain(self, text: str) -> None:
        self.failures += 1
        self.err.write(f"error: {visible(text)}\n")
        self.err.flush()

    # -- connection ------------------------------------------------------------

    def connected(self, send: Callable[[dict[str, Any]], None]) -> None:
        self._send = send
        self.connected_once = True

    def disconnected(self, reason: str) -> None:
        self._send = None
        if self.stopping:
            return
        if self._waiting is not None:
            self.complain(f"connection lost before the answer to {self._waiting['type']}; "
                          "check with `list`")
            self._waiting = None
            self._followups.clear()
        self.say(f"-- disconnected ({visible(reason)}); reconnecting...")

    # -- what the daemon says ----------------------------------------------------

    def event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "hello":
            self.say(f"-- connected as {visible(event['operator'])}; {event['total']} open "
                     f"item(s), {event['operators_online']} operator(s) online")
            self.items = {item["item_id"]: item for item in event["items"]}
            self._show_page(event, {"type": "list"})
            self._next_command()
        elif kind == "resync":
            # After a Redis outage the daemon reloads the queue: take its list.
            self.items = {item["item_id"]: item for item in event["items"]}
            self.say(f"-- queue resynchronised; {event['total']} open item(s)")
        elif kind in ("item", "updated"):
            item = event["item"]
            self.say(("new  " if kind == "item" else "upd  ") + describe(item))
            if item["state"] in ("queued", "claimed"):
                self.items[item["item_id"]] = item
            else:
                self.items.pop(item["item_id"], None)
            if self._wait_for:
                self._next_command()
        elif kind == "undeliverable":
            self.say(f"!!   message {event['seq']} for client {visible(event['client_id'])} "
                     f"can never be delivered: {visible(event['error'])}")
        elif kind in ("ok", "error") and self._waiting is not None \
                and event.get("id") == self._waiting["id"]:
            request, self._waiting = self._waiting, None
            if kind == "ok":
                self._answered(request, event)
            else:
                self._followups.clear()
                self.complain(str(event.get("error")))
            self._next_command()
        elif kind == "error":
            self.complain(str(event.get("error")))

    def _show_page(self, answer: dict[str, Any], request: dict[str, Any]) -> None:
        for item in answer["items"]:
            self.say("   " + describe(item))
        self._last_list = _resend(request, after=answer["next"]) if answer.get("more") else None
        if self._last_list is not None:
            self.say("   ... more: type `more` for the next page")

    def _answered(self, request: dict[str, Any], answer: dict[str, Any]) -> None:
        kind = request["type"]
        then = request.get("_then")
        if then is not None:
            then(answer)
        elif kind == "list":
            self.say(f"{answer['total']} open item(s), {answer['operators_online']} "
                     "operator(s) online")
            self._show_page(answer, request)
        elif kind == "reply":
            self.say(f"ok: answered #{visible(answer['item']['item_id'])} "
                     f"({answer['delivered']} connection(s) now)")
        elif kind in ("claim", "release"):
            self.say(f"ok: {kind}ed " + describe(answer["item"]))
        elif kind in ("push", "broadcast"):
            kept = (f"; kept for {visible(request['client'])} until it connects"
                    if answer.get("kept") else "")
            self.say(f"ok: {kind} reached {answer['delivered']} connection(s){kept}")
        elif kind == "text":
            self.say(("" if not answer["offset"] else "   ") + visible(answer["text"]))
            if answer["more"]:
                self._followups.append(
                    _resend(request, offset=answer["offset"] + len(answer["text"])))
        elif kind == "transcript":
            for entry in answer["entries"]:
                self.say(transcript_line(entry))
            self._last_transcript = (_resend(request, before=answer["before"])
                                     if answer["more"] else None)
            if self._last_transcript is not None:
                self.say("   ... older lines: type `older`")

    # -- export: every page, then every shortened text whole ---------------------

    def _export(self, target: str, client: str) -> dict[str, Any]:
        collected: list[dict[str, Any]] = []
        base = {"type": "transcript", "limit": 1000, **({"client": client} if client else {})}

        def page(answer: dict[str, Any]) -> None:
            collected[:0] = answer["entries"]
            if answer["more"]:
                self._followups.append({**base, "before": answer["before"], "_then": page})
                return
            for entry in collected:
                if entry.get("truncated"):
                    self._followups.append(whole(entry, 0))
            self._followups.append({"type": "_local", "_then": write})

        def whole(entry: dict[str, Any], offset: int) -> dict[str, Any]:
            def take(answer: dict[str, Any]) -> None:
                entry["body"] = (entry["body"][:offset] if offset else "") + answer["text"]
                if answer["more"]:
                    self._followups.appendleft(whole(entry, offset + len(answer["text"])))
                else:
                    entry["truncated"] = False

            return {"type": "text", "seq": entry["seq"], "offset": offset, "_then": take}

        def write(_: Any) -> None:
            with open(target, "w", encoding="utf-8") as f:
                for entry in collected:
                    f.write(json.dumps(entry, ensure_ascii=False) + "\n")
            self.say(f"ok: wrote {len(collected)} line(s) to {visible(target)}")

        return {**base, "_then": page}

    # -- commands --------------------------------------------------------------

    def line(self, line: str) -> None:
        if line.strip() and not line.lstrip().startswith("#"):
            self._commands.append(line.strip())
            self._next_command()

    def input_ended(self) -> None:
        self._input_done = True
        self._next_command()

    def _unclaimed(self) -> int:
        return sum(1 for item in self.items.values() if item["state"] == "queued")

    def _request_for(self, line: str) -> dict[str, Any] | None:
        """
        @return: the request a command line makes, or None (done locally).
        """
        try:
            command = parse_command(line)
        except ValueError as e:
            self.complain(str(e))
            return None
        if command == "help":
            self.say(HELP)
            return None
        if command == "quit":
            self._commands.clear()
            self._input_done = True
            return None
        if command in ("more", "older"):
            last = self._last_list if command == "more" else self._last_transcript
            if last is None:
                self.complain("nothing more: the last list was complete" if command == "more"
                              else "no older lines: show a transcript first")
            return dict(last) if last is not None else None
        if isinstance(command, str) and command.startswith("wait "):
            wanted = int(command.split()[1])
            if self._unclaimed() < wanted:
                self._wait_for = wanted
            return None
        if isinstance(command, str):  # export FILE [CLIENT]
            target, _, client = command[len("export "):].partition(" ")
            return self._export(target, client.strip())
        return command

    def _next_command(self) -> None:
        if self._wait_for and self._unclaimed() >= self._wait_for:
            self._wait_for = 0
        while self._waiting is None and self._send is not None:
            request: dict[str, Any] | None
            if self._followups:
                request = self._followups.popleft()
            elif not self._wait_for and self._commands:
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
                and self._waiting is None and not self._wait_for):
            self._stop(1 if self.failures else 0)
