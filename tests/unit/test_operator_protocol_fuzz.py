"""
The operator protocol fuzzed (hypothesis): whatever an operator sends, it
gets exactly one answer, `ok` or `error` with a reason, and nothing fails
inside the daemon.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from tests.unit.test_operator_queue import result
from wsdaemon.config import ProtocolSettings
from wsdaemon.strategies.operator.channel import OperatorChannelFactory
from wsdaemon.strategies.operator.memory import MemoryStore
from wsdaemon.strategies.operator.queue import OperatorQueue, OperatorSettings
from wsdaemon.testing import RecordingSession

_TYPES = ["list", "clients", "text", "claim", "release", "reply", "push", "broadcast",
          "transcript", "hello", "", "__class__", "_snapshot"]
_KEYS = ["id", "item", "text", "client", "route", "limit", "after", "before", "offset", "seq",
         "search", "state"]
_SCALARS = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
            | st.floats(allow_nan=False) | st.text(max_size=40)
            | st.sampled_from(["item1", "item", "c1", "/support", "queued", "\ud800"]))
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)
_REQUESTS = st.builds(
    lambda kind, extra: {"type": kind, **extra},
    st.sampled_from(_TYPES) | st.text(max_size=10),
    st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=5),
)
_PAYLOADS = st.one_of(
    _REQUESTS.map(lambda r: json.dumps(r).encode("utf-8", "surrogatepass")),
    _VALUES.map(lambda v: json.dumps(v).encode("utf-8", "surrogatepass")),
    st.binary(max_size=64),
    st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n),
)


def _channel() -> Any:
    ids = iter(["item1", "item2", "item3"])
    queue = OperatorQueue(OperatorSettings(store_path=Path("unused"), fallback_after=0),
                          MemoryStore(), Clock(), new_id=lambda: next(ids))
    result(queue.start())
    queue.send_limits = {"": 65536}
    for n in range(3):
        client = RecordingSession(session_id=f"s{n}", route="/support", client_id=f"c{n}")
        queue.client_connected(client)
        result(queue.enqueue(client, f"question {n}"))
    factory = OperatorChannelFactory(queue, {"t" * 20: "alice"}, ProtocolSettings())
    protocol = factory.buildProtocol(None)
    protocol.name = "alice"
    return protocol


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=_PAYLOADS, binary=st.booleans())
def test_every_request_gets_one_answer_and_nothing_fails(payload: bytes, binary: bool) -> None:
    """Any bytes, any JSON, any request with any field values: exactly one `ok`
    or `error` answer, and no failure logged inside the daemon."""
    protocol = _channel()
    answers: list[dict[str, Any]] = []
    protocol.notify = answers.append
    failures: list[Any] = []

    def observe(event: dict[str, Any]) -> None:
        if "log_failure" in event:
            failures.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        protocol.onMessage(payload, binary)
    finally:
        globalLogPublisher.removeObserver(observe)
    assert failures == [], [f["log_failure"].getTraceback() for f in failures]
    assert len(answers) == 1, answers
    answer = answers[0]
    assert answer["type"] in ("ok", "error")
    if answer["type"] == "error":
        assert isinstance(answer["error"], str) and answer["error"]
        assert answer["error"] != "internal error"
    json.dumps(answer)
