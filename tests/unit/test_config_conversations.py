"""
The [operator] keys of conversations (issue 22): read into the core's
settings, each mistake one clear line naming the file, line, section and key.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet.task import Clock

from wsdaemon.config import ConfigError, load_config
from wsdaemon.conversations.settings import ConversationSettings, Routing
from wsdaemon.support.settings import operator_settings

TOKEN = "alice:0123456789abcdef0123\n  bob:fedcba9876543210fedc"


def config_with(tmp_path: Path, operator: str, extra: str = "") -> Path:
    path = tmp_path / "wsdaemon.ini"
    path.write_text(
        "[wsdaemon]\nlisten = tcp:8080:interface=127.0.0.1\n\n"
        f"[operator]\ntokens = {TOKEN}\n{operator}\n{extra}\n"
        "[route:/support]\nstrategy = operator\n", encoding="utf-8")
    return path


def test_an_operator_section_without_a_model_gets_conversations(tmp_path: Path) -> None:
    """Conversations are the default model (issue 22): an [operator]
    section without the new keys gets them, with the core's defaults."""
    operator = operator_settings(load_config(config_with(tmp_path, ""), clock=Clock()))
    assert operator is not None
    assert operator.model == "conversations"
    assert operator.conversations == ConversationSettings()
    assert dict(operator.display_names) == {}
    assert operator.canned_path is None


def test_every_key_reaches_the_core(tmp_path: Path) -> None:
    """Each key lands in ConversationSettings; the keys the queue shares
    (fallback, caps) too."""
    (tmp_path / "canned.txt").write_text("/hi Hello {name}!\n", encoding="utf-8")
    operator = operator_settings(load_config(config_with(tmp_path, "\n".join([
        "model = conversations", "routing = auto", "capacity = 3", "reassign_after = 90",
        "notices_once = no", "ack_message = Got it.", "offline_message = Nobody here.",
        "contact_message = We write to {email}.", "max_unanswered = 7", "typing_timeout = 4",
        "fallback_after = 60", "fallback_message = Still looking.", "max_open_per_route = 10",
        "max_open_total = 20", "canned_file = canned.txt",
        "display_names =\n  alice: Alice  Martin\n  # comment\n  bob: Bob",
    ])), clock=Clock()))
    assert operator is not None
    settings = operator.conversations
    assert operator.model == "conversations"
    assert settings.routing is Routing.AUTO
    assert (settings.default_capacity, settings.reassign_after, settings.notices_once) == (
        3, 90.0, False)
    assert (settings.ack_message, settings.offline_message, settings.contact_message) == (
        "Got it.", "Nobody here.", "We write to {email}.")
    assert (settings.max_unanswered, settings.typing_timeout) == (7, 4.0)
    assert (settings.fallback_after, settings.fallback_message) == (60.0, "Still looking.")
    assert (settings.max_open_per_route, settings.max_open_total) == (10, 20)
    assert dict(operator.display_names) == {"alice": "Alice Martin", "bob": "Bob"}
    assert operator.canned_path == tmp_path / "canned.txt"


MISTAKES = {
    "an unknown model": ("model = conversatons", ":7: [operator] model",
                         "did you mean conversations?"),
    "an unknown routing": ("routing = round-robin", ":7: [operator] routing",
                           "expected manual or auto"),
    "a capacity that is not a number": ("capacity = lots", ":7: [operator] capacity",
                                        "whole number"),
    "the queue's position in the acknowledgement": (
        "ack_message = You are number {position}", ":7: [operator] ack_message",
        "{position} is gone"),
    "an unknown placeholder": ("contact_message = at {mail}", ":7: [operator] contact_message",
                               "unknown placeholder {mail}"),
    "a display name for nobody": ("display_names = carol: Carol",
                                  ":7: [operator] display_names", "'carol' is not an operator"),
    "a display name line without a name": ("display_names =\n  alice",
                                           ":7: [operator] display_names",
                                           "expected `operator: Display Name`"),
    "a display name too long": (f"display_names = alice: {'A' * 65}",
                                ":7: [operator] display_names", "at most 64 characters"),
    "a canned file that is not there": ("canned_file = nope.txt", ":7: [operator] canned_file",
                                        "cannot read"),
    "a negative reassignment": ("reassign_after = -1", ":7: [operator] reassign_after", ""),
}


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_each_mistake_names_its_line_and_key(tmp_path: Path, name: str) -> None:
    """A wrong conversation key refuses the config with its file, line,
    section and key, and what was expected."""
    line, where, expected = MISTAKES[name]
    path = config_with(tmp_path, line)
    with pytest.raises(ConfigError) as raised:
        load_config(path, clock=Clock())
    message = str(raised.value)
    assert message.startswith(f"{path}{where}"), message
    assert expected in message


def test_conversations_on_redis_are_accepted(tmp_path: Path) -> None:
    """Conversations shared by several daemons through Redis: the section
    and the broker go together (the store is then Redis, under the
    broker's prefix; the daemon test starts two daemons so)."""
    path = config_with(tmp_path, "model = conversations",
                       "[broker]\nbackend = redis\nurl = redis://127.0.0.1:6379/0\n")
    config = load_config(path, clock=Clock())
    operator = operator_settings(config)
    assert operator is not None and operator.model == "conversations"
    assert config.broker is not None


