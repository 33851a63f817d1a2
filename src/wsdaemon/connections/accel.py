"""
Per-message waste removed from Autobahn, measured with py-spy on the echo
route (64 connections x 64-byte messages) and guarded by the
Autobahn|Testsuite in CI.

1. Log highlighting. Autobahn formats the arguments of its debug log calls
   (C{hltype}, C{hlval}: class names coloured with click) on every read and
   write, before the logger drops them because debug is off. We replace
   those helpers, in the Autobahn modules that call them, with plain ones
   that do no formatting work; debug logs still say the same, uncoloured.
2. Pretty-printing on every handshake. For a debug log line Autobahn
   pretty-prints (C{pformat}) its whole option table on every connection:
   about 15% of a handshake's CPU here. Ours formats lazily, only if a
   debug observer actually renders the line.
3. Masking small frames. For every frame Autobahn builds a new CFFI masker
   (NVX) and copies the payload three times: ~2.7 µs for a 64-byte frame.
   Below C{SMALL_FRAME} bytes we unmask with one big-integer XOR instead,
   in C inside CPython; larger frames keep NVX's SIMD masker.

Nothing here changes a byte on the wire.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SMALL_FRAME", "SmallFrameMasker", "describe", "install"]

#: Frames shorter than this are unmasked by L{SmallFrameMasker}.
SMALL_FRAME = 1024

_installed: list[str] = []


class SmallFrameMasker:
    """
    The XOR masker interface Autobahn expects (C{process}, C{pointer},
    C{reset}), for frames of a known, small length.
    """

    __slots__ = ("_key", "_ptr")

    def __init__(self, mask: bytes, length: int) -> None:
        # The mask repeated over the whole frame, plus room for an offset.
        self._key = bytes(mask) * ((length >> 2) + 2)
        self._ptr = 0

    def pointer(self) -> int:
        return self._ptr

    def reset(self) -> None:
        self._ptr = 0

    def process(self, data: Any) -> bytes:
        n = len(data)
        start = self._ptr & 3
        self._ptr += n
        if not n:
            return b""
        key = self._key[start:start + n]
        if len(key) < n:  # more data than announced: stay correct anyway
            key = (self._key * ((n // len(self._key)) + 2))[start:start + n]
        masked = int.from_bytes(data, "little") ^ int.from_bytes(key, "little")
        return masked.to_bytes(n, "little")


def _plain_hltype(obj: Any) -> str:
    return str(getattr(obj, "__qualname__", getattr(obj, "__name__", obj)))


def _plain_hlval(val: Any, *args: Any, **kwargs: Any) -> Any:
    return val


class _LazyFormat:
    """
    Pretty-prints its value when (and only if) a log observer renders it.
    """

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __str__(self) -> str:
        from pprint import pformat

        return pformat(self.value)

    __repr__ = __str__


def install() -> list[str]:
    """
    Apply the replacements once (idempotent).

    @return: what is in use, for the startup log.
    """
    if _installed:
        return list(_installed)
    from autobahn.twisted import websocket as twisted_websocket
    from autobahn.websocket import protocol

    for module in (protocol, twisted_websocket):
        module.hltype = _plain_hltype  # type: ignore[attr-defined]
        module.hlval = _plain_hlval  # type: ignore[attr-defined]
    protocol.pformat = _LazyFormat  # type: ignore[assignment]
    _installed.append("no debug-log highlighting or pretty-printing")

    original = protocol.create_xor_masker

    def create_xor_masker(mask: bytes, length: int | None = None) -> Any:
        if length is not None and length < SMALL_FRAME:
            return SmallFrameMasker(mask, length)
        return original(mask, length)

    protocol.create_xor_masker = create_xor_masker
    _installed.append(f"small-frame masker (< {SMALL_FRAME} B)")
    return list(_installed)


def describe() -> str:
    return ", ".join(_installed) or "none"
