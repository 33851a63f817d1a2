"""
Telling systemd how the service is doing (sd_notify), with the standard
library only: one datagram to the socket named by C{$NOTIFY_SOCKET}.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

from twisted.logger import Logger

__all__ = ["notify", "reloading_message"]

_log = Logger(namespace="wsdaemon.systemd")


def notify(message: str, environ: Mapping[str, str] | None = None) -> bool:
    """
    Send C{message} (e.g. C{READY=1}) to systemd.

    @return: False when not run by systemd (no C{$NOTIFY_SOCKET}) or the
        message could not be sent (logged); True when sent.
    """
    address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
    except OSError as e:
        _log.warn("cannot notify systemd ({message}): {error}", message=message, error=str(e))
        return False
    return True


def reloading_message() -> str:
    """
    RELOADING=1 with the monotonic timestamp systemd asks to go with it.
    """
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return f"RELOADING=1\nMONOTONIC_USEC={usec}"
