"""
WebSocket frames on the common path, without Autobahn's per-frame machinery.

Autobahn parses every incoming frame through about ten Python callbacks
(C{processData}, C{onFrameBegin}, C{onMessageBegin}, C{onMessageFrameBegin},
C{onFrameData}, ..., C{onMessageEnd}), each re-checking options that cannot
change on an open connection, and it builds every outgoing frame through
C{sendMessage} and C{sendFrame} the same way. For the frames nearly every
client sends (one whole, masked, uncompressed text or binary frame, within
the route's limits) L{FastFrames} reads the frame straight out of the
bytes received and hands the message on in one step; L{frame_header} builds
the header of an outgoing unfragmented frame from a table.

Everything else goes to Autobahn, unchanged: control frames (ping, pong,
close), fragments, compressed messages (permessage-deflate), frames over a
limit, protocol violations (reserved bits or opcodes, unmasked frames,
non-minimal lengths) and frames still arriving after one more read (Autobahn
streams them; see L{WAIT_FOR}).
Frames are taken in order: the first frame that is not ours ends the fast
loop and Autobahn parses from there. Guarded by the Autobahn|Testsuite in
CI, and by tests that feed the same bytes in every split to both paths.

Autobahn's own C{trafficStats} count only received wire bytes on this path
(not frames or messages); wsdaemon's metrics count every message either way.
"""

from __future__ import annotations

import codecs
import struct
from typing import Any

from autobahn.websocket.protocol import WebSocketProtocol

from wsdaemon.connections.accel import MASKER, apply_mask
from wsdaemon.internals import Reach, check_fast_frames

__all__ = ["FastFrames", "describe", "enable", "frame_header", "unmask"]

_OPEN = WebSocketProtocol.STATE_OPEN
_utf8_decode = codecs.utf_8_decode

#: First byte of an unfragmented, uncompressed frame: FIN + opcode.
_TEXT = 0x81
_BINARY = 0x82

#: A frame up to this size that has not fully arrived is waited for
#: (buffered) for one more read rather than streamed through Autobahn. If
#: that read does not complete it, Autobahn streams it: waiting longer would
#: copy the buffer on every read, and a client trickling bytes could make
#: that quadratic. A text frame is waited for only if its bytes so far are
#: valid UTF-8 (invalid text still fails as soon as it arrives).
WAIT_FOR = 65536


def _valid_so_far(text: bytes | bytearray) -> bool:
    try:
        _utf8_decode(text, "strict", False)  # a sequence cut at the end is fine
    except UnicodeDecodeError:
        return False
    return True


_HEADERS = {
    opcode: [bytes((0x80 | opcode, n)) for n in range(126)] for opcode in (1, 2)
}
_pack16 = struct.Struct("!BBH").pack
_pack64 = struct.Struct("!BBQ").pack


def frame_header(opcode: int, length: int) -> bytes:
    """
    The header of a final, unmasked, uncompressed server frame.
    """
    if length < 126:
        return _HEADERS[opcode][length]
    if length < 65536:
        return _pack16(0x80 | opcode, 126, length)
    return _pack64(0x80 | opcode, 127, length)


def unmask(data: bytes, start: int, end: int, mask: bytes) -> bytes:
    """
    The payload C{data[start:end]} unmasked with C{mask} into new bytes (the
    received bytes stay as they are), by L{accel.apply_mask}.
    """
    if start == end:
        return b""
    return apply_mask(memoryview(data)[start:end], mask)


