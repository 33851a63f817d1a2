"""
The fast frame path (wsdaemon.connections.frames) gives exactly what
Autobahn's own parser gives: the same messages in the same order, the same
answers to control frames and the same close codes, however the bytes are
split across reads; and it is the path actually taken for whole frames.
"""

from __future__ import annotations

import os
import random
import struct
from dataclasses import replace
from typing import Any

import pytest

from tests import wsframes as ws
from tests.unit.test_protocol import SETTINGS, Client, ProgrammableStrategy, echo, make_factory
from wsdaemon.connections.frames import WAIT_FOR, describe, frame_header, unmask
from wsdaemon.interfaces import ISession

BIG = replace(SETTINGS, max_message_size=1 << 20, max_frame_size=1 << 20)


def reference_mask(mask: bytes, data: bytes) -> bytes:
    return bytes(b ^ mask[i % 4] for i, b in enumerate(data))


# -- pieces -------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 3, 4, 5, 64, 255, 256, 257, 1023, 1024, 16384, 70000])
def test_unmask_equals_xor_with_the_repeated_mask(length: int) -> None:
    """A payload in the middle of the received bytes is unmasked exactly, and
    the received bytes are left as they were."""
    mask, payload = os.urandom(4), os.urandom(length)
    data = b"head" + reference_mask(mask, payload) + b"tail"
    copy = bytes(data)
    assert unmask(data, 4, 4 + length, mask) == payload
    assert data == copy
    assert "websockets' C apply_mask" in describe()  # what the startup log says


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 1 << 20])
@pytest.mark.parametrize("opcode", [1, 2])
def test_frame_header_is_rfc6455(opcode: int, length: int) -> None:
    """FIN + opcode, no mask bit, the minimal length encoding."""
    if length < 126:
        expected = bytes([0x80 | opcode, length])
    elif length < 65536:
        expected = bytes([0x80 | opcode, 126]) + struct.pack("!H", length)
    else:
        expected = bytes([0x80 | opcode, 127]) + struct.pack("!Q", length)
    assert frame_header(opcode, length) == expected


# -- the same as Autobahn, for every split ------------------------------------------------


def stream() -> tuple[bytes, list[tuple[str, object]]]:
    """Frames of every kind the fast path takes or gives up, and the events they cause."""
    text16k = ("é" * 8192).encode()
    items: list[tuple[bytes, object]] = [
        (ws.client_frame(ws.TEXT, "héllo".encode()), "héllo"),
        (ws.client_frame(ws.BINARY, bytes(range(64))), bytes(range(64))),
        (ws.client_frame(ws.PING, b"p"), None),
        (ws.client_frame(ws.TEXT, b"frag", fin=False)
         + ws.client_frame(ws.CONTINUATION, b"ment"), "fragment"),
        (ws.client_frame(ws.BINARY, b"\x01" * 300), b"\x01" * 300),
        (ws.client_frame(ws.TEXT, ("ü" * 350).encode()), "ü" * 350),
        (ws.client_frame(ws.BINARY, b""), b""),
        (ws.client_frame(ws.TEXT, b"x" * 126), "x" * 126),
        (ws.client_frame(ws.TEXT, text16k), text16k.decode()),
        (ws.client_frame(ws.BINARY, b"\x02" * 65535), b"\x02" * 65535),
        (ws.client_frame(ws.BINARY, b"\x03" * (WAIT_FOR + 10)), b"\x03" * (WAIT_FOR + 10)),
        (ws.client_frame(ws.TEXT, b"last"), "last"),
    ]
    data = b"".join(frame for frame, _ in items)
    events = [("message", message) for _, message in items if message is not None]
    return data, events


def run(data: bytes, cuts: list[int], fast: bool) -> tuple[list[Any], list[tuple[int, bytes]]]:
    strategy = ProgrammableStrategy(echo)
    client = Client(make_factory(strategy, BIG))
    if not fast:
        client.protocol._fast_in = False
    start = 0
    for cut in [*cuts, len(data)]:
        client.protocol.dataReceived(data[start:cut])
        start = cut
    return strategy.events[1:], [(f.opcode, f.payload) for f in client.frames()]


