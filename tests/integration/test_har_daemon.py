"""
A browser's HAR file replayed by the real daemon: C{wsdaemon-replay
--from-har --ignore ...} writes rules, the C{wsmock} fixture's daemon
serves them, and a client whose timestamps differ from the browser's gets
the server's side as the browser did.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from tests.unit.test_har import T0, page_har
from wsdaemon.strategies.proxy.replay import main

pytestmark = pytest.mark.slow


def test_a_har_replayed_tolerantly_by_the_daemon(tmp_path: Path, wsmock: Any) -> None:
    """The rules made from the HAR (--ignore $.ts) answer a live client whose
    subscription has another timestamp, in order, text and binary, with
    the recorded subprotocol; the journal shows the exchange."""
    frames = [
        {"type": "receive", "time": T0 + 0.05, "opcode": 1, "data": "welcome"},
        {"type": "send", "time": T0 + 0.1, "opcode": 1,
         "data": '{"op": "sub", "ts": 1796000000, "channel": "prices"}'},
        {"type": "receive", "time": T0 + 0.15, "opcode": 1, "data": '{"price": 101.5}'},
        {"type": "send", "time": T0 + 0.2, "opcode": 2,
         "data": base64.b64encode(b"\x01\x02").decode()},
        {"type": "receive", "time": T0 + 0.25, "opcode": 2,
         "data": base64.b64encode(b"\xff").decode()},
    ]
    har = tmp_path / "page.har"
    har.write_text(json.dumps(page_har(frames)))
    rules = tmp_path / "replay.toml"
    assert main(["--from-har", str(har), "--url-filter", "/live", "--ignore", "$.ts",
                 "-o", str(rules)]) == 0
    wsmock.rules_file(rules)
    with connect(wsmock.url, subprotocols=["v2"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "v2"
        assert ws.recv(timeout=5) == "welcome"
        ws.send(json.dumps({"channel": "prices", "ts": 1812345678, "op": "sub"}))
        assert ws.recv(timeout=5) == '{"price": 101.5}'
        ws.send(b"\x01\x02")
        assert ws.recv(timeout=5) == b"\xff"
    wsmock.assert_received(count=2)
    wsmock.assert_sent(count=3)
