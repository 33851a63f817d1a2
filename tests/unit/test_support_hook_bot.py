"""
The team's own backend as a route's bot (issue 24, item 3), on the real
conversation driver, a memory store, a L{Clock} and a poster the test
answers: each visitor message of the bot's episode is POSTed, signed
(verified with the C{standardwebhooks} package), with the episode's
context; its answers become the bot's messages, its handoff a handoff with
the reason as a note; one request per conversation, the rest waiting in
order up to the bound; the backend down, slow or wrong hands over with
the reason, logged once per outage; a handoff phrase never asks it.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from tests.driver_bench import ROUTE, GatedStore, RecordingPorts, cid
from wsdaemon.conversations import (
    ConversationSettings,
    Inbox,
    OperatorReply,
    SignalVisitor,
    VisitorMessage,
)
from wsdaemon.conversations.aliases import alias_for
from wsdaemon.strategies.api import OptionContext, OptionError
from wsdaemon.strategies.webhook.client import Reply
from wsdaemon.strategies.webhook.options import WebhookSettings
from wsdaemon.support.bot import ASKED
from wsdaemon.support.bot_settings import BotSettings, bot_settings
from wsdaemon.support.bots import Bots
from wsdaemon.support.driver import ConversationDriver
from wsdaemon.support.hook_bot import CHANGED, CROWDED, DOWN, STOPPED, TOO_FAST, HookBot
from wsdaemon.support.hook_bot_answer import BACKEND_HANDOFF
from wsdaemon.support.hook_bot_settings import BotBackend
from wsdaemon.support.metrics import ConversationCollector, ConversationMeasures

SECRET = "whsec_NRm/pdS8h4I4QDUPnhpccTRuvUPnhvGu"
URL = "http://127.0.0.1:9/support-bot"


class Backend:
    """A poster whose requests the test answers, one Deferred each."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes, Deferred[Reply]]] = []
        self.refuse = False

    def __call__(self, url: str, headers: Any, body: bytes) -> Deferred[Reply]:
        if self.refuse:
            return fail(ConnectionRefusedError())
        d: Deferred[Reply] = Deferred()
        self.requests.append((url, dict(headers), body, d))
        return d

    def event(self, index: int = -1) -> dict[str, Any]:
        """The request's event, its signature verified as a backend would."""
        _, headers, body, _ = self.requests[index]
        verified: dict[str, Any] = Webhook(SECRET).verify(body, headers)
        return verified

    def answer(self, index: int, body: bytes | str | dict[str, Any] = b"",
               status: int = 200) -> None:
        if isinstance(body, dict):
            reply = Reply(status, "application/json", json.dumps(body).encode())
        elif isinstance(body, str):
            reply = Reply(status, "text/plain; charset=utf-8", body.encode())
        else:
            reply = Reply(status if body else 204, "", body)
        self.requests[index][3].callback(reply)


