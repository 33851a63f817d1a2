"""
The stream masker gives exactly what XOR with the repeated mask gives, for
any split of the data, through websockets' C function and through the
big-integer fallback; Autobahn uses it once installed, its own objects still
work (Timings prints), and a missing target leaves Autobahn untouched.
"""

from __future__ import annotations

import os

import pytest

from wsdaemon.connections import accel
from wsdaemon.connections.accel import StreamMasker, install
from wsdaemon.internals import Reach


def reference(mask: bytes, data: bytes) -> bytes:
    return bytes(b ^ mask[i % 4] for i, b in enumerate(data))


@pytest.fixture(params=["c", "big-int"])
def masking(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways of masking: websockets' C apply_mask, and the fallback."""
    if request.param == "big-int":
        monkeypatch.setattr(accel, "apply_mask", accel._xor_big_int)
    else:
        assert accel._c_apply_mask is not None, "websockets' C speedups are installed"
    return str(request.param)


@pytest.mark.parametrize("length", [0, 1, 3, 4, 5, 64, 125, 126, 1000, 1024, 16384, 65537])
def test_matches_reference_in_one_piece(masking: str, length: int) -> None:
    """The masker equals XOR with the repeated mask."""
    mask, data = os.urandom(4), os.urandom(length)
    assert StreamMasker(mask, length).process(data) == reference(mask, data)


@pytest.mark.parametrize("cuts", [(1,), (3, 5), (2, 2, 2), (7, 11, 13), (1, 1, 1, 1, 1)])
def test_matches_reference_in_pieces(masking: str, cuts: tuple[int, ...]) -> None:
    """The masker is right however the data is split (a frame streamed in reads)."""
    mask, data = os.urandom(4), os.urandom(2000)
    masker = StreamMasker(mask, len(data))
    out, at = b"", 0
    for cut in cuts + (len(data),):
        out += masker.process(memoryview(data)[at:at + cut])
        at = min(len(data), at + cut)
    assert out == reference(mask, data)
    assert masker.pointer() == len(data)
    masker.reset()
    assert masker.pointer() == 0


def test_installed_into_autobahn() -> None:
    """install() makes Autobahn use our masker and plain log helpers, and
    Autobahn's Timings still print as a string."""
    install()
    from autobahn.websocket import protocol

    assert "masking with websockets' C apply_mask" in accel.describe()
    masker = protocol.create_xor_masker(b"abcd", 64)
    assert isinstance(masker, StreamMasker)
    assert masker.process(b"\x00" * 5) == b"abcda"
    assert protocol.hltype(StreamMasker) == "StreamMasker"
    lazy = protocol.pformat([("a", 1)])
    assert str(lazy) == "[('a', 1)]"
    timings = protocol.Timings()
    timings.track("onOpen")
    assert isinstance(str(timings), str) and "onOpen" in str(timings)


def test_a_missing_target_leaves_autobahn_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Told that a target is missing, install() replaces nothing and says why."""
    from autobahn.websocket import protocol

    monkeypatch.setattr(accel, "_installed", [])
    before = protocol.create_xor_masker, protocol.pformat, protocol.hltype
    done = install(Reach("accel", ("autobahn.websocket.protocol.create_xor_masker",)))
    assert (protocol.create_xor_masker, protocol.pformat, protocol.hltype) == before
    assert done == ["Autobahn's own maskers and log formatting "
                    "(missing autobahn.websocket.protocol.create_xor_masker)"]
