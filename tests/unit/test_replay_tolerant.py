"""
Tolerant replay: the C{json_like} matcher (a JSON document, with ignored
paths, exactly or as a subset) and C{wsdaemon-replay --json-subset /
--ignore}, which writes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock

from wsdaemon.strategies.proxy.recording import Recorder, read_recording
from wsdaemon.strategies.proxy.replay import Tolerance, conversations, main, to_rules
from wsdaemon.strategies.scripted.json_like import (
    ANY,
    MAX_IGNORED,
    MAX_PATH_LENGTH,
    build_json_like,
    json_like_matches,
    parse_path,
)
from wsdaemon.strategies.scripted.matching import MatcherError, build_matcher, match
from wsdaemon.strategies.scripted.rules import RulesError, parse_rules
from wsdaemon.strategies.scripted.strategy import ScriptedStrategy
from wsdaemon.testing import RecordingSession


def like(document: Any, message: Any, ignore: tuple[str, ...] = (), subset: bool = False
         ) -> bool:
    spec: dict[str, Any] = {"value": json.dumps(document), "ignore": list(ignore),
                            "subset": subset}
    return json_like_matches(build_json_like(spec), message)


def test_exact_apart_from_order() -> None:
    """Without options: the same fields (in any order) with equal values;
    a field more, a field less or another value is not like it."""
    recorded = {"op": "sub", "n": None, "items": [1, {"a": True}]}
    assert like(recorded, {"items": [1, {"a": True}], "n": None, "op": "sub"})
    assert not like(recorded, {**recorded, "extra": 1})
    assert not like(recorded, {"op": "sub", "items": [1, {"a": True}]})
    assert not like(recorded, {**recorded, "op": "unsub"})
    assert not like(recorded, {**recorded, "items": [1, {"a": True}, 2]})


def test_booleans_only_equal_booleans_and_numbers_numbers() -> None:
    """JSON's true is not 1, 1 is 1.0, "1" is not 1."""
    assert not like({"a": True}, {"a": 1})
    assert not like({"a": 1}, {"a": True})
    assert like({"a": 1}, {"a": 1.0})
    assert not like({"a": "1"}, {"a": 1})
    assert like("just a string", "just a string") and like([1, None], [1, None])


def test_subset_allows_more_fields_at_every_level() -> None:
    """subset: the live message may have fields the recorded one has not,
    nested ones included; arrays still match element by element."""
    recorded = {"op": "sub", "user": {"id": 7}, "items": [{"k": 1}]}
    live = {"op": "sub", "ts": 99, "user": {"id": 7, "name": "x"}, "items": [{"k": 1, "v": 2}]}
    assert like(recorded, live, subset=True)
    assert not like(recorded, live)
    assert not like(recorded, {**live, "items": [{"k": 1}, {"k": 2}]}, subset=True)
    assert not like(recorded, {**live, "user": {"name": "x"}}, subset=True)


def test_ignored_paths_may_differ_or_be_missing() -> None:
    """An ignored field may hold anything or be missing; [*] reaches every
    element; a field not ignored still counts."""
    recorded = {"op": "sub", "ts": 1, "id": "a", "items": [{"ts": 1, "v": 1}, {"ts": 2, "v": 2}]}
    ignore = ("$.ts", "$.id", "$.items[*].ts")
    live = {"op": "sub", "ts": 5, "items": [{"ts": 9, "v": 1}, {"v": 2}]}
    assert like(recorded, live, ignore)
    assert like(recorded, {**live, "id": {"any": ["thing"]}}, ignore)
    assert not like(recorded, live, ("$.ts", "$.id"))
    assert not like(recorded, {**live, "op": "unsub"}, ignore)
    assert not like(recorded, {**live, "items": [{"ts": 9, "v": 3}, {"v": 2}]}, ignore)


