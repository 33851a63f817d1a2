"""
The client's address behind a reverse proxy (nginx, Caddy, a load
balancer): C{[wsdaemon] trusted_proxies}.

A connection from a trusted proxy is taken to be from the address its
C{X-Forwarded-For} names: the rightmost entry that is not itself a trusted
proxy (each proxy appends the address it saw; only the part the trusted
proxies wrote can be believed, the left part is the client's to forge). A
connection from any other peer is taken to be from that peer, whatever it
sends. Nothing here runs for a daemon without trusted proxies, or for a
connection from a peer that is not one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from twisted.internet.address import UNIXAddress

__all__ = ["MAX_HOPS", "UNIX", "Forwarded", "TrustedProxies", "parse_trusted_proxies",
           "peer_string"]

#: Entries of C{X-Forwarded-For} read at most; a longer chain is malformed.
MAX_HOPS = 32

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address
#: The entry trusting every connection on a Unix socket (a proxy on this
#: machine, e.g. nginx's C{proxy_pass http://unix:/run/wsdaemon.sock}).
UNIX = "unix"
#: The host a Unix socket's peer is given here.
_UNIX_HOST = "unix"


def parse_trusted_proxies(raw: str) -> tuple[Network | str, ...]:
    """
    @param raw: addresses or CIDR networks, separated by commas, spaces or
        lines (C{127.0.0.1, 10.0.0.0/8, ::1}), and C{unix} for connections
        on a Unix socket.

    @return: the networks (a single address is a network of one), and
        L{UNIX} if given.

    @raise ValueError: saying which entry is not an address or network.
    """
    networks: list[Network | str] = []
    for entry in raw.replace(",", " ").split():
        if entry.lower() == UNIX:
            networks.append(UNIX)
            continue
        try:
            networks.append(ip_network(entry.strip("[]"), strict=True))
        except ValueError:
            bits = (" (a network's host bits must be zero: 10.0.0.0/8, not 10.0.0.1/8)"
                    if "/" in entry else "")
            raise ValueError(
                f"expected IP addresses or CIDR networks (e.g. 127.0.0.1, 10.0.0.0/8, ::1) "
                f"or unix, separated by commas; {entry!r} is not one{bits}") from None
    return tuple(networks)


@dataclass(frozen=True)
class Forwarded:
    """
    Who a connection is from, as far as can be believed.

    @ivar host: the client's address (the peer's own, unless a trusted
        proxy forwarded it).
    @ivar forwarded: whether C{host} came from C{X-Forwarded-For}.
    @ivar secure: whether the trusted proxy says the client spoke HTTPS
        (C{X-Forwarded-Proto: https}).
    @ivar malformed: whether a trusted proxy sent an C{X-Forwarded-For}
        that could not be read (C{host} is then the peer's).
    """

    host: str
    forwarded: bool = False
    secure: bool = False
    malformed: bool = False


def _address(entry: str) -> Address | None:
    text = entry.strip()
    if text.startswith("["):  # [2001:db8::1] or [2001:db8::1]:443
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # 203.0.113.5:443
        text = text.partition(":")[0]
    try:
        return ip_address(text)
    except ValueError:
        return None


class TrustedProxies:
    """
    The proxies whose C{X-Forwarded-For} and C{X-Forwarded-Proto} are
    believed. Empty (the default): nobody's.
    """

    def __init__(self, networks: Iterable[Network | str] = ()) -> None:
        self.networks = tuple(networks)
        #: Whether a malformed header was logged (it is, once per daemon).
        self.warned = False

    def first_malformed(self) -> bool:
        """
        @return: True the first time only: log a malformed header once.
        """
        first, self.warned = not self.warned, True
        return first

    @property
    def networks(self) -> tuple[Network | str, ...]:
        """
        The trusted networks, and L{UNIX} if Unix socket peers are trusted
        (set by a reload).
        """
        return self._entries

    @networks.setter
    def networks(self, entries: Iterable[Network | str]) -> None:
        self._entries = tuple(entries)
        self._ip = tuple(e for e in self._entries if not isinstance(e, str))
        self.unix = UNIX in self._entries

    def __bool__(self) -> bool:
        return bool(self._entries)

    @staticmethod
    def host_of(address: object) -> str:
        """
        @return: the host of a peer's address (C{unix} for a Unix socket's).
        """
        return _UNIX_HOST if isinstance(address, UNIXAddress) else str(
            getattr(address, "host", ""))

    def trusts(self, host: str) -> bool:
        """
        @return: whether C{host} (a peer's address) is a trusted proxy.
        """
        if host == _UNIX_HOST:
            return self.unix
        if not self._ip:
            return False
        address = _address(host)
        return address is not None and self._trusted(address)

    def _trusted(self, address: Address) -> bool:
        if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._ip)

    def client(self, peer_host: str, forwarded_for: str | None,
               forwarded_proto: str | None = None) -> Forwarded:
        """
        @param peer_host: the connection's peer address.
        @param forwarded_for: its C{X-Forwarded-For} (repeated headers
            joined with commas), or None.
        @param forwarded_proto: its C{X-Forwarded-Proto}, or None.

        @return: who the connection is from: the peer itself unless the
            peer is a trusted proxy that forwarded a readable address.
        """
        if not self.trusts(peer_host):
            return Forwarded(peer_host)
        proto = (forwarded_proto or "").split(",")[-1].strip().lower()
        secure = proto in ("https", "wss")
        if not forwarded_for or not forwarded_for.strip():
            return Forwarded(peer_host, secure=secure)
        entries = forwarded_for.split(",")
        if len(entries) > MAX_HOPS:
            return Forwarded(peer_host, secure=secure, malformed=True)
        chosen: Address | None = None
        for entry in reversed(entries):
            address = _address(entry)
            if address is None:
                return Forwarded(peer_host, secure=secure, malformed=True)
            chosen = address
            if not self._trusted(address):
                break
        # All trusted: the leftmost, the furthest from us.
        assert chosen is not None
        if isinstance(chosen, IPv6Address) and chosen.ipv4_mapped is not None:
            chosen = chosen.ipv4_mapped
        return Forwarded(str(chosen), forwarded=True, secure=secure)


def peer_string(forwarded: Forwarded) -> str:
    """
    @return: an Autobahn-style peer (C{tcp4:203.0.113.5:0}) for a forwarded
        client; its port is not known behind a proxy, hence 0.
    """
    kind = "tcp6" if ":" in forwarded.host else "tcp4"
    return f"{kind}:{forwarded.host}:0"