class HookDesk:
    """A started driver whose operator port is the bots, a backend bot on ROUTE."""

    def __init__(self, context: int = 20, max_queue: int = 32, retries: int = 0,
                 max_episodes: int = 100, store: GatedStore | None = None,
                 start: float | None = None) -> None:
        self.clock = Clock()
        # Now: standardwebhooks refuses a timestamp more than 5 minutes off.
        self.clock.advance(time.time() if start is None else start)
        self.store = store if store is not None else GatedStore()
        self.ports = RecordingPorts(self.store)
        self.backend = Backend()
        self.bots = Bots(self.ports, self.clock, visitors=self.ports, max_episodes=max_episodes,
                         posters=lambda settings: self.backend)
        self.driver = ConversationDriver(self.store, Inbox(ConversationSettings(fallback_after=0)),
                                         self.clock, self.ports, self.bots, self.ports)
        self.bots.attach(self.driver.submit)
        assert self.driver.start().called
        key = base64.b64decode(SECRET[6:])  # the decoded key, as the options read it
        webhook = WebhookSettings(urls=(("message", URL),), secrets=(key,), timeout=10.0,
                                  retries=retries, max_queue=max_queue)
        self.settings = BotSettings(None, "Helper", backend=BotBackend(webhook, context))
        self.bot = self.bots.serve(ROUTE, self.settings)
        assert isinstance(self.bot, HookBot)

    def say(self, text: str, visitor: str = "v1") -> None:
        failures: list[Any] = []
        self.driver.submit(VisitorMessage(ROUTE, visitor, text, None, bot=True)) \
            .addCallbacks(self.bots.answer, failures.append)
        assert not failures, failures

    def thread(self, visitor: str = "v1") -> list[tuple[str, str | None, str]]:
        log = self.store.inner.message_log.get(cid(visitor), {})
        return [(str(m.author), m.display_name, m.body) for _, m in sorted(log.items())
                if str(m.author) != "system"]

    def conversation(self, visitor: str = "v1") -> Any:
        return self.driver.inbox.conversation(cid(visitor))

    def notes(self, visitor: str = "v1") -> list[tuple[str, str]]:
        return [(n.operator, n.body) for n in self.conversation(visitor).notes]