def test_literal_braces_are_fine(tmp_path: Path) -> None:
    """A notice is sent as written: a lone brace is text, not a mistake."""
    operator = operator_settings(load_config(config_with(tmp_path, "ack_message = Thanks :-} {\n"),
                                          clock=Clock()))
    assert operator is not None
    assert operator.conversations.ack_message == "Thanks :-} {"


def test_the_queue_model_is_refused(tmp_path: Path) -> None:
    """model = queue is refused at its line: the queue was retired, and the
    message says that conversations take over its store on start and what
    to do (remove the line)."""
    path = config_with(tmp_path, "model = queue")
    with pytest.raises(ConfigError) as raised:
        load_config(path, clock=Clock())
    assert str(raised.value) == (
        f"{path}:7: [operator] model: the item queue was retired in this version; "
        "conversations take over its store on start (the SQLite file or Redis keys stay "
        "where they are): remove this line")


@pytest.mark.parametrize("model", ["", "model = conversations", "model = Conversations "])
def test_conversations_is_the_only_model(tmp_path: Path, model: str) -> None:
    """No model, or conversations said explicitly (any case), is accepted."""
    operator = operator_settings(load_config(config_with(tmp_path, model), clock=Clock()))
    assert operator is not None and operator.model == "conversations"


@pytest.mark.parametrize("model", ["", "model = conversations"])
def test_workers_without_a_broker_name_the_conversation_store(
        tmp_path: Path, model: str) -> None:
    """Several workers cannot share the embedded SQLite file: the refusal
    names the conversation store and the fix."""
    path = config_with(tmp_path, model)
    path.write_text(path.read_text().replace("[wsdaemon]", "[wsdaemon]\nworkers = 2"))
    with pytest.raises(ConfigError) as raised:
        load_config(path, clock=Clock())
    message = str(raised.value)
    assert message.startswith(f"{path}:2: [wsdaemon] workers: "), message
    assert ("2 workers cannot share one embedded conversation store (route /support): "
            "add [broker] backend = redis, or set workers = 1") in message


@pytest.mark.parametrize("key, value, instead", [
    ("lease", "120", "conversations are assigned, not leased"),
    ("fallback_when_offline", "yes", "offline_message"),
    ("keep_after_fallback", "no", "stays open after the fallback"),
    ("max_open_per_client", "5", "max_unanswered"),
    ("max_item_size", "64KiB", "a route's max_message_size"),
    ("page_size", "100", "pages have sizes of their own"),
    ("preview_chars", "500", "previews of a fixed length"),
])
def test_the_queue_only_keys_are_ignored_with_a_warning(
        tmp_path: Path, key: str, value: str, instead: str) -> None:
    """A key only the retired queue read is accepted (the shipped config
    set some), changes nothing, and carries a one-line warning naming the
    file, line, section and key, what takes its place, and the fix; the
    --check-config line names it too."""
    path = config_with(tmp_path, f"{key} = {value}")
    config = load_config(path, clock=Clock())
    (tmp_path / "plain").mkdir()
    plain = operator_settings(load_config(config_with(tmp_path / "plain", ""), clock=Clock()))
    operator = operator_settings(config)
    assert operator is not None and plain is not None
    assert operator.conversations == plain.conversations
    assert list(operator.ignored) == [key]
    warning = operator.ignored[key]
    assert warning.startswith(f"{path}:7: [operator] {key}: ignored since the item queue was "
                              "retired (")
    assert instead in warning and warning.endswith("): remove this line")
    assert f"(ignored, retired with the queue: {key})" in config.summary()


def test_a_mistyped_key_is_not_offered_a_retired_one(tmp_path: Path) -> None:
    """A typo close to a retired key (leese) is an unknown key whose
    did-you-mean and list name only keys that do something (not lease)."""
    path = config_with(tmp_path, "leese = 120")
    with pytest.raises(ConfigError) as refused:
        load_config(path, clock=Clock())
    message = str(refused.value)
    assert f"{path}:7: [operator] leese: unknown key" in message
    assert "lease" not in message.replace("leese", "")
    assert "reassign_after" in message


def test_the_warning_is_logged_when_the_daemon_is_built(tmp_path: Path) -> None:
    """The component logs each ignored key's warning once per build (and
    per reload), at warn level."""
    from twisted.internet.testing import MemoryReactorClock
    from twisted.logger import LogLevel, globalLogPublisher

    from wsdaemon.components import operator_component
    from wsdaemon.server.assembly import Assembly

    path = config_with(tmp_path, "lease = 120\nkeep_after_fallback = yes")
    events: list[dict[str, object]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        Assembly(MemoryReactorClock(), components=operator_component).fresh(
            load_config(path, clock=Clock()))
    finally:
        globalLogPublisher.removeObserver(events.append)
    warnings = [str(e["warning"]) for e in events
                if e.get("log_level") == LogLevel.warn and "warning" in e]
    assert [w.split(": ")[1] for w in warnings] == ["[operator] lease",
                                                    "[operator] keep_after_fallback"]
