"""
Every private part of Twisted and Autobahn that wsdaemon's speed paths use,
named in one place and checked at start-up.

Seven speed paths reach past the libraries' public APIs (see
C{bench/RESULTS.md} for what each is worth):

  - C{accel} (L{wsdaemon.connections.accel}): replaces module-level helpers
    in C{autobahn.websocket.protocol} (log highlighting, pretty-printing,
    the masker factory) and C{Timings.__str__};
  - C{frames} (L{wsdaemon.connections.frames}): reads whole data frames
    from the bytes an Autobahn server protocol has received, using the
    protocol's parser state and options;
  - C{directwrite} (L{wsdaemon.connections.directwrite}): writes to a TCP
    socket when Twisted's transport has nothing buffered;
  - C{poll} (L{wsdaemon.server.poll}): runs the epoll reactor's poll loop;
  - C{upgrade} (L{wsdaemon.connections.upgrade}): hands a plain WebSocket
    handshake from the HTTP channel straight to the route's protocol, as
    Autobahn's C{WebSocketResource} does once twisted.web has parsed it;
  - C{loglines} (L{wsdaemon.connections.loglines}): replaces the two
    functions Twisted's text log observer formats events and timestamps
    with, by ones giving the same text;
  - C{setup} (L{wsdaemon.connections.setup}): sets up a route's new
    connection as Autobahn's C{_connectionMade} does, from a snapshot of
    the factory's options, and arms the opening handshake's timer only for
    a handshake that waits.

L{check} looks for every name below on the installed libraries: on a
throwaway Autobahn server connection opened in memory (its attributes are
set per connection, not on the class), on C{twisted.internet.tcp.Server}
and on the running reactor. A path whose names are not all there stays off,
the libraries' own code does its work, and the start-up log says which
path is off and what was missing. C{setup} is checked (L{check_setup})
when the first route is built, with the lean setup it compares to
Autobahn's own. Nothing here changes a byte on the wire.
"""

from __future__ import annotations

import base64
import os
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ACCEL_MODULE",
    "ACCEL_TIMINGS",
    "DIRECT_WRITE",
    "FAST_FRAMES",
    "LOGLEVEL",
    "LOGLINES",
    "POLL",
    "SETUP",
    "UPGRADE",
    "Reach",
    "check",
    "check_accel",
    "check_direct_write",
    "check_fast_frames",
    "check_loglevel",
    "check_loglines",
    "check_poll",
    "check_setup",
    "check_upgrade",
]

#: C{autobahn.websocket.protocol}'s module-level names that C{accel}
#: replaces (C{hltype}, C{hlval} in C{autobahn.twisted.websocket} too).
ACCEL_MODULE = ("hltype", "hlval", "pformat", "create_xor_masker")

#: What C{accel} replaces on C{autobahn.websocket.protocol.Timings}, whose
#: C{__str__} uses the module's C{pformat}.
ACCEL_TIMINGS = ("__str__", "_timings")

#: Attributes of an open Autobahn server protocol that the fast frame path
#: reads or writes, and methods of it that the path calls.
FAST_FRAMES = (
    "state", "STATE_OPEN", "data", "current_frame", "inside_message",
    "maxFramePayloadSize", "maxMessagePayloadSize", "_perMessageCompress",
    "logFrames", "logOctets", "applyMask", "websocket_version",
    "autoFragmentSize", "maskServerFrames", "send_queue", "trafficStats",
    "autoPingTimeoutCall", "autoPingRestartOnAnyTraffic",
    "_dataReceived", "_invalid_payload", "_cancelAutoPingTimeoutCall", "consumeData",
)

#: Attributes of C{twisted.internet.tcp.Server} that C{write_now} reads to
#: know that nothing is buffered before its bytes.
DIRECT_WRITE = ("TLS", "connected", "disconnecting", "_writeDisconnected",
                "dataBuffer", "_tempDataLen", "getHandle")