@pytest.fixture
def logged() -> Iterator[list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def warnings(events: list[dict[str, Any]]) -> list[str]:
    return [e["log_format"] for e in events
            if e.get("log_namespace") == "wsdaemon.support.bot"
            and e["log_level"].name in ("warn", "info")]


def test_the_backend_answers_twice_then_hands_over() -> None:
    """Signed events with the episode as context; a text answer, a JSON
    answer of two messages, then a handoff with its reason as the note."""
    desk = HookDesk()
    desk.say("When do you open?")
    event = desk.backend.event(0)
    assert desk.backend.requests[0][0] == URL
    assert event["type"] == "message" and event["route"] == ROUTE
    assert event["conversation_id"] == cid("v1") and event["visitor"] == "v1"
    assert event["alias"] == alias_for("v1") and event["profile"] is None
    assert event["message"]["text"] == "When do you open?" and event["message"]["seq"] == 1
    assert event["context"] == []
    assert desk.backend.requests[0][1]["webhook-id"] == event["id"]
    desk.backend.answer(0, "We open at 9.")
    assert desk.thread() == [("visitor", None, "When do you open?"),
                             ("bot", "Helper", "We open at 9.")]
    assert desk.conversation().with_bot

    desk.say("And on Sunday?")
    event = desk.backend.event(1)
    assert [(c["author"], c["text"]) for c in event["context"]] == [
        ("visitor", "When do you open?"), ("bot", "We open at 9.")]
    assert event["context"][1]["name"] == "Helper"
    desk.backend.answer(1, {"messages": [{"text": "Closed on Sunday."}, {"text": "Sorry!"}]})
    desk.say("I want my money back")
    desk.backend.answer(2, {"messages": [{"text": "A colleague will help."}],
                            "handoff": "refund asked"})
    assert desk.thread()[-4:] == [("bot", "Helper", "Closed on Sunday."),
                                  ("bot", "Helper", "Sorry!"),
                                  ("visitor", None, "I want my money back"),
                                  ("bot", "Helper", "A colleague will help.")]
    assert not desk.conversation().with_bot
    assert desk.notes() == [("bot", "handed over: refund asked")]
    assert len(desk.bot) == 0
    # The operators have it: the bot is not asked again.
    desk.say("hello?")
    assert len(desk.backend.requests) == 3
    assert desk.bots.counts[(ROUTE, "reply")] == 4
    assert desk.bots.counts[(ROUTE, "backend")] == 1


def test_handoff_true_gives_the_default_reason_and_204_keeps_it() -> None:
    """An empty answer leaves the message waiting with the bot; handoff true hands over."""
    desk = HookDesk()
    desk.say("hi")
    desk.backend.answer(0, b"")
    assert desk.conversation().with_bot and len(desk.thread()) == 1
    desk.say("hello?")
    desk.backend.answer(1, {"handoff": True})
    assert desk.notes() == [("bot", f"handed over: {BACKEND_HANDOFF}")]


def test_one_request_per_conversation_the_rest_wait_in_order() -> None:
    """A second and third message wait for the first's answer, then go one by one."""
    desk = HookDesk()
    desk.say("one")
    desk.say("two", visitor="v2")  # another conversation is not held up
    desk.say("three")
    desk.say("four")
    assert [desk.backend.event(i)["message"]["text"] for i in range(2)] == ["one", "two"]
    desk.backend.answer(0, "first")
    assert desk.backend.event(2)["message"]["text"] == "three"
    assert len(desk.backend.requests) == 3
    desk.backend.answer(2, "")
    assert desk.backend.event(3)["message"]["text"] == "four"
    # The bot's answer to "one" came after "four" was written: in the
    # context all the same, in the thread's order.
    assert [c["text"] for c in desk.backend.event(3)["context"]] == ["one", "three", "first"]


def test_more_waiting_than_the_bound_hands_over() -> None:
    """At bot_max_queue messages waiting, one more goes to the operators, and
    the request under way is cancelled."""
    desk = HookDesk(max_queue=2)
    for text in ("a", "b", "c"):
        desk.say(text)
    assert desk.conversation().with_bot
    desk.say("d")
    assert not desk.conversation().with_bot
    assert desk.notes() == [("bot", "handed over: " + TOO_FAST.format(count=3))]
    assert len(desk.backend.requests) == 1
    assert desk.bot.hook_stats.errors["queue"] == 1


def test_context_is_bounded() -> None:
    """bot_context = 2: only the two messages before this one."""
    desk = HookDesk(context=2)
    for i in range(4):
        desk.say(f"m{i}")
        desk.backend.answer(i, "")
    desk.say("last")
    assert [c["text"] for c in desk.backend.event(4)["context"]] == ["m2", "m3"]


def test_a_handoff_phrase_never_asks_the_backend() -> None:
    """'I want a human' goes to the operators at once."""
    desk = HookDesk()
    desk.say("I want a human please")
    assert desk.backend.requests == []
    assert desk.notes() == [("bot", "handed over: " + ASKED.format(phrase="human"))]


def test_a_slow_backend_hands_over_logged_once_per_outage(logged: list[dict[str, Any]]) -> None:
    """A timeout hands over with the reason; the second failure is not
    logged again; the backend answering again is logged once."""
    desk = HookDesk()
    desk.say("hi")
    desk.say("hi", visitor="v2")
    typing = [e.on for e in desk.ports.of(SignalVisitor) if e.visitor == "v1"]
    assert typing == [True]
    desk.clock.advance(10)
    for visitor in ("v1", "v2"):
        assert not desk.conversation(visitor).with_bot
        assert desk.notes(visitor) == [("bot", "handed over: " + DOWN.format(kind="timeout"))]
    assert [e.on for e in desk.ports.of(SignalVisitor) if e.visitor == "v1"] == [True, False]
    assert sum("the backend failed" in w for w in warnings(logged)) == 1, warnings(logged)
    assert desk.bot.hook_stats.errors["timeout"] == 2
    assert desk.bots.counts[(ROUTE, "backend_failed")] == 2
    desk.say("again", visitor="v3")
    desk.backend.answer(2, "back")
    assert sum("the backend answers again" in w for w in warnings(logged)) == 1
    assert desk.thread("v3")[-1] == ("bot", "Helper", "back")


@pytest.mark.parametrize(("answer", "status", "reason"), [
    (b"", 503, "the bot's backend did not answer: status 503"),
    ({"messages": "no"}, 200, "answered something it cannot do"),
    ({"close": 1}, 200, "unknown key 'close'"),
])
def test_an_error_or_wrong_answer_hands_over(answer: Any, status: int, reason: str) -> None:
    """A 5xx or an answer the bot cannot carry out: handed over, saying why."""
    desk = HookDesk()
    desk.say("hi")
    desk.backend.answer(0, answer or "x", status)
    assert not desk.conversation().with_bot
    assert reason in desk.notes()[0][1]
    assert desk.thread() == [("visitor", None, "hi")]


def test_a_refused_backend_is_retried_then_hands_over() -> None:
    """Never reached: retried with backoff, then handed over as unreachable."""
    desk = HookDesk(retries=2)
    desk.backend.refuse = True
    desk.say("hi")
    assert desk.conversation().with_bot
    desk.clock.advance(0.2)
    desk.clock.advance(0.4)
    assert desk.notes() == [("bot", "handed over: " + DOWN.format(kind="unreachable"))]


def test_an_operator_taking_it_cancels_the_request() -> None:
    """Once an operator replies the bot's request is cancelled; nothing is said after."""
    desk = HookDesk()
    desk.say("hi")
    d = desk.backend.requests[0][3]
    desk.driver.submit(OperatorReply(cid("v1"), "alice", "Alice here"))
    assert d.called  # cancelled
    assert len(desk.bot) == 0
    assert desk.thread()[-1][2] == "Alice here"


def test_a_stopping_daemon_hands_over_what_the_backend_had_not_answered() -> None:
    """No visitor is left waiting for an answer the stop cancels."""
    desk = HookDesk()
    desk.say("hi")
    desk.say("quiet", visitor="v2")
    desk.backend.answer(1, "")
    desk.bots.stop()
    assert desk.notes() == [("bot", "handed over: " + STOPPED)]
    assert desk.conversation("v2").with_bot


def test_metrics_show_the_backend_bots_requests() -> None:
    """The handoffs by reason and the backend's errors by kind, per route."""
    desk = HookDesk()
    desk.say("hi")
    desk.backend.answer(0, "oops", 500)
    collector = ConversationCollector(ConversationMeasures(), lambda: desk.driver.inbox,
                                      desk.clock.seconds, desk.bots.counts, desk.bots.hooks)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in collector.collect() for s in f.samples}
    assert samples[("wsdaemon_bot_handoffs_total", (("reason", "backend_failed"),
                                                    ("route", ROUTE)))] == 1
    assert samples[("wsdaemon_bot_backend_errors_total", (("kind", "status"),
                                                          ("route", ROUTE)))] == 1
    assert samples[("wsdaemon_bot_backend_in_flight", (("route", ROUTE),))] == 0
    assert samples[("wsdaemon_bot_backend_latency_seconds_count", (("route", ROUTE),))] == 1


