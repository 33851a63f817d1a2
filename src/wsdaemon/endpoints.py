"""
Checking and building listening endpoints from Twisted endpoint strings.
"""

from __future__ import annotations

import os
import re
from typing import Any

from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IStreamServerEndpoint

__all__ = ["build_endpoint", "check_endpoint", "listen_interface"]

#: Matched whole (fullmatch): `$` would accept a final newline.
_SYSTEMD = re.compile(r"systemd:(?=.*\bdomain=(INET6?|UNIX)\b)(?=.*\bindex=([0-9]+)\b).*")


def check_endpoint(description: str, reactor: Any) -> None:
    """
    Validate an endpoint string without listening.

    A C{systemd:} endpoint is checked for its syntax only, so that a config
    meant for socket activation can be checked outside systemd.

    @raise ValueError: saying what was expected.
    """
    if description.startswith("systemd:"):
        if not _SYSTEMD.fullmatch(description):
            raise ValueError(
                "expected systemd:domain=INET|INET6|UNIX:index=N (N counts from 0)"
            )
        return
    build_endpoint(description, reactor)


def build_endpoint(description: str, reactor: Any) -> IStreamServerEndpoint:
    """
    @raise ValueError: with the reason, for any malformed description.
    """
    try:
        endpoint: IStreamServerEndpoint = serverFromString(reactor, description)
        return endpoint
    except IndexError:
        if description.startswith("systemd:"):
            count = os.environ.get("LISTEN_FDS", "0")
            raise ValueError(
                f"systemd passed {count} socket(s) (LISTEN_FDS); is the .socket unit active "
                "and the index right?"
            ) from None
        raise ValueError("expected a Twisted endpoint string, e.g. tcp:8080") from None
    except (ValueError, TypeError, KeyError, OSError, ImportError) as e:
        raise ValueError(
            f"expected a Twisted endpoint string such as tcp:8080:interface=127.0.0.1, "
            f"unix:/run/wsdaemon.sock or ssl:8443:privateKey=KEY:certKey=CERT ({e})"
        ) from None


def listen_interface(description: str) -> str | None:
    """
    @return: the address a TCP/SSL endpoint string listens on (lower case,
        escapes removed), if it names one; None otherwise.
    """
    for part in re.split(r"(?<!\\):", description):  # "\:" escapes a colon (IPv6)
        if part.startswith("interface="):
            return part[len("interface="):].replace("\\", "").lower()
    return None