#: What the straight upgrade reads: the factory inside Autobahn's
#: C{WebSocketResource}, and the protocol of C{twisted.internet.tcp.Server},
#: which it swaps for the route's (as C{WebSocketResource.render} does).
UPGRADE = (("autobahn.twisted.resource.WebSocketResource", "_factory"),
           ("twisted.internet.tcp.Server", "protocol"))

#: The module-level names of C{twisted.logger._file} that its
#: C{textFileLogObserver} looks up for every event, and C{loglines} replaces.
LOGLINES = ("formatEventAsClassicLogText", "formatTime")

#: What C{[wsdaemon] log_level} (L{wsdaemon.server.loglevel}) reads of
#: C{twisted.logger.LogPublisher} to wrap the observers logging began with:
#: the publisher has no public list of them.
LOGLEVEL = ("_observers",)

#: What C{setup} uses of Autobahn (owner, name): the classes of per-connection
#: state it makes, the options list it copies, the factory's timer and
#: counter, the protocol's constants and timeout handler, and Autobahn's own
#: setup (which it stands in for, and which runs instead without them).
SETUP = (("autobahn.websocket.protocol", "TrafficStats"),
         ("autobahn.websocket.protocol", "Utf8Validator"),
         ("WebSocketServerProtocol", "CONFIG_ATTRS"),
         ("WebSocketServerProtocol", "_connectionMade"),
         ("WebSocketServerProtocol", "setTrackTimings"),
         ("WebSocketServerProtocol", "onOpenHandshakeTimeout"),
         ("WebSocketServerProtocol", "STATE_CONNECTING"),
         ("WebSocketServerProtocol", "SEND_STATE_GROUND"),
         ("WebSocketServerFactory", "_batched_timer"),
         ("WebSocketServerFactory", "countConnections"))

#: Attributes of the running C{EPollReactor} that the poll loop uses.
POLL = ("_poller", "_selectables", "_doReadOrWrite", "doPoll", "doIteration")


@dataclass(frozen=True)
class Reach:
    """
    What one speed path needs and whether the installed libraries have it.

    @ivar path: the path's name (C{accel}, C{frames}, C{directwrite}, C{poll}).
    @ivar missing: the names it needs that were not found, as C{owner.name}.
    @ivar why: a reason the path is off other than missing names
        (C{"not the epoll reactor"}), or C{""}.
    """

    path: str
    missing: tuple[str, ...] = ()
    why: str = ""

    @property
    def usable(self) -> bool:
        return not self.missing and not self.why

    def describe(self) -> str:
        """
        @return: for the start-up log, why the path is off (C{""} if on).
        """
        if self.why:
            return self.why
        if self.missing:
            return "missing " + ", ".join(self.missing)
        return ""


def _missing(owner: str, obj: Any, names: Iterable[str]) -> list[str]:
    return [f"{owner}.{name}" for name in names if not hasattr(obj, name)]


def check_accel() -> Reach:
    """
    @return: whether C{accel}'s replacements have their targets.
    """
    from autobahn.twisted import websocket as twisted_websocket
    from autobahn.websocket import protocol

    missing = _missing("autobahn.websocket.protocol", protocol, ACCEL_MODULE)
    missing += _missing("autobahn.twisted.websocket", twisted_websocket, ("hltype", "hlval"))
    timings = getattr(protocol, "Timings", None)
    if timings is None:
        missing.append("autobahn.websocket.protocol.Timings")
    else:
        try:
            missing += _missing("Timings()", timings(), ACCEL_TIMINGS)
        except Exception:  # noqa: BLE001 - a Timings we cannot build: leave it alone
            missing.append("autobahn.websocket.protocol.Timings()")
    return Reach("accel", tuple(missing))


def _open_probe() -> Any:
    """
    A plain Autobahn server protocol, opened in memory over a
    C{StringTransport} with every timer off.
    """
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
    from twisted.internet.testing import StringTransport

    factory = WebSocketServerFactory("ws://127.0.0.1:1")
    factory.protocol = WebSocketServerProtocol
    factory.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=0,
                               autoPingInterval=0, requireMaskedClientFrames=True)
    protocol: Any = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    protocol.dataReceived(
        ("GET / HTTP/1.1\r\nHost: 127.0.0.1:1\r\nUpgrade: websocket\r\n"
         "Connection: Upgrade\r\nSec-WebSocket-Key: " + key + "\r\n"
         "Sec-WebSocket-Version: 13\r\n\r\n").encode("ascii"))
    return protocol


