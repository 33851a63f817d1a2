"""
C{wsdaemon-replay}: a recording (made by a C{proxy} route) turned into a
rules file for a C{scripted} route that plays the upstream's part: the
client's messages are expected in the recorded order (rule C{nth}), and the
server's messages follow them with their recorded timing (C{--speed} 2 plays
them twice as fast).

    wsdaemon-replay recordings/live.jsonl --list
    wsdaemon-replay recordings/live.jsonl -o replay.toml [--conversation NAME] [--speed 2]
    wsdaemon-replay recordings/live.jsonl -o replay.toml --json-subset --ignore '$.ts'
    wsdaemon-replay --from-har page.har [--url-filter /live] -o replay.toml
    wsdaemon-replay recordings/live.jsonl --to-har live.har

Tolerant replay (C{--json-subset}, C{--ignore PATH}): a client's JSON
message is matched with the C{json_like} matcher of the recorded one
(contained in the live one, or equal apart from the ignored paths) instead
of its exact text; messages that are not JSON are still matched exactly.
HAR files go through L{wsdaemon.strategies.proxy.har}.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Iterable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from wsdaemon.records import SENDABLE_CLOSE_CODES
from wsdaemon.strategies.api import OptionContext, OptionError
from wsdaemon.strategies.proxy.har import (
    MAX_MESSAGES,
    read_har,
    recording_size_check,
    to_har,
    write_har,
)
from wsdaemon.strategies.proxy.recording import read_recording
from wsdaemon.strategies.proxy.tolerance import EXACT, Tolerance, client_lines, data, toml_string
from wsdaemon.strategies.registry import StrategyRegistry

__all__ = ["Tolerance", "check_rules", "conversations", "main", "to_rules"]

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


def _template(text: str) -> str:
    """
    Text as a rules template: braces are literal.
    """
    return toml_string(text.replace("{", "{{").replace("}", "}}"))


def _message_lines(event: dict[str, Any], delay: float) -> list[str]:
    if event.get("type") == "binary":
        body = f'hex = "{data(event).hex()}"'
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
    reason = toml_string(str(close.get("reason") or ""))
    if code is None or code in _DROPPED:
        return ["drop = true"]
    if code == _NO_CODE:  # a close frame without a code: a rule always sends one
        return ["# The server closed without a code: replayed as 1000.",
                f"close = {{ code = 1000, reason = {reason} }}"]
    if code not in SENDABLE_CLOSE_CODES:
        return [f"# The server closed with {int(code)}, which no server may send: "
                "replayed as a drop.", "drop = true"]
    return [f"close = {{ code = {int(code)}, reason = {reason} }}"]


def to_rules(events: Sequence[dict[str, Any]], source: str = "", speed: float = 1.0,
             tolerance: Tolerance = EXACT) -> str:
    """
    @param events: one conversation's events.
    @param speed: delays are divided by it.
    @param tolerance: how clients' JSON messages are matched (default:
        their exact text).
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
    ]
    if tolerance.active:
        lines.append("# JSON messages are matched " + ", ".join(
            (["as a subset (more fields allowed)"] if tolerance.subset else [])
            + ([f"ignoring {', '.join(tolerance.ignore)}"] if tolerance.ignore else [])) + ".")
    lines.append("")
    if opening is not None and opening.get("subprotocol"):
        lines += ["[handshake]", f"subprotocols = [{toml_string(opening['subprotocol'])}]", ""]
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
        lines += client_lines(client, tolerance)
        if close is not None and number == len(rules):
            lines += _close_lines(close)
        for event, delay in sends:
            lines += ["[[rule.send]]", *_message_lines(event, delay)]
        lines.append("")
    if close is not None and not rules:
        lines.append("# The server closed before the client said anything: not replayed.")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsdaemon-replay",
        description="Turn a proxy route's recording (or a browser's HAR file) into a rules "
                    "file for a scripted route that replays the upstream's side; or export a "
                    "recording as HAR.")
    parser.add_argument("recording", type=Path, nargs="?",
                        help="the recording (JSON lines); or give --from-har")
    parser.add_argument("-o", "--output", type=Path, help="the rules file to write "
                        "(default: standard output)")
    parser.add_argument("--conversation", help="which conversation (default: the first; "
                        "--to-har: all)")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="play the server's messages this many times faster (default 1)")
    parser.add_argument("--list", action="store_true", help="list the conversations")
    parser.add_argument("--json-subset", action="store_true",
                        help="match a client's JSON message when it contains the recorded one "
                             "(it may have more fields)")
    parser.add_argument("--ignore", action="append", default=[], metavar="PATH",
                        help="a JSON path whose value may differ or be missing in a client's "
                             "message: $.ts, $.user.id, $.items[*].ts, $['odd key'] "
                             "(repeatable)")
    parser.add_argument("--from-har", type=Path, metavar="FILE.har",
                        help="read the WebSocket entries of a browser's HAR file (Chromium's "
                             "_webSocketMessages) instead of a recording")
    parser.add_argument("--url-filter", metavar="TEXT",
                        help="with --from-har: only WebSocket entries whose URL holds TEXT")
    parser.add_argument("--max-messages", type=int, default=MAX_MESSAGES, metavar="N",
                        help=f"HAR: refuse a connection of more than N messages "
                             f"(default {MAX_MESSAGES})")
    parser.add_argument("--to-har", type=Path, metavar="OUT.har",
                        help="write the conversations as a HAR 1.2 file (DevTools: Network, "
                             "Import HAR) instead of rules")
    return parser


