"""
A route connection's client address behind a trusted reverse proxy (see
L{wsdaemon.forwarded}): taken at the start of C{onConnect}, so that every
later use of the peer (log lines, C{max_connections_per_ip}, the session's
peer in C{/clients} and the journal, a command's C{REMOTE_ADDR}) sees the
client, not the proxy.
"""

from __future__ import annotations

from typing import Any

from autobahn.websocket.types import ConnectionRequest
from twisted.logger import Logger

from wsdaemon.escaping import visible
from wsdaemon.forwarded import Forwarded, TrustedProxies, peer_string

__all__ = ["believe"]

_log = Logger(namespace="wsdaemon.forwarded")


def believe(protocol: Any, request: ConnectionRequest, proxies: TrustedProxies) -> Forwarded:
    """
    Take the client's address from a trusted proxy's headers, if the
    connection is from one: C{protocol.peer} and C{request.peer} become the
    client's (C{tcp4:203.0.113.5:0}).

    @return: who the connection is from.
    """
    peer_host = proxies.host_of(protocol.transport.getPeer())
    headers = request.headers or {}
    forwarded = proxies.client(peer_host, headers.get("x-forwarded-for"),
                               headers.get("x-forwarded-proto"))
    if forwarded.forwarded:
        protocol.peer = request.peer = peer_string(forwarded)
    elif forwarded.malformed and proxies.first_malformed():
        _log.warn("trusted proxy {proxy} sent an X-Forwarded-For that is not a list of IP "
                  "addresses ({value}); its connections count as the proxy's own "
                  "(logged once)", proxy=peer_host,
                  value=visible(str(headers.get("x-forwarded-for", ""))[:200]))
    return forwarded
