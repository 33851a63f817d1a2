"""
C{[wsdaemon] log_level}: the config value, the predicate, and the filter
wrapped around the observers of a log publisher (and changed by a reload).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel, LogPublisher, PredicateResult

from wsdaemon.config import ConfigError, load_config
from wsdaemon.endpoints import check_endpoint
from wsdaemon.internals import Reach, check_loglevel
from wsdaemon.server import loglevel
from wsdaemon.server.loglevel import LevelPredicate

CONFIG = """
[wsdaemon]
listen = tcp:8080
{line}

[route:/echo]
strategy = echo
"""


def load(write_config: Callable[..., Path], line: str) -> Any:
    return load_config(write_config(CONFIG.format(line=line)), clock=Clock(),
                       check_endpoint=lambda d: check_endpoint(d, Clock()))


def test_default_is_info(write_config: Callable[..., Path]) -> None:
    assert load(write_config, "").log_level == "info"


@pytest.mark.parametrize("value", ["debug", "info", "warn", "error", "critical", " DEBUG "])
def test_each_level(write_config: Callable[..., Path], value: str) -> None:
    assert load(write_config, f"log_level = {value}").log_level == value.strip().lower()


def test_a_bad_level_names_file_line_key_choices_and_a_guess(
        write_config: Callable[..., Path]) -> None:
    with pytest.raises(ConfigError) as caught:
        load(write_config, "log_level = warning")
    text = str(caught.value)
    for part in ("wsdaemon.ini:3: [wsdaemon] log_level",
                 "expected one of debug, info, warn, error, critical", "'warning'",
                 "did you mean warn?"):
        assert part in text, text


def event(level: Any, namespace: str = "wsdaemon.x") -> dict[str, Any]:
    return {"log_level": level, "log_namespace": namespace, "log_format": "x"}


def test_predicate() -> None:
    predicate = LevelPredicate(LogLevel.info)
    assert predicate(event(LogLevel.debug)) is PredicateResult.no
    assert predicate(event(LogLevel.info)) is PredicateResult.maybe
    assert predicate(event(LogLevel.critical)) is PredicateResult.maybe
    # No level (a legacy event): shown, unlike LogLevelFilterPredicate.
    assert predicate({"log_format": "x"}) is PredicateResult.maybe
    predicate.level = LogLevel.error
    assert predicate(event(LogLevel.warn)) is PredicateResult.no


@pytest.fixture
def publisher() -> Iterator[tuple[LogPublisher, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    publisher = LogPublisher(seen.append)
    yield publisher, seen
    loglevel.set_level(loglevel.DEFAULT)


def levels(seen: list[dict[str, Any]]) -> list[str]:
    return [e["log_level"].name for e in seen if e.get("log_namespace") == "t"]


def emit_all(publisher: LogPublisher) -> None:
    log = Logger(namespace="t", observer=publisher)
    log.debug("d")
    log.info("i")
    log.warn("w")
    log.error("e")
    log.critical("c")


def test_install_filters_and_set_level_changes_it(
        publisher: tuple[LogPublisher, list[dict[str, Any]]]) -> None:
    pub, seen = publisher
    emit_all(pub)
    assert levels(seen) == ["debug", "info", "warn", "error", "critical"]

    assert loglevel.install("info", pub).usable
    seen.clear()
    emit_all(pub)
    assert levels(seen) == ["info", "warn", "error", "critical"]

    loglevel.set_level("error")  # a reload
    seen.clear()
    emit_all(pub)
    assert levels(seen) == ["error", "critical"]

    # Installed again (a second service start): not wrapped twice.
    loglevel.install("debug", pub)
    seen.clear()
    emit_all(pub)
    assert levels(seen) == ["debug", "info", "warn", "error", "critical"]


def test_without_the_private_name_nothing_is_wrapped_and_it_says_so(
        publisher: tuple[LogPublisher, list[dict[str, Any]]]) -> None:
    pub, seen = publisher
    off = Reach("loglevel", ("twisted.logger.LogPublisher._observers",))
    assert not loglevel.install("error", pub, reach=off).usable
    warned = [e for e in seen if e.get("log_level") == LogLevel.warn]
    assert warned and "log_level {value} not applied" in warned[0]["log_format"]
    seen.clear()
    emit_all(pub)
    assert "debug" in levels(seen)


def test_check() -> None:
    assert check_loglevel(LogPublisher()).usable
    assert check_loglevel(object()).missing == ("twisted.logger.LogPublisher._observers",)