def random_cuts(length: int, seed: int, most: int) -> list[int]:
    rng = random.Random(seed)
    cuts, at = [], 0
    while True:
        at += rng.randint(1, most)
        if at >= length:
            return cuts
        cuts.append(at)


@pytest.mark.parametrize("split", ["whole", "tiny", "small", "medium", "large"])
def test_same_messages_and_answers_as_autobahn_for_any_split(split: str) -> None:
    """Messages, their order, echoes and the pong are the same on both paths."""
    data, expected = stream()
    most = {"whole": 0, "tiny": 7, "small": 100, "medium": 5000, "large": 40000}[split]
    for seed in range(3 if most else 1):
        cuts = random_cuts(len(data), seed, most) if most else []
        fast_events, fast_frames = run(data, cuts, fast=True)
        slow_events, slow_frames = run(data, cuts, fast=False)
        assert fast_events == slow_events == expected
        assert fast_frames == slow_frames
        assert (ws.PONG, b"p") in fast_frames


def test_every_two_piece_split_of_a_short_stream() -> None:
    """Cut anywhere (inside a header, a mask, a payload), two frames arrive as two messages."""
    data = ws.client_frame(ws.BINARY, b"ab" * 200) + ws.client_frame(ws.TEXT, "ő".encode())
    for cut in range(1, len(data)):
        events, frames = run(data, [cut], fast=True)
        assert events == [("message", b"ab" * 200), ("message", "ő")], cut
        assert [f for _, f in frames] == [b"ab" * 200, "ő".encode()]


# -- taken, and failing the same way ----------------------------------------------------


def test_whole_data_frames_skip_autobahns_parser() -> None:
    """Whole frames never reach Autobahn's processData; a ping does."""
    client = Client(make_factory(ProgrammableStrategy(echo)))
    calls: list[int] = []
    original = client.protocol.processData

    def counted() -> bool:
        calls.append(1)
        return bool(original())

    client.protocol.processData = counted  # type: ignore[method-assign]
    client.send(ws.BINARY, b"a" * 64)
    client.send(ws.TEXT, b"b" * 600)
    assert calls == []
    client.send(ws.PING, b"")
    assert calls
    assert [f.payload for f in client.frames()] == [b"a" * 64, b"b" * 600, b""]


def test_a_partly_received_binary_frame_is_waited_for() -> None:
    """Half a binary frame is kept; the message comes when the rest does."""
    strategy = ProgrammableStrategy(echo)
    client = Client(make_factory(strategy))
    frame = ws.client_frame(ws.BINARY, b"z" * 800)
    client.protocol.dataReceived(frame[:300])
    assert strategy.events[1:] == []
    assert client.protocol.current_frame is None  # not handed to Autobahn
    client.protocol.dataReceived(frame[300:])
    assert strategy.events[1:] == [("message", b"z" * 800)]


def test_a_partly_received_text_frame_valid_so_far_is_waited_for() -> None:
    """Text cut inside a character is still valid so far: kept, then decoded whole."""
    strategy = ProgrammableStrategy(echo)
    client = Client(make_factory(strategy))
    frame = ws.client_frame(ws.TEXT, ("é" * 300).encode())
    cut = 8 + 101  # header (8 bytes) + 50 whole characters + half of one
    client.protocol.dataReceived(frame[:cut])
    assert strategy.events[1:] == []
    assert client.protocol.current_frame is None
    client.protocol.dataReceived(frame[cut:])
    assert strategy.events[1:] == [("message", "é" * 300)]