class FastFrames:
    """
    Mixed into an Autobahn server protocol before C{WebSocketServerProtocol}:
    whole, masked, uncompressed data frames within the limits are read here
    and given to C{_dispatch(message, length)}; anything else to
    Autobahn.

    The protocol calls L{_start_fast_frames} once open; C{_fast_out} then
    says whether its C{sendMessage} may frame a message itself with
    L{frame_header} (no compression, no automatic fragmentation, no
    masking or frame logging configured).
    """

    _fast_in = False
    _fast_out = False
    _fast_limit = 0

    # Provided by Autobahn's protocol.
    state: int
    data: bytes
    current_frame: Any
    inside_message: bool
    STATE_OPEN: int
    maxMessagePayloadSize: int

    def _start_fast_frames(self) -> None:
        if not _usable():
            return
        me: Any = self
        limits = [n for n in (me.maxFramePayloadSize, me.maxMessagePayloadSize) if n > 0]
        self._fast_limit = min(limits) if limits else (1 << 62)
        plain = me._perMessageCompress is None and not me.logFrames and not me.logOctets
        self._fast_in = plain and me.applyMask and me.websocket_version != 0
        self._fast_out = plain and not me.autoFragmentSize and not me.maskServerFrames

    def _dispatch(self, message: str | bytes, length: int) -> None:
        raise NotImplementedError

    def dataReceived(self, data: bytes) -> None:
        me: Any = self
        if not self._fast_in:
            super().dataReceived(data)  # type: ignore[misc]
            return
        if self.state != _OPEN or self.current_frame is not None or self.inside_message:
            me._dataReceived(data)
            return
        me.trafficStats.incomingOctetsWireLevel += len(data)
        buf = self.data
        resumed = bool(buf)
        if resumed:
            buf += data
        else:
            buf = data
        n = len(buf)
        pos = 0
        limit = self._fast_limit
        deliver = self._dispatch
        while n - pos >= 6:
            b0 = buf[pos]
            if b0 == _BINARY:
                binary = True
            elif b0 == _TEXT:
                binary = False
            else:
                break  # a control frame, a fragment, compression, a violation
            length = buf[pos + 1] ^ 0x80
            if length >= 0x80:
                break  # unmasked: Autobahn fails the connection
            if length < 126:
                head = pos + 6
            elif length == 126:
                head = pos + 8
                if head > n:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                if length < 126:
                    break  # not the minimal encoding
            else:
                head = pos + 14
                if head > n:
                    break
                length = int.from_bytes(buf[pos + 2:pos + 10], "big")
                if length < 65536 or length >> 63:
                    break
            if length > limit:
                break  # Autobahn closes with 1009
            end = head + length
            if end > n:
                if length <= WAIT_FOR and (pos or not resumed):
                    # Wait once (see WAIT_FOR); text only if what came is
                    # valid so far, else Autobahn fails it with 1007 now.
                    if binary or _valid_so_far(unmask(buf, head, n, buf[head - 4:head])):
                        self.data = buf[pos:] if pos else buf
                        return
                break
            payload = unmask(buf, head, end, buf[head - 4:head])
            pos = end
            if binary:
                message: str | bytes = payload if type(payload) is bytes else bytes(payload)
            else:
                try:
                    message = payload.decode("utf-8")
                except UnicodeDecodeError as e:
                    # As Autobahn: fail with 1007, leave the rest for later.
                    self.data = buf[pos:]
                    me._invalid_payload(f"invalid UTF-8 in a text message ({e.reason})")
                    return
            if me.autoPingTimeoutCall is not None and me.autoPingRestartOnAnyTraffic:
                me._cancelAutoPingTimeoutCall()
            deliver(message, length)
            if self.state != _OPEN:
                break
        self.data = buf[pos:] if pos else buf
        if self.data:
            me.consumeData()


_reach: list[Reach] = []


def enable(reach: Reach | None = None) -> Reach:
    """
    Check once (L{wsdaemon.internals.check_fast_frames}) whether this
    Autobahn has what the path uses; connections opened after an unusable
    check go through Autobahn's parser only.

    @return: the check's result.
    """
    if not _reach:
        _reach.append(reach if reach is not None else check_fast_frames())
    return _reach[0]


def _usable() -> bool:
    return enable().usable


def describe() -> str:
    """
    @return: what the startup log says of this path.
    """
    reach = enable()
    if not reach.usable:
        return f"every frame through Autobahn's parser ({reach.describe()})"
    return f"whole data frames read without Autobahn's parser ({MASKER})"
