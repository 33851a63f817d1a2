"""
C{wsdaemon-replay}: a recording (made by a C{proxy} route) turned into a
rules file for a C{scripted} route that plays the upstream's part: the
client's messages are expected in the recorded order (rule C{nth}), and the
server's messages follow them with their recorded timing (C{--speed} 2 plays
them twice as fast).

    wsdaemon-replay recordings/live.jsonl --list
    wsdaemon-replay recordings/live.jsonl -o replay.toml [--conversation NAME] [--speed 2]
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from wsdaemon.records import SENDABLE_CLOSE_CODES
from wsdaemon.strategies.api import OptionContext, OptionError
from wsdaemon.strategies.proxy.recording import read_recording
from wsdaemon.strategies.registry import StrategyRegistry

__all__ = ["check_rules", "conversations", "main", "to_rules"]

#: Recorded close codes for a connection that ended without a close frame
#: (abnormal closure; a TLS failure).
_DROPPED = frozenset({1006, 1015})
#: Recorded for a close frame that carried no code.
_NO_CODE = 1005


def conversations(events: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """
    @return: each conversation's events, in the order they were recorded.
    """
    found: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        found.setdefault(str(event["conversation"]), []).append(event)
    return found


def _opened(events: Sequence[dict[str, Any]]) -> int:
    """
    @return: how many connections were recorded under this name: more than
        one in a file written by several workers before names were session
        ids (their events cannot be told apart).
    """
    return sum(1 for e in events if e["event"] == "open")


def _toml_string(text: str) -> str:
    """
    A TOML basic string (JSON's escapes are TOML's, but DEL must be escaped).
    """
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _template(text: str) -> str:
    """
    Text as a rules template: braces are literal.
    """
    return _toml_string(text.replace("{", "{{").replace("}", "}}"))


def _data(event: dict[str, Any]) -> bytes:
    return base64.b64decode(event.get("base64", ""))


def _message_lines(event: dict[str, Any], delay: float) -> list[str]:
    if event.get("type") == "binary":
        body = f'hex = "{_data(event).hex()}"'
    else:
        body = f"text = {_template(str(event.get('text', '')))}"
    lines = [body]
    if delay > 0:
        lines.append(f"delay = {round(delay, 6)}")
    return lines


def _close_lines(close: dict[str, Any]) -> list[str]:
    """
    @return: how the last rule ends the connection as the server did: with
        its close code and reason; dropped (C{drop = true}) when the server
        went away without a close frame (1006, or no code recorded).
    """
    code = close.get("code")
    reason = _toml_string(str(close.get("reason") or ""))
    if code is None or code in _DROPPED:
        return ["drop = true"]
    if code == _NO_CODE:  # a close frame without a code: a rule always sends one
        return ["# The server closed without a code: replayed as 1000.",
                f"close = {{ code = 1000, reason = {reason} }}"]
    if code not in SENDABLE_CLOSE_CODES:
        return [f"# The server closed with {int(code)}, which no server may send: "
                "replayed as a drop.", "drop = true"]
    return [f"close = {{ code = {int(code)}, reason = {reason} }}"]


def to_rules(events: Sequence[dict[str, Any]], source: str = "", speed: float = 1.0) -> str:
    """
    @param events: one conversation's events.
    @param speed: delays are divided by it.
    @return: a rules file (TOML) replaying the server's side.
    @raise ValueError: if C{events} has nothing to replay.
    """
    if speed <= 0:
        raise ValueError("speed must be more than 0")
    opened = _opened(events)
    if opened > 1:
        raise ValueError(f"conversation {events[0]['conversation']} was opened {opened} times: "
                         "several connections were recorded under one name (by workers, before "
                         "names were session ids) and their messages cannot be told apart")
    opening = next((e for e in events if e["event"] == "open"), None)
    lines = [
        f"# Replays conversation {events[0]['conversation']}"
        + (f" of {source}" if source else "")
        + (f" (upstream {opening.get('upstream')})" if opening else "") + ".",
        "# Made by wsdaemon-replay: the client's messages are expected in this order",
        f"# (rule nth); the server's follow with their recorded timing, at {speed:g}x.",
        "",
    ]
    if opening is not None and opening.get("subprotocol"):
        lines += ["[handshake]", f"subprotocols = [{_toml_string(opening['subprotocol'])}]", ""]
    greetings: list[tuple[dict[str, Any], float]] = []
    rules: list[tuple[dict[str, Any], list[tuple[dict[str, Any], float]]]] = []
    last_at = 0.0
    close: dict[str, Any] | None = None
    for event in events:
        at = float(event.get("at", 0.0))
        if event["event"] == "message" and event.get("from") == "client":
            rules.append((event, []))
            last_at = at
        elif event["event"] == "message":
            target = rules[-1][1] if rules else greetings
            target.append((event, (at - last_at) / speed))
            last_at = at
        elif event["event"] == "close" and event.get("by") == "server":
            close = event
    if not rules and not greetings:
        raise ValueError("the conversation has no messages to replay")
    for event, delay in greetings:
        lines += ["[[greeting]]", *_message_lines(event, delay), ""]
    for number, (client, sends) in enumerate(rules, 1):
        lines += ["[[rule]]", f"name = \"client message {number}\"", f"nth = {number}"]
        if client.get("type") == "binary":
            data = _data(client)
            lines.append(f'binary_prefix = "{data.hex()}"' if data else "binary = true")
        else:
            lines.append(f"text = {_toml_string(str(client.get('text', '')))}")
        if close is not None and number == len(rules):
            lines += _close_lines(close)
        for event, delay in sends:
            lines += ["[[rule.send]]", *_message_lines(event, delay)]
        lines.append("")
    if close is not None and not rules:
        lines.append("# The server closed before the client said anything: not replayed.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="wsdaemon-replay",
        description="Turn a proxy route's recording into a rules file for a scripted route "
                    "that replays the upstream's side.")
    parser.add_argument("recording", type=Path, help="the recording (JSON lines)")
    parser.add_argument("-o", "--output", type=Path, help="the rules file to write "
                        "(default: standard output)")
    parser.add_argument("--conversation", help="which conversation (default: the first)")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="play the server's messages this many times faster (default 1)")
    parser.add_argument("--list", action="store_true", help="list the conversations")
    args = parser.parse_args(argv)
    try:
        found = conversations(read_recording(args.recording))
    except (OSError, ValueError) as e:
        print(f"wsdaemon-replay: {e}", file=sys.stderr)
        return 1
    if args.list:
        for name, events in found.items():
            messages = sum(1 for e in events if e["event"] == "message")
            opening = next((e for e in events if e["event"] == "open"), {})
            opened = _opened(events)
            note = (f"\t(opened {opened} times: several connections, cannot be replayed)"
                    if opened > 1 else "")
            print(f"{name}\t{opening.get('path', '?')}\t{messages} message(s){note}")
        return 0
    if not found:
        print(f"wsdaemon-replay: {args.recording}: no conversations", file=sys.stderr)
        return 1
    name = args.conversation or next(iter(found))
    if name not in found:
        print(f"wsdaemon-replay: no conversation {name!r}; --list shows them", file=sys.stderr)
        return 1
    try:
        rules = to_rules(found[name], str(args.recording), args.speed)
    except ValueError as e:
        print(f"wsdaemon-replay: {e}", file=sys.stderr)
        return 1
    refused = check_rules(rules, args.output or Path("<stdout>"))
    if refused is not None:
        print(f"wsdaemon-replay: the rules made from conversation {name} would be refused by "
              f"the daemon, so nothing was written (a bug in wsdaemon-replay, please report "
              f"it): {refused}", file=sys.stderr)
        return 1
    if args.output is None:
        sys.stdout.write(rules)
    else:
        args.output.write_text(rules, encoding="utf-8")
    return 0


def check_rules(rules: str, name: Path) -> str | None:
    """
    Load C{rules} the way a C{scripted} route does (the daemon's own check,
    found by name: strategies do not import each other).

    @param name: where the rules are to be written, for the message.
    @return: None if the daemon accepts them, else why it would not
        (C{name:line: message}).
    """
    factory: Any = StrategyRegistry().resolve("scripted")
    with tempfile.TemporaryDirectory(prefix="wsdaemon-replay-") as folder:
        Path(folder, "rules.toml").write_text(rules, encoding="utf-8")
        try:
            factory.check({"rules": "rules.toml"}, OptionContext(Path(folder), "/replay"))
        except OptionError as e:
            line = f":{e.line}" if e.line is not None else ""
            return f"{name}{line}: {e.expected}"
    return None


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