# -- the options -------------------------------------------------------------

@pytest.fixture
def context(tmp_path: Path) -> OptionContext:
    (tmp_path / "bot.secret").write_text(SECRET + "\n")
    (tmp_path / "bot.toml").write_text('[[rule]]\ntext = "hi"\nreply = "hello"\n')
    return OptionContext(tmp_path, ROUTE, frozenset({"operator"}))


def test_bot_url_options(context: OptionContext) -> None:
    """bot_url with its secret file and bot_ options: a backend bot."""
    settings = bot_settings({"bot_url": URL, "bot_secret_file": "bot.secret",
                             "bot_timeout": "2.5", "bot_context": "5", "bot_name": "Helper"},
                            context)
    assert settings is not None and settings.rules is None and settings.backend is not None
    assert settings.backend.url == URL and settings.backend.context == 5
    assert settings.backend.webhook.timeout == 2.5 and settings.name == "Helper"


@pytest.mark.parametrize(("options", "key", "says"), [
    ({"bot": "bot.toml", "bot_url": URL, "bot_secret_file": "bot.secret"}, "bot_url",
     "not both"),
    ({"bot_url": URL}, "bot_secret_file", "signing secrets"),
    ({"bot_url": "ftp://x", "bot_secret_file": "bot.secret"}, "bot_url", "http"),
    ({"bot_url": URL, "bot_secret_file": "bot.secret", "bot_timeout": "soon"}, "bot_timeout",
     "seconds"),
    ({"bot_url": URL, "bot_secret_file": "bot.secret", "bot_context": "500"}, "bot_context",
     "0 to 100"),
    ({"bot_url": URL, "bot_secret_file": "bot.secret", "bot_unmatched": "silent"},
     "bot_unmatched", "rules"),
    ({"bot": "bot.toml", "bot_timeout": "3"}, "bot_timeout", "backend bot"),
    ({"bot_timeout": "3"}, "bot_timeout", "bot_url = URL"),
])
def test_bad_bot_url_options_name_the_key(context: OptionContext, options: dict[str, str],
                                          key: str, says: str) -> None:
    """Each mistake names its bot_ key and what was expected."""
    with pytest.raises(OptionError) as caught:
        bot_settings(options, context)
    assert caught.value.key == key
    assert says in caught.value.expected