def check_fast_frames() -> Reach:
    """
    @return: whether an open Autobahn server protocol has what the fast
        frame path uses.
    """
    try:
        probe = _open_probe()
    except Exception as e:  # noqa: BLE001 - any failure means: stay off
        return Reach("frames", why=f"an Autobahn connection in memory failed: {type(e).__name__}")
    try:
        missing = _missing("WebSocketServerProtocol", probe, FAST_FRAMES)
        if not missing and probe.state != probe.STATE_OPEN:
            return Reach("frames", why="an Autobahn connection in memory did not open")
        return Reach("frames", tuple(missing))
    finally:
        try:
            probe.dropConnection(abort=True)
        except Exception:  # noqa: BLE001 - a probe; nothing to clean beyond this
            pass


def check_direct_write() -> Reach:
    """
    @return: whether a C{twisted.internet.tcp.Server} (one made over a
        socket pair, on a memory reactor) has what C{write_now} reads.
    """
    import socket

    from twisted.internet import tcp
    from twisted.internet.protocol import Protocol
    from twisted.internet.testing import MemoryReactor

    ours, theirs = socket.socketpair()
    try:
        probe = tcp.Server(ours, Protocol(), ("127.0.0.1", 1), None,  # type: ignore[arg-type]
                           0, MemoryReactor())
        return Reach("directwrite", tuple(_missing("twisted.internet.tcp.Server", probe,
                                                   DIRECT_WRITE)))
    except Exception as e:  # noqa: BLE001 - any failure means: stay off
        return Reach("directwrite", why=f"a TCP transport in memory failed: {type(e).__name__}")
    finally:
        ours.close()
        theirs.close()


def check_upgrade() -> Reach:
    """
    @return: whether a C{WebSocketResource} holds its factory where the
        straight upgrade reads it, and a C{twisted.internet.tcp.Server} (over
        a socket pair, on a memory reactor) has the protocol it swaps.
    """
    import socket

    from autobahn.twisted.resource import WebSocketResource
    from autobahn.twisted.websocket import WebSocketServerFactory
    from twisted.internet import tcp
    from twisted.internet.protocol import Protocol
    from twisted.internet.testing import MemoryReactor

    ours, theirs = socket.socketpair()
    try:
        factory = WebSocketServerFactory("ws://127.0.0.1:1")
        owners = {"autobahn.twisted.resource.WebSocketResource": WebSocketResource(factory),
                  "twisted.internet.tcp.Server": tcp.Server(
                      ours, Protocol(), ("127.0.0.1", 1), None,  # type: ignore[arg-type]
                      0, MemoryReactor())}
        missing = [f"{owner}.{name}" for owner, name in UPGRADE
                   if not hasattr(owners[owner], name)]
        if not missing and getattr(owners["autobahn.twisted.resource.WebSocketResource"],
                                   "_factory", None) is not factory:
            return Reach("upgrade", why="WebSocketResource._factory is not its factory")
        return Reach("upgrade", tuple(missing))
    except Exception as e:  # noqa: BLE001 - any failure means: stay off
        return Reach("upgrade", why=f"a probe failed: {type(e).__name__}")
    finally:
        ours.close()
        theirs.close()