def _fail(message: str) -> int:
    print(f"wsdaemon-replay: {message}", file=sys.stderr)
    return 1


def _read(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """
    @raise OSError, ValueError: the file cannot be read or used.
    """
    if args.from_har is not None:
        return conversations(read_har(args.from_har, args.url_filter, args.max_messages))
    if args.to_har is not None:
        recording_size_check(args.recording)
    return conversations(read_recording(args.recording))


def _list(found: dict[str, list[dict[str, Any]]]) -> None:
    for name, events in found.items():
        messages = sum(1 for e in events if e["event"] == "message")
        opening = next((e for e in events if e["event"] == "open"), {})
        opened = _opened(events)
        note = (f"\t(opened {opened} times: several connections, cannot be replayed)"
                if opened > 1 else "")
        print(f"{name}\t{opening.get('path', '?')}\t{messages} message(s){note}")


def _export(args: argparse.Namespace, found: dict[str, list[dict[str, Any]]]) -> int:
    chosen = found if args.conversation is None else {args.conversation: found[
        args.conversation]}
    try:
        wsdaemon = version("wsdaemon")
    except PackageNotFoundError:
        wsdaemon = "0+unknown"
    try:
        write_har(args.to_har, to_har(chosen, wsdaemon, args.max_messages))
    except (OSError, ValueError) as e:
        return _fail(str(e))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if (args.recording is None) == (args.from_har is None):
        parser.error("give a recording, or --from-har FILE.har (one of them)")
    if args.url_filter is not None and args.from_har is None:
        parser.error("--url-filter applies to --from-har")
    if args.max_messages < 1:
        parser.error("--max-messages must be at least 1")
    source = args.from_har or args.recording
    tolerance = Tolerance(args.json_subset, tuple(args.ignore))
    if tolerance.ignore:
        refused = _ignore_refusal(tolerance.ignore)
        if refused is not None:
            return _fail(f"--ignore: {refused}")
    try:
        found = _read(args)
    except (OSError, ValueError) as e:
        return _fail(str(e))
    if args.list:
        _list(found)
        return 0
    if not found:
        return _fail(f"{source}: no conversations"
                     + (" (no WebSocket entry, answered 101, matched)" if args.from_har else ""))
    if args.conversation is not None and args.conversation not in found:
        return _fail(f"no conversation {args.conversation!r}; --list shows them")
    if args.to_har is not None:
        return _export(args, found)
    name = args.conversation or next(iter(found))
    try:
        rules = to_rules(found[name], str(source), args.speed, tolerance)
    except ValueError as e:
        return _fail(str(e))
    refused = check_rules(rules, args.output or Path("<stdout>"))
    if refused is not None:
        return _fail(f"the rules made from conversation {name} would be refused by the daemon, "
                     f"so nothing was written (a bug in wsdaemon-replay, please report it): "
                     f"{refused}")
    if tolerance.active and "\njson_like = " not in rules:
        print(f"wsdaemon-replay: note: no message the client sent in conversation {name} is "
              "JSON; all are matched exactly", file=sys.stderr)
    if args.output is None:
        sys.stdout.write(rules)
    else:
        args.output.write_text(rules, encoding="utf-8")
    return 0


def _ignore_refusal(paths: Sequence[str]) -> str | None:
    """
    @return: why the daemon's loader refuses these ignored paths (checked
        on a rule of their own, before any file is read), or None.
    """
    probe = ("[[rule]]\njson_like = { value = '{}', ignore = ["
             + ", ".join(toml_string(p) for p in paths) + "] }\n")
    refused = _refusal(probe)
    return None if refused is None else refused.expected.removeprefix("json_like: ")


def _refusal(rules: str) -> OptionError | None:
    """
    @return: the daemon's refusal of C{rules} as a C{scripted} route's file
        (found by name: strategies do not import each other), or None.
    """
    factory: Any = StrategyRegistry().resolve("scripted")
    with tempfile.TemporaryDirectory(prefix="wsdaemon-replay-") as folder:
        Path(folder, "rules.toml").write_text(rules, encoding="utf-8")
        try:
            factory.check({"rules": "rules.toml"}, OptionContext(Path(folder), "/replay"))
        except OptionError as e:
            return e
    return None


def check_rules(rules: str, name: Path) -> str | None:
    """
    Load C{rules} the way a C{scripted} route does (the daemon's own check).

    @param name: where the rules are to be written, for the message.
    @return: None if the daemon accepts them, else why it would not
        (C{name:line: message}).
    """
    refused = _refusal(rules)
    if refused is None:
        return None
    line = f":{refused.line}" if refused.line is not None else ""
    return f"{name}{line}: {refused.expected}"


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