def config_error(tmp_path: Path, route: str) -> tuple[Path, str]:
    from twisted.internet.task import Clock as ConfigClock

    from wsdaemon.config import ConfigError, load_config

    (tmp_path / "bot.secret").write_text(SECRET + "\n")
    (tmp_path / "bot.toml").write_text('[[rule]]\ntext = "hi"\nreply = "hello"\n')
    path = tmp_path / "wsdaemon.ini"
    path.write_text(
        "[wsdaemon]\nlisten = tcp:8080:interface=127.0.0.1\n\n"
        "[operator]\nmodel = conversations\ntokens = alice:0123456789abcdef0123\n\n"
        f"[route:/support]\nstrategy = operator\n{route}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, clock=ConfigClock())
    return path, str(caught.value)


def test_the_config_names_file_line_section_and_key(tmp_path: Path) -> None:
    """bot and bot_url together; a bad bot_ option: one line naming where."""
    path, message = config_error(tmp_path, f"bot = bot.toml\nbot_url = {URL}\n"
                                           "bot_secret_file = bot.secret")
    assert message.startswith(f"{path}:11: [route:/support] bot_url: a route's bot is "
                              "either rules"), message
    path, message = config_error(tmp_path, f"bot_url = {URL}\nbot_secret_file = bot.secret\n"
                                           "bot_retries = many")
    assert message.startswith(f"{path}:12: [route:/support] bot_retries: expected a number"), \
        message


def test_a_reload_keeps_an_unchanged_backend_bot_and_hands_over_for_a_changed_one() -> None:
    """The same options: the same bot, its request still answered. Other
    options (or none): what the backend had not answered goes to the operators."""
    desk = HookDesk()
    desk.say("hi")
    assert desk.bots.serve(ROUTE, desk.settings) is desk.bot
    desk.backend.answer(0, "still here")
    assert desk.thread()[-1] == ("bot", "Helper", "still here")
    desk.say("again")
    renamed = BotSettings(None, "Other", backend=desk.settings.backend)
    assert desk.bots.serve(ROUTE, renamed) is not desk.bot
    assert desk.notes() == [("bot", "handed over: " + CHANGED)]
    desk.say("quiet", visitor="v2")
    desk.bots.drop(ROUTE)
    assert desk.notes("v2") == [("bot", "handed over: " + CHANGED)]


def test_episodes_are_bounded_and_a_dropped_one_waiting_is_handed_over() -> None:
    """At max_episodes the least recently active is forgotten: answered ones
    quietly, one whose request is out handed over (its answer would be lost)."""
    desk = HookDesk(max_episodes=2)
    desk.say("a", visitor="v1")
    desk.backend.answer(0, "")
    desk.say("b", visitor="v2")
    desk.say("c", visitor="v3")  # v1 forgotten: nothing was out
    assert desk.conversation("v1").with_bot and len(desk.bot) == 2
    desk.say("d", visitor="v4")  # v2 forgotten while its request was out
    assert desk.notes("v2") == [("bot", "handed over: " + CROWDED.format(count=2))]
    assert desk.backend.requests[1][3].called  # cancelled
    assert len(desk.bot) == 2