def check_loglines() -> Reach:
    """
    @return: whether C{twisted.logger._file} has the names C{loglines}
        replaces, and its C{textFileLogObserver} still looks them up there
        for each event (else replacing them would change nothing).
    """
    from types import CodeType

    from twisted.logger import _file

    missing = _missing("twisted.logger._file", _file, LOGLINES)
    if missing:
        return Reach("loglines", tuple(missing))
    looked_up: set[str] = set()
    codes = [_file.textFileLogObserver.__code__]
    while codes:
        code = codes.pop()
        looked_up.update(code.co_names)
        codes.extend(c for c in code.co_consts if isinstance(c, CodeType))
    unused = [name for name in LOGLINES if name not in looked_up]
    if unused:
        return Reach("loglines", why="textFileLogObserver no longer calls "
                     + ", ".join(f"twisted.logger._file.{name}" for name in unused))
    return Reach("loglines")


def check_loglevel(publisher: Any) -> Reach:
    """
    @return: whether C{publisher} (a C{twisted.logger.LogPublisher}) keeps
        its observers in a list where C{log_level} can find them.
    """
    missing = _missing("twisted.logger.LogPublisher", publisher, LOGLEVEL)
    if missing:
        return Reach("loglevel", tuple(missing))
    if not isinstance(publisher._observers, list):
        return Reach("loglevel", why="twisted.logger.LogPublisher._observers is not a list")
    return Reach("loglevel")


def _same(theirs: Any, ours: Any) -> bool:
    plain = (type(None), bool, int, float, str, bytes, list, tuple, dict, deque)
    if isinstance(theirs, plain) or isinstance(ours, plain):
        return type(theirs) is type(ours) and bool(theirs == ours)
    return type(theirs) is type(ours)


def check_setup(lean: Callable[[Any], None]) -> Reach:
    """
    @param lean: sets up a new server connection in Autobahn's stead.
    @return: whether Autobahn has what C{setup} uses, and a probe connection
        set up by C{lean} ends with the same attributes as one set up by
        Autobahn's C{_connectionMade}: equal values (plain ones), the same
        types (state objects); the factory counts both.
    """
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
    from autobahn.websocket import protocol as ab

    try:
        factory = WebSocketServerFactory("ws://127.0.0.1:1")
        factory.protocol = WebSocketServerProtocol
        # No timer in a probe (its names are checked, not called).
        factory.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=0,
                                   autoPingInterval=0, maxFramePayloadSize=1234)
        owners = {"autobahn.websocket.protocol": ab,
                  "WebSocketServerProtocol": WebSocketServerProtocol,
                  "WebSocketServerFactory": factory}
        missing = [f"{owner}.{name}" for owner, name in SETUP
                   if not hasattr(owners[owner], name)]
        if missing:
            return Reach("setup", tuple(missing))
        theirs: Any = factory.buildProtocol(None)
        theirs._connectionMade()
        ours: Any = factory.buildProtocol(None)
        lean(ours)
        differ = sorted(set(vars(theirs)) ^ set(vars(ours)))
        differ += [name for name in sorted(set(vars(theirs)) & set(vars(ours)))
                   if not _same(vars(theirs)[name], vars(ours)[name])]
        if factory.countConnections != 2:
            differ.append("countConnections")
        if differ:
            return Reach("setup", why="a probe set up differently from Autobahn's: "
                         + ", ".join(differ[:6]))
        return Reach("setup")
    except Exception as e:  # noqa: BLE001 - any failure means: stay off
        return Reach("setup", why=f"a probe failed: {type(e).__name__}")


def check_poll(reactor: Any) -> Reach:
    """
    @return: whether C{reactor} is an epoll reactor with what the poll loop uses.
    """
    try:
        from twisted.internet.epollreactor import EPollReactor
    except ImportError:  # pragma: no cover - not Linux
        return Reach("poll", why="no epoll reactor on this system")
    if type(reactor) is not EPollReactor:
        return Reach("poll", why=f"the reactor is {type(reactor).__name__}, not EPollReactor")
    return Reach("poll", tuple(_missing("EPollReactor", reactor, POLL)))


def check(reactor: Any) -> dict[str, Reach]:
    """
    Check every speed path against the installed libraries.

    @return: each path's L{Reach}, by path name.
    """
    reaches = (check_accel(), check_fast_frames(), check_direct_write(), check_poll(reactor),
               check_upgrade(), check_loglines())
    return {reach.path: reach for reach in reaches}