def test_path_forms() -> None:
    """$.name, .*, [N], [*], ['any key'] and ["a JSON string"]."""
    assert parse_path("$.a.b") == ("a", "b")
    assert parse_path("$.items[0].ts") == ("items", 0, "ts")
    assert parse_path("$.items[*].ts") == ("items", ANY, "ts")
    assert parse_path("$.*.ts") == (ANY, "ts")
    assert parse_path("$['a key.with dots']") == ("a key.with dots",)
    assert parse_path('$["quote \\" é"].x') == ('quote " é', "x")
    assert like({"a key": 1, "b": 2}, {"b": 2}, ("$['a key']",))
    assert like({"m": {"x": {"t": 1}, "y": {"t": 2}}}, {"m": {"x": {"t": 3}, "y": {}}},
                ("$.m.*.t",))
    assert like({"l": [{"t": 1}, {"t": 2}]}, {"l": [{"t": 1}, {"t": 5}]}, ("$.l[1].t",))
    assert not like({"l": [{"t": 1}, {"t": 2}]}, {"l": [{"t": 4}, {"t": 5}]}, ("$.l[1].t",))


@pytest.mark.parametrize(("path", "why"), [
    ("ts", "a path starts with $"),
    ("$", "ignores the whole message"),
    ("$..ts", "unexpected '..ts' at character 2"),
    ("$.a[x]", "expected .name, .*, [N], [*]"),
    ("$." + "a" * MAX_PATH_LENGTH, f"longer than {MAX_PATH_LENGTH}"),
])
def test_bad_paths_are_refused(path: str, why: str) -> None:
    """A path the syntax does not allow is refused, saying what is."""
    with pytest.raises(ValueError) as refused:
        parse_path(path)
    assert why in str(refused.value)


def test_the_loader_names_the_line_and_the_mistake(tmp_path: Path) -> None:
    """A rules file's json_like mistakes are refused with the line: JSON that
    is not JSON, an unknown key, a bad path, too many paths."""
    cases = {
        "json_like = '{oops'": "json_like: value: not JSON",
        "json_like = { value = '{}', ignroe = [] }": "json_like: unknown key 'ignroe'",
        "json_like = { value = '{}', ignore = ['$x'] }": "json_like: ignore[0]: '$x'",
        "json_like = { ignore = [] }": "json_like: expected value = '<JSON text>'",
        "json_like = { value = '1', subset = 1 }": "json_like: subset: expected true or false",
        "json_like = 3": "json_like: expected JSON text, or a table",
        f"json_like = {{ value = '1', ignore = {json.dumps(['$.a'] * (MAX_IGNORED + 1))} }}":
            f"more than {MAX_IGNORED} paths",
        "json_like = '" + "[" * 70 + "]" * 70 + "'": "nested too deeply",
    }
    for line, why in cases.items():
        with pytest.raises(RulesError) as refused:
            parse_rules(f'[[rule]]\nreply = "x"\n{line}\n'.encode(), tmp_path / "r.toml")
        assert refused.value.line == 3, line
        assert why in refused.value.message, (line, refused.value.message)


def test_the_matcher_form_as_text_and_through_match() -> None:
    """json_like = '<JSON>' is the exact form; match() parses a message once
    and refuses what is not JSON."""
    matcher = build_matcher({"json_like": '{"a": [1, null]}'})
    assert match(matcher, '{"a":[1,null]}')[0]
    assert not match(matcher, '{"a":[1,null],"b":1}')[0]
    assert not match(matcher, "not json")[0]
    assert not match(matcher, b'{"a":[1,null]}')[0]
    with pytest.raises(MatcherError, match="json_like: value"):
        build_matcher({"json_like": {"value": 1}})


def record(path: Path) -> None:
    """A client that subscribes with a timestamp and an id, then says bye."""
    clock = Clock()
    recorder = Recorder(path, 1 << 20, clock.seconds)
    talk = recorder.conversation("/live", None, "ws://upstream/")
    clock.advance(0.1)
    talk.message("client", '{"op": "sub", "id": "it\'s 1", "ts": 1712, '
                           '"items": [{"ts": 1, "k": "\x7f"}]}')
    talk.message("server", '{"ok": true}')
    talk.message("client", "bye")
    talk.message("server", "see you")
    recorder.close()


