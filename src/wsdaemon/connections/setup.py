"""
A route connection's setup without Autobahn's per-connection copy loop, and
its opening-handshake timer armed only for a handshake that waits (issue
#26, reconnect storms).

Autobahn's C{WebSocketProtocol._connectionMade} copies every protocol
option (29 for a server) from the factory onto each new connection, one by
one: a C{hasattr}, a C{getattr} and a C{setattr} each, plus a list of
C{(name, value, source)} kept for a debug line; then it sets some forty
attributes of per-connection state. L{connection_made} does the same with
one dict update from the factory's options as a snapshot (taken once after
each C{setProtocolOptions}: L{options_snapshot}) and the same state, in the
same values.

Autobahn arms the opening handshake's timer (C{openHandshakeTimeout}) as
the connection is made, and cancels it once the handshake is answered. The
straight upgrade (L{wsdaemon.connections.upgrade}) hands the connection its
whole request at once, and most handshakes are answered in that same call:
it asks L{connection_made} not to arm the timer (L{ARM_LATER}) and arms it
(L{arm_if_waiting}) only if the handshake is still waiting afterwards (a
strategy taking part in it, a delay on purpose). A handshake held on purpose
gets none, as before.

Both reach into Autobahn (L{wsdaemon.internals}, C{SETUP}): at start-up
L{enable} sets up a probe connection Autobahn's way and this way and
compares every attribute (values, or types for state objects); if anything
differs, or a name is missing, Autobahn's own setup runs and the start-up
log says why. With Autobahn's debug logging on, Autobahn's own setup runs
too (its debug lines are written there).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import txaio
from autobahn.websocket import protocol as _autobahn
from twisted.logger import Logger

from wsdaemon.internals import Reach, check_setup

__all__ = ["ARM_LATER", "LazyUtf8Validator", "arm_if_waiting", "connection_made", "describe",
           "enable", "options_snapshot"]

_log = Logger(namespace="wsdaemon.setup")

#: The protocol attribute that asks L{connection_made} to leave the opening
#: handshake's timer to L{arm_if_waiting}.
ARM_LATER = "_wsdaemon_arm_later"

#: Per-connection state with plain values, as Autobahn's
#: C{WebSocketProtocol._connectionMade} sets it (the state itself is set
#: from the protocol's constants, the objects are made per connection).
_PLAIN_STATE: dict[str, Any] = {
    "_perMessageCompress": None,
    "trackedTimings": None,
    "data": b"",
    "triggered": False,
    "wasMaxFramePayloadSizeExceeded": False,
    "wasMaxMessagePayloadSizeExceeded": False,
    "closedByMe": False,
    "failedByMe": False,
    "droppedByMe": False,
    "wasClean": False,
    "wasNotCleanReason": None,
    "wasServerConnectionDropTimeout": False,
    "wasOpenHandshakeTimeout": False,
    "wasCloseHandshakeTimeout": False,
    "wasServingFlashSocketPolicyFile": False,
    "localCloseCode": None,
    "localCloseReason": None,
    "remoteCloseCode": None,
    "remoteCloseReason": None,
    "openHandshakeTimeoutCall": None,
    "closeHandshakeTimeoutCall": None,
    "autoPingTimeoutCall": None,
    "autoPingPending": None,
    "autoPingPendingCall": None,
    "autoPingPendingSeq": 0,
    "autoPingPendingSent": None,
}

_reach: list[Reach] = []
#: txaio's global log level (Autobahn's loggers), a public function it does
#: not declare in its stubs.
_log_level: Any = txaio.get_global_log_level  # type: ignore[attr-defined]


def enable(reach: Reach | None = None) -> Reach:
    """
    Check once (L{wsdaemon.internals.check_setup}, which compares a probe
    set up both ways) whether the lean setup may run; if not, Autobahn's
    own does, with a warning.

    @return: the check's result.
    """
    if not _reach:
        _reach.append(reach if reach is not None else check_setup(_lean_probe))
        if not _reach[0].usable:
            _log.warn("speed path setup off, Autobahn sets up every connection itself: {why}",
                      why=_reach[0].describe())
    return _reach[0]


def describe() -> str:
    """
    @return: what the start-up log says of this path.
    """
    reach = enable()
    if reach.usable:
        return "connections set up from a snapshot of their options"
    return f"Autobahn's own connection setup ({reach.describe()})"


def options_snapshot(factory: Any, protocol_class: type) -> dict[str, Any]:
    """
    @return: the factory's value of each of C{protocol_class}'s options
        (C{CONFIG_ATTRS}) that the class does not set itself: what
        Autobahn's loop copies onto each new connection.
    """
    names: Any = getattr(protocol_class, "CONFIG_ATTRS", ())
    return {name: getattr(factory, name) for name in names if not hasattr(protocol_class, name)}


class LazyUtf8Validator:
    """
    A protocol class's C{utf8validator}: Autobahn's UTF-8 validator (an NVX
    C struct, ~1.5% of a handshake's CPU in a storm), made on first use.
    Autobahn uses it only for connections with C{utf8validateIncoming} on;
    a route's text is validated by its own decoder instead, so a route's
    connection never makes one. Set up with the option on, a connection
    gets its validator at once, as from Autobahn.
    """

    def __get__(self, protocol: Any, owner: type | None = None) -> Any:
        if protocol is None:
            return self
        validator = protocol.__dict__["utf8validator"] = _autobahn.Utf8Validator()
        return validator


def _set_up(protocol: Any, options: dict[str, Any], arm: bool) -> None:
    """
    What C{WebSocketServerProtocol._connectionMade} does, for a new
    connection whose instance sets none of the options itself.
    """
    state = protocol.__dict__
    state.update(options)
    state.update(_PLAIN_STATE)
    protocol.setTrackTimings(protocol.trackTimings)
    state["trafficStats"] = _autobahn.TrafficStats()
    state["state"] = protocol.STATE_CONNECTING
    state["send_state"] = protocol.SEND_STATE_GROUND
    state["send_queue"] = deque()
    if protocol.utf8validateIncoming or not isinstance(
            getattr(type(protocol), "utf8validator", None), LazyUtf8Validator):
        state["utf8validator"] = _autobahn.Utf8Validator()
    factory = protocol.factory
    if arm and protocol.openHandshakeTimeout > 0:
        state["openHandshakeTimeoutCall"] = factory._batched_timer.call_later(
            protocol.openHandshakeTimeout, protocol.onOpenHandshakeTimeout)
    factory.countConnections += 1


def _lean_probe(protocol: Any) -> None:
    """The lean setup of a probe connection (for L{check_setup})."""
    _set_up(protocol, options_snapshot(protocol.factory, type(protocol)), True)


def connection_made(protocol: Any, options: dict[str, Any] | None) -> bool:
    """
    Set up a new server connection as Autobahn's C{_connectionMade} would.

    @param options: the factory's L{options_snapshot} for the protocol's
        class (None: Autobahn's own setup is to run).
    @return: whether it was done here (if not, call Autobahn's).
    """
    if options is None or not (_reach[0].usable if _reach else enable().usable):
        return False
    if _log_level() in ("debug", "trace"):
        return False
    if not options.keys().isdisjoint(protocol.__dict__):  # an option set on this connection
        return False
    _set_up(protocol, options, not protocol.__dict__.get(ARM_LATER, False))
    return True


def arm_if_waiting(protocol: Any) -> None:
    """
    Arm the opening handshake's timer of a connection set up with
    L{ARM_LATER}, if its handshake is still waiting for its answer (and was
    not held on purpose, which clears L{ARM_LATER}).
    """
    if not protocol.__dict__.pop(ARM_LATER, False):
        return
    if (protocol.state == protocol.STATE_CONNECTING and protocol.openHandshakeTimeout > 0
            and protocol.openHandshakeTimeoutCall is None):
        protocol.openHandshakeTimeoutCall = protocol.factory._batched_timer.call_later(
            protocol.openHandshakeTimeout, protocol.onOpenHandshakeTimeout)
