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
3. Masking. For every frame Autobahn builds a new masker (NVX's, a C
   struct behind CFFI) and copies the payload three times: ~2.7 µs for a
   64-byte frame. Ours, L{StreamMasker}, keeps only the mask and its offset
   in Python and XORs with L{apply_mask}: websockets' stateless C function
   (SIMD; 0.08 µs at 64 B, 0.43 µs at 16 KiB here), or a big-integer XOR
   where websockets' C speedups are not installed. No C struct is written.

4. Twisted's text log lines (every connection writes two): formatted with
   the same text in C, see L{wsdaemon.connections.loglines}, installed
   from here and checked on its own.
5. The garbage collector's thresholds for thousands of open connections
   (L{wsdaemon.connections.collector}), set from here: no private name.

Each replacement's target is named in L{wsdaemon.internals} and checked
before it is made; if any is missing, Autobahn's own code stays in place and
L{describe} says so.

Nothing here changes a byte on the wire.
"""

from __future__ import annotations

from typing import Any

from wsdaemon.internals import Reach, check_accel

__all__ = ["MASKER", "StreamMasker", "apply_mask", "describe", "install"]


def _xor_big_int(data: Any, mask: bytes) -> bytes:
    n = len(data)
    if not n:
        return b""
    key = (mask * ((n >> 2) + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


_c_apply_mask: Any
try:
    from websockets.speedups import apply_mask as _c_apply_mask
except ImportError:  # pragma: no cover - websockets built without its C speedups
    _c_apply_mask = None

#: C{apply_mask(data, mask) -> bytes}: C{data} (any buffer) XORed with the
#: 4-byte C{mask} repeated.
apply_mask = _c_apply_mask if _c_apply_mask is not None else _xor_big_int
#: What L{apply_mask} is, for the start-up log.
MASKER = ("websockets' C apply_mask" if _c_apply_mask is not None
          else "big-integer XOR (websockets' C speedups not installed)")

_installed: list[str] = []


class StreamMasker:
    """
    The XOR masker interface Autobahn expects (C{process}, C{pointer},
    C{reset}): a frame's payload may come in pieces, so the offset into the
    mask is kept and the mask rotated to it for each piece.
    """

    __slots__ = ("_mask", "_ptr")

    def __init__(self, mask: bytes, length: int | None = None) -> None:
        self._mask = bytes(mask)
        self._ptr = 0

    def pointer(self) -> int:
        return self._ptr

    def reset(self) -> None:
        self._ptr = 0

    def process(self, data: Any) -> bytes:
        start = self._ptr & 3
        self._ptr += len(data)
        mask = self._mask
        if start:
            mask = mask[start:] + mask[:start]
        return apply_mask(data, mask)


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


def _timings_str(self: Any) -> str:
    # Timings.__str__ called the module's pformat, now lazy: format here.
    from pprint import pformat

    return pformat(self._timings)


def install(reach: Reach | None = None) -> list[str]:
    """
    Apply the replacements once (idempotent), if their targets are all
    there (L{wsdaemon.internals.check_accel}).

    @return: what is in use, for the start-up log.
    """
    if _installed:
        return list(_installed)
    from wsdaemon.connections import collector, loglines

    loglines.install()
    collector.tune()
    if reach is None:
        reach = check_accel()
    if not reach.usable:
        _installed.append(f"Autobahn's own maskers and log formatting ({reach.describe()})")
        return list(_installed)
    from autobahn.twisted import websocket as twisted_websocket
    from autobahn.websocket import protocol

    for module in (protocol, twisted_websocket):
        module.hltype = _plain_hltype  # type: ignore[attr-defined]
        module.hlval = _plain_hlval  # type: ignore[attr-defined]
    protocol.pformat = _LazyFormat  # type: ignore[assignment]
    protocol.Timings.__str__ = _timings_str  # type: ignore[method-assign]
    _installed.append("no debug-log highlighting or pretty-printing")
    protocol.create_xor_masker = StreamMasker
    _installed.append(f"masking with {MASKER}")
    return list(_installed)


def describe() -> str:
    from wsdaemon.connections import collector, loglines, setup, upgrade

    return ", ".join(filter(None, [*_installed, loglines.describe(), collector.describe(),
                                   upgrade.describe(), setup.describe()])) or "none"
