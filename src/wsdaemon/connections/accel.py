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
   in C inside CPython.
4. Masking large frames. From C{SMALL_FRAME} bytes up, NVX's SIMD masker
   still runs, but called directly: no garbage-collector hook, no zeroed
   buffer, the XOR done in place in one copy of the payload (~12 -> ~7 µs
   for a 16 KiB frame).

Nothing here changes a byte on the wire.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SMALL_FRAME", "LargeFrameMasker", "SmallFrameMasker", "describe", "install"]

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


class LargeFrameMasker:
    """
    NVX's SIMD masker (the same C code Autobahn uses), called directly.
    """

    __slots__ = ("_masker", "_mask")

    def __init__(self, mask: bytes, length: int | None = None) -> None:
        self._mask = _nvx.ffi.new("uint8_t[4]", bytes(mask))
        self._masker = _nvx.lib.nvx_xormask_new(self._mask)
        _nvx.lib.nvx_xormask_set_impl(self._masker, 2)  # SSE2

    def __del__(self) -> None:
        masker = getattr(self, "_masker", None)
        if masker is not None:
            _nvx.lib.nvx_xormask_free(masker)
            self._masker = None

    def pointer(self) -> int:
        return int(_nvx.lib.nvx_xormask_pointer(self._masker))

    def reset(self) -> None:
        _nvx.lib.nvx_xormask_reset(self._masker)

    def process(self, data: Any) -> bytes:
        buffer = bytearray(data)
        _nvx.lib.nvx_xormask_process(self._masker, _nvx.ffi.from_buffer(buffer), len(buffer))
        return bytes(buffer)


class _NoNvx:
    ffi: Any = None
    lib: Any = None


try:
    import _nvx_xormasker as _nvx  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - Autobahn without NVX: its own maskers
    _nvx = _NoNvx()


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

    large = _nvx.lib is not None

    def create_xor_masker(mask: bytes, length: int | None = None) -> Any:
        if length is not None and length < SMALL_FRAME:
            return SmallFrameMasker(mask, length)
        if large:
            return LargeFrameMasker(mask, length)
        return original(mask, length)

    protocol.create_xor_masker = create_xor_masker
    _installed.append(f"small-frame masker (< {SMALL_FRAME} B)")
    if large:
        _installed.append("direct NVX masker for larger frames")
    return list(_installed)


def describe() -> str:
    return ", ".join(_installed) or "none"
