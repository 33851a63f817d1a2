"""
Writing a frame straight to the socket when nothing is waiting before it.

Twisted's C{transport.write} only buffers: it registers the socket for
writability (an C{epoll_ctl} call), and one reactor iteration later sends
the buffer and unregisters (a second C{epoll_ctl}). For a request/response
load that is two extra system calls and a poll round per message; measured
with py-spy on 64 connections x 64 B echo, the registration alone was 28%
of the daemon's CPU, more than the C{send} itself.

When the transport's buffer is empty, the bytes would be the next on the
wire anyway: L{write_now} sends them at once and gives only what the kernel
did not take to C{transport.write}, which buffers it and registers for
writability as before. Byte order is unchanged (nothing is ever written
ahead of queued bytes), so the WebSocket stream is the same; this is how
libuv and asyncio's selector transports write too.

Only plain TCP connections take this path (C{twisted.internet.tcp.Server}
without TLS); anything else goes through C{transport.write} untouched. The
transport's attributes read here are named in L{wsdaemon.internals}
(C{DIRECT_WRITE}) and checked at start-up (L{enable}); if any is missing,
every write goes through C{transport.write}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp

from wsdaemon.internals import Reach, check_direct_write

__all__ = ["describe", "enable", "write_now"]

#: The transport type written to directly; None until L{enable} finds
#: what L{write_now} reads.
_Server: Any = None
_reach: list[Reach] = []


def enable(reach: Reach | None = None) -> Reach:
    """
    Check once (L{wsdaemon.internals.check_direct_write}) whether Twisted's
    TCP transport has what L{write_now} reads, and use the direct path if so.

    @return: the check's result.
    """
    global _Server
    if not _reach:
        _reach.append(reach if reach is not None else check_direct_write())
        _Server = tcp.Server if _reach[0].usable else None
    return _reach[0]


def describe() -> str | None:
    """
    @return: what the start-up log says of this path.
    """
    reach = enable()
    if reach.usable:
        return None
    return f"every write through transport.write ({reach.describe()})"


def write_now(transport: Any, data: bytes) -> None:
    """
    Write C{data} to C{transport}, sending it immediately when possible.
    """
    if not _reach:
        enable()
    if (type(transport) is _Server and not transport.TLS and transport.connected
            and not transport.disconnecting and not transport._writeDisconnected
            and not transport.dataBuffer and not transport._tempDataLen):
        try:
            sent = transport.getHandle().send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            # Let Twisted meet the error on its own write and close as usual.
            transport.write(data)
            return
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)
