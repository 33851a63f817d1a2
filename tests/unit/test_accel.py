"""
The small-frame masker gives exactly what XOR with the repeated mask gives,
for any split of the data, and Autobahn uses it once installed.
"""

from __future__ import annotations

import os

import pytest

from wsdaemon.connections.accel import SMALL_FRAME, SmallFrameMasker, install


def reference(mask: bytes, data: bytes) -> bytes:
    return bytes(b ^ mask[i % 4] for i, b in enumerate(data))


@pytest.mark.parametrize("length", [0, 1, 3, 4, 5, 64, 125, 126, 1000])
def test_matches_reference_in_one_piece(length: int) -> None:
    """The small-frame masker equals XOR with the repeated mask."""
    mask, data = os.urandom(4), os.urandom(length)
    assert SmallFrameMasker(mask, length).process(data) == reference(mask, data)


@pytest.mark.parametrize("cuts", [(1,), (3, 5), (2, 2, 2), (7, 11, 13)])
def test_matches_reference_in_pieces(cuts: tuple[int, ...]) -> None:
    """The masker is right however the data is split."""
    mask, data = os.urandom(4), os.urandom(100)
    masker = SmallFrameMasker(mask, len(data))
    out, at = b"", 0
    for cut in cuts + (len(data),):
        out += masker.process(data[at:at + cut])
        at = min(len(data), at + cut)
    assert out == reference(mask, data)
    assert masker.pointer() == len(data)
    masker.reset()
    assert masker.pointer() == 0


def test_more_data_than_announced_is_still_correct() -> None:
    """More data than announced is still correct."""
    mask, data = os.urandom(4), os.urandom(50)
    assert SmallFrameMasker(mask, 10).process(data) == reference(mask, data)


def test_installed_into_autobahn() -> None:
    """install() makes Autobahn use our masker and plain log helpers."""
    install()
    from autobahn.websocket import protocol

    assert isinstance(protocol.create_xor_masker(b"abcd", 64), SmallFrameMasker)
    assert not isinstance(protocol.create_xor_masker(b"abcd", SMALL_FRAME), SmallFrameMasker)
    assert protocol.hltype(SmallFrameMasker) == "SmallFrameMasker"
    lazy = protocol.pformat([("a", 1)])
    assert str(lazy) == "[('a', 1)]"


def test_large_frame_masker_matches_autobahns() -> None:
    """The direct NVX masker unmasks exactly as Autobahn's own, whole or in
    pieces (frames arrive split across reads)."""
    import os

    from autobahn.nvx._xormasker import create_xor_masker as autobahn_masker

    from wsdaemon.connections.accel import LargeFrameMasker

    for length in (1024, 1500, 16384, 65537):
        mask, data = os.urandom(4), os.urandom(length)
        ours, theirs = LargeFrameMasker(mask, length), autobahn_masker(mask, length)
        assert ours.process(data) == theirs.process(data)
        ours, theirs = LargeFrameMasker(mask, length), autobahn_masker(mask, length)
        pieces = [data[:3], data[3:777], data[777:]]
        assert b"".join(ours.process(p) for p in pieces) == b"".join(
            theirs.process(p) for p in pieces)
        assert ours.pointer() == theirs.pointer() == length
        ours.reset()
        assert ours.pointer() == 0