def replayed(tmp_path: Path, tolerance: Tolerance) -> tuple[ScriptedStrategy, RecordingSession]:
    path = tmp_path / "r.jsonl"
    path.unlink(missing_ok=True)
    record(path)
    (talk,) = conversations(read_recording(path)).values()
    rules = parse_rules(to_rules(talk, tolerance=tolerance).encode(), tmp_path / "replay.toml")
    strategy = ScriptedStrategy(rules, Clock())
    session = RecordingSession()
    strategy.connection_opened(session)
    return strategy, session


LIVE = {"op": "sub", "id": "it's 2", "ts": 1999, "items": [{"ts": 7, "k": "\x7f"}]}


def test_exact_replay_does_not_answer_another_timestamp(tmp_path: Path) -> None:
    """Without options the recorded text must come again, as before."""
    strategy, _ = replayed(tmp_path, Tolerance())
    assert strategy.message_received(RecordingSession(), json.dumps(LIVE)) is None


def test_ignored_fields_replay(tmp_path: Path) -> None:
    """--ignore $.ts $.id $.items[*].ts: a client whose timestamps and id
    differ is answered; one whose other fields differ is not; messages
    that are not JSON are still matched exactly."""
    tolerance = Tolerance(ignore=("$.ts", "$.id", "$.items[*].ts"))
    strategy, session = replayed(tmp_path, tolerance)
    assert strategy.message_received(session, json.dumps(LIVE)) == '{"ok": true}'
    assert strategy.message_received(session, "bye!") is None
    strategy, session = replayed(tmp_path, tolerance)
    assert strategy.message_received(session, json.dumps({**LIVE, "op": "unsub"})) is None
    strategy, session = replayed(tmp_path, tolerance)
    assert strategy.message_received(session, json.dumps({**LIVE, "new": 1})) is None


def test_subset_replay(tmp_path: Path) -> None:
    """--json-subset: a client that sends the recorded fields and more is
    answered; with --ignore too, the ignored ones may differ."""
    path_free = {"op": "sub", "id": "it's 1", "ts": 1712, "items": [{"ts": 1, "k": "\x7f"}]}
    strategy, session = replayed(tmp_path, Tolerance(subset=True))
    assert strategy.message_received(session, json.dumps({**path_free, "v": 2})) == \
        '{"ok": true}'
    assert strategy.message_received(session, "bye") == "see you"
    strategy, session = replayed(tmp_path, Tolerance(subset=True))
    assert strategy.message_received(session, json.dumps({**LIVE, "v": 2})) is None
    strategy, session = replayed(tmp_path, Tolerance(True, ("$.ts", "$.id", "$.items[*].ts")))
    assert strategy.message_received(session, json.dumps({**LIVE, "v": 2})) == '{"ok": true}'


def test_the_command_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json-subset and --ignore write json_like rules the daemon loads; a
    path it would refuse is an error before anything is read or written."""
    path = tmp_path / "r.jsonl"
    record(path)
    out = tmp_path / "out.toml"
    assert main([str(path), "-o", str(out), "--json-subset", "--ignore", "$.ts",
                 "--ignore", "$.items[*].ts"]) == 0
    text = out.read_text()
    assert 'ignore = ["$.ts", "$.items[*].ts"], subset = true }' in text
    assert "# Not JSON: matched exactly.\ntext = \"bye\"" in text
    out.unlink()
    assert main([str(path), "-o", str(out), "--ignore", "ts"]) == 1
    assert "--ignore: ignore[0]: 'ts': a path starts with $" in capsys.readouterr().err
    assert not out.exists()


def test_a_note_when_nothing_is_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                     ) -> None:
    """Asking for tolerance on a conversation without JSON says so."""
    clock = Clock()
    path = tmp_path / "r.jsonl"
    recorder = Recorder(path, 1 << 20, clock.seconds)
    talk = recorder.conversation("/live", None, "ws://upstream/")
    talk.message("client", "hello")
    talk.message("server", "hi")
    recorder.close()
    assert main([str(path), "--json-subset"]) == 0
    assert "no message the client sent in conversation" in capsys.readouterr().err
