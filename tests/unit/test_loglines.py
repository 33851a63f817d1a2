"""
The connection log lines made cheap (wsdaemon.connections.loglines): the
text Twisted's text observer writes is the same, event by event, with the
replacements in place as without; without the names it replaces, nothing
is replaced and the check says why.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.logger import LogLevel, textFileLogObserver
from twisted.logger import _file as twisted_file
from twisted.python.failure import Failure

from wsdaemon import internals
from wsdaemon.connections import loglines


class Shouty:
    def __str__(self) -> str:
        return "str of\nShouty"

    def __repr__(self) -> str:
        return "<Shouty é>"


def _failure() -> Failure:
    try:
        raise ValueError("boom")
    except ValueError:
        return Failure()


BASE = {"log_time": 1765093501.25, "log_namespace": "wsdaemon.protocol",
        "log_level": LogLevel.info}
EVENTS: list[dict[str, Any]] = [
    {**BASE, "log_format": "client {peer} connected to {route} (session {session_id}, "
     "client {client_id})", "peer": "tcp4:127.0.0.1:4", "route": "/echo",
     "session_id": "9c08", "client_id": None},
    {**BASE, "log_format": "refused {peer}: origin {origin!r} not allowed", "peer": "p",
     "origin": "http://evil\x1b[31m"},
    {**BASE, "log_format": "{a!s} {a!r} {a!a} {n:5d} {f:.2f} {{literal}}", "a": Shouty(),
     "n": 42, "f": 1.5},
    {**BASE, "log_format": "multi\nline {x}", "x": "y\nz"},
    {**BASE, "log_format": "no fields"},
    {**BASE, "log_format": ""},
    {**BASE, "log_format": "{missing}"},
    {**BASE, "log_format": "{0} positional"},
    {**BASE, "log_format": "{call()} and {obj.attr} and {seq[0]}",
     "call": lambda: "called", "obj": Failure, "seq": ["first"]},
    {**BASE, "log_format": "{n:{width}}", "n": 1, "width": 4},
    {**BASE, "log_format": "bad spec {n:zz}", "n": 1},
    {**BASE, "log_format": "with failure {x}", "x": 1, "log_failure": _failure()},
    {**BASE, "log_format": "system {x}", "x": 1, "log_system": "wsdaemon.protocol#info worker 2"},
    {**BASE, "log_format": "odd system", "log_system": 17},
    {"log_format": "no time, level or namespace {x}", "x": 1},
    {**BASE, "log_format": b"bytes {x}", "x": 1},
    {**BASE, "log_format": None},
    {**BASE, "log_format": "flattened {x}", "x": 1, "log_flattened": {"x!:": 1}},
    {**BASE, "log_format": "{x}", "x": 1, "log_time": None},
]


def written(events: list[dict[str, Any]], time_format: str | None = "%Y-%m-%dT%H:%M:%S%z",
            ) -> str:
    out = io.StringIO()
    observer = textFileLogObserver(out, timeFormat=time_format)
    for event in events:
        observer(dict(event))
    return out.getvalue()


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Registered first, so that the test's end puts Twisted's own back.
    for name in ("formatEventAsClassicLogText", "formatTime"):
        monkeypatch.setattr(twisted_file, name, getattr(twisted_file, name))
    monkeypatch.setattr(loglines, "_installed", [])
    assert loglines.install().usable
    yield


@pytest.mark.parametrize("time_format", ["%Y-%m-%dT%H:%M:%S%z", "%H:%M:%S.%f", None])
def test_the_text_written_is_the_same(time_format: str | None,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Every kind of event (plain fields, conversions, specs, escapes,
    newlines, empty, missing keys, calls, attributes, nested specs,
    tracebacks, systems, no time, flattened) is written the same with the
    replacements as by Twisted's own functions, at several time formats."""
    before = written(EVENTS, time_format)
    classic, when = twisted_file.formatEventAsClassicLogText, twisted_file.formatTime
    monkeypatch.setattr(loglines, "_installed", [])
    try:
        loglines.install()
        assert twisted_file.formatEventAsClassicLogText is loglines.classic_text
        after = written(EVENTS, time_format)
        assert written(EVENTS, time_format) == after  # cached timestamps too
    finally:
        twisted_file.formatEventAsClassicLogText = classic  # type: ignore[assignment]
        twisted_file.formatTime = when
    assert after == before
    assert "connected to /echo" in after


def test_timestamps_change_with_the_second(installed: None) -> None:
    """The cached timestamp is the second's: the next second gets its own."""
    event = {**BASE, "log_format": "x"}
    first = written([event, {**event, "log_time": BASE["log_time"] + 0.5}])
    second = written([{**event, "log_time": BASE["log_time"] + 1}])
    assert first.splitlines()[0] == first.splitlines()[1]
    assert first.splitlines()[0] != second.splitlines()[0]


def test_formats_remembered_are_bounded(installed: None, monkeypatch: pytest.MonkeyPatch,
                                        ) -> None:
    """At most MAX_FORMATS formats are remembered; past it, a new one is
    checked each time and still written the same."""
    monkeypatch.setattr(loglines, "_simple", {})
    monkeypatch.setattr(loglines, "MAX_FORMATS", 3)
    events = [{**BASE, "log_format": f"format {i} {{x}}", "x": i} for i in range(5)]
    text = written(events)
    assert len(loglines._simple) == 3
    assert [line.rpartition("] ")[2] for line in text.splitlines()] == [
        f"format {i} {i}" for i in range(5)]


def test_without_the_names_nothing_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Twisted without the module-level formatTime: the check names it,
    nothing is replaced, and the start-up line says so."""
    monkeypatch.delattr(twisted_file, "formatTime")
    reach = internals.check_loglines()
    assert reach.missing == ("twisted.logger._file.formatTime",)
    monkeypatch.setattr(loglines, "_installed", [])
    classic = twisted_file.formatEventAsClassicLogText
    assert loglines.install(reach) is reach
    assert twisted_file.formatEventAsClassicLogText is classic
    assert loglines.describe() == ("Twisted's own log text (missing "
                                   "twisted.logger._file.formatTime)")


def test_an_observer_that_no_longer_looks_them_up_is_noticed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """If textFileLogObserver stopped calling the module's names, replacing
    them would do nothing: the check says so."""

    def observer(out: Any, timeFormat: Any = None) -> None:
        return None

    monkeypatch.setattr(twisted_file, "textFileLogObserver", observer)
    reach = internals.check_loglines()
    assert not reach.usable and "no longer calls" in reach.why