def test_a_trickled_binary_frame_is_streamed_after_one_wait() -> None:
    """Waiting is for one more read only: a frame still incomplete after it is streamed
    by Autobahn, so a client sending a byte at a time never makes us copy the buffer
    over and over."""
    strategy = ProgrammableStrategy(echo)
    client = Client(make_factory(strategy))
    frame = ws.client_frame(ws.BINARY, b"t" * 900)
    client.protocol.dataReceived(frame[:100])
    assert client.protocol.current_frame is None
    client.protocol.dataReceived(frame[100:101])
    assert client.protocol.current_frame is not None  # Autobahn streams the rest
    for at in range(101, len(frame)):
        client.protocol.dataReceived(frame[at:at + 1])
        assert len(client.protocol.data) < 16
    assert strategy.events[1:] == [("message", b"t" * 900)]


def test_invalid_utf8_fails_fast_before_the_frame_is_complete() -> None:
    """A text frame still arriving is streamed: bad UTF-8 closes with 1007 at once."""
    strategy = ProgrammableStrategy(echo)
    client = Client(make_factory(strategy))
    frame = ws.client_frame(ws.TEXT, b"ok\xff" + b"a" * 500)
    client.protocol.dataReceived(frame[:12])
    assert client.frames()[-1].close_code == 1007


def test_invalid_utf8_in_a_whole_frame_closes_with_1007_and_others_are_dropped() -> None:
    """A bad whole text frame closes with 1007; nothing after it is delivered."""
    strategy = ProgrammableStrategy(echo)
    client = Client(make_factory(strategy))
    client.protocol.dataReceived(ws.client_frame(ws.TEXT, b"fine")
                                 + ws.client_frame(ws.TEXT, b"\xed\xa0\x80")  # a surrogate
                                 + ws.client_frame(ws.TEXT, b"after"))
    assert strategy.events[1:] == [("message", "fine")]
    assert client.frames()[-1].close_code == 1007


@pytest.mark.parametrize("frame", [
    pytest.param(bytes([0x82, 0x05]) + b"hello", id="unmasked"),
    pytest.param(bytes([0xC2, 0x81]) + os.urandom(5), id="rsv1-without-deflate"),
    pytest.param(bytes([0x83, 0x81]) + os.urandom(5), id="reserved-opcode"),
    pytest.param(bytes([0x82, 0xFE, 0x00, 0x05]) + os.urandom(9), id="non-minimal-length"),
    pytest.param(bytes([0x80, 0x81]) + os.urandom(5), id="continuation-outside-message"),
])
def test_protocol_violations_close_with_1002(frame: bytes) -> None:
    """Frames the fast path does not take are judged by Autobahn: 1002."""
    strategy = ProgrammableStrategy(echo)
    client = Client(make_factory(strategy))
    client.protocol.dataReceived(ws.client_frame(ws.TEXT, b"before") + frame)
    assert strategy.events[1:] == [("message", "before")]
    assert client.frames()[-1].close_code == 1002


def test_a_reply_over_the_limit_closes_with_1009() -> None:
    """Our framing keeps Autobahn's send limit: the client gets 1009, not a huge frame."""
    client = Client(make_factory(ProgrammableStrategy(lambda s, m: b"y" * 2000)))
    client.send(ws.BINARY, b"go")
    frames = client.frames()
    assert [f.close_code for f in frames] == [1009]


def test_messages_after_the_strategy_closes_are_not_delivered() -> None:
    """A close started by the strategy stops delivery inside one read too."""

    def close_on_stop(session: ISession, message: str | bytes) -> object:
        if message == "stop":
            session.close(4000, "bye")
        return None

    strategy = ProgrammableStrategy(close_on_stop)
    client = Client(make_factory(strategy))
    client.protocol.dataReceived(ws.client_frame(ws.TEXT, b"one")
                                 + ws.client_frame(ws.TEXT, b"stop")
                                 + ws.client_frame(ws.TEXT, b"three"))
    assert strategy.events[1:] == [("message", "one"), ("message", "stop")]
    assert client.frames()[-1].close_code == 4000
