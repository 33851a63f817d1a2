"""
The client's address behind a trusted reverse proxy ([wsdaemon]
trusted_proxies): which X-Forwarded-For entry is believed, and when none is.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import ip_network
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from wsdaemon.config import ConfigError, DaemonConfig, load_config
from wsdaemon.endpoints import check_endpoint
from wsdaemon.forwarded import (
    MAX_HOPS,
    Forwarded,
    TrustedProxies,
    parse_trusted_proxies,
    peer_string,
)

PROXIES = TrustedProxies(parse_trusted_proxies("127.0.0.1, 10.0.0.0/8, ::1, fd00::/8"))


def test_nobody_trusted_by_default() -> None:
    """Without trusted proxies the peer is the client, whatever it sends."""
    nobody = TrustedProxies()
    assert not nobody
    assert nobody.client("127.0.0.1", "203.0.113.5", "https") == Forwarded("127.0.0.1")


def test_spoofed_header_from_untrusted_peer_ignored() -> None:
    """A peer that is no trusted proxy cannot name another address, nor claim HTTPS."""
    assert PROXIES.client("198.51.100.7", "203.0.113.5", "https") == Forwarded("198.51.100.7")


def test_trusted_proxy_names_the_client() -> None:
    """From a trusted proxy, the address it appended is the client's; its https is believed."""
    assert PROXIES.client("127.0.0.1", "203.0.113.5", "https") == Forwarded(
        "203.0.113.5", forwarded=True, secure=True)
    assert not PROXIES.client("127.0.0.1", "203.0.113.5", "http").secure


def test_rightmost_untrusted_entry_of_a_chain() -> None:
    """
    The client may prepend anything; the rightmost entry that is not a
    trusted proxy (the address our outermost proxy saw) is the client.
    """
    header = "1.1.1.1, 198.51.100.9, 10.1.2.3"  # forged, client, inner proxy
    assert PROXIES.client("127.0.0.1", header).host == "198.51.100.9"
    # Garbage the client put on the left is never read.
    assert PROXIES.client("127.0.0.1", "not-an-ip, 198.51.100.9").host == "198.51.100.9"


def test_all_trusted_chain_takes_the_leftmost() -> None:
    """A chain of trusted proxies only: the furthest one is the client."""
    assert PROXIES.client("127.0.0.1", "10.0.0.5, 10.0.0.6").host == "10.0.0.5"


def test_ipv6_and_ports() -> None:
    """IPv6 peers and entries (bare, bracketed, with a port), and v4 with a port."""
    assert PROXIES.client("::1", "2001:db8::7").host == "2001:db8::7"
    assert PROXIES.client("::1", "[2001:db8::7]:4711").host == "2001:db8::7"
    assert PROXIES.client("fd00::3", "203.0.113.5:1234").host == "203.0.113.5"
    # An IPv4 proxy seen on a dual-stack socket.
    assert PROXIES.client("::ffff:127.0.0.1", "203.0.113.5").host == "203.0.113.5"
    assert peer_string(Forwarded("2001:db8::7", True)) == "tcp6:2001:db8::7:0"
    assert peer_string(Forwarded("203.0.113.5", True)) == "tcp4:203.0.113.5:0"


@pytest.mark.parametrize("header", ["203.0.113.5, ", "unknown", "203.0.113.5;rm -rf",
                                    "203.0.113.300", ",".join(["10.0.0.1"] * (MAX_HOPS + 1))])
def test_malformed_header_means_the_peer(header: str) -> None:
    """A trusted proxy's unreadable (or overlong) header: the peer is the client."""
    answer = PROXIES.client("127.0.0.1", header)
    assert answer.host == "127.0.0.1" and answer.malformed and not answer.forwarded


def test_missing_header_means_the_peer() -> None:
    """A trusted proxy that forwards no address: the peer, not malformed."""
    assert PROXIES.client("127.0.0.1", None) == Forwarded("127.0.0.1")
    assert PROXIES.client("127.0.0.1", "  ") == Forwarded("127.0.0.1")


def test_malformed_logged_once() -> None:
    """Only the first malformed header is worth a log line."""
    proxies = TrustedProxies(PROXIES.networks)
    assert [proxies.first_malformed() for _ in range(3)] == [True, False, False]


def test_parse() -> None:
    """Addresses and networks, by commas, spaces or lines."""
    assert parse_trusted_proxies("127.0.0.1,\n10.0.0.0/8 [::1]") == (
        ip_network("127.0.0.1/32"), ip_network("10.0.0.0/8"), ip_network("::1/128"))
    assert parse_trusted_proxies("") == ()


def _load(write_config: Callable[..., Path], line: str) -> DaemonConfig:
    path = write_config(
        f"[wsdaemon]\nlisten = tcp:8080\n{line}\n\n[route:/echo]\nstrategy = echo\n")
    return load_config(path, clock=Clock(), check_endpoint=lambda d: check_endpoint(d, Clock()))


@pytest.mark.parametrize("value", ["nginx", "10.0.0.1/8", "127.0.0.1; ::1"])
def test_bad_value_is_a_clear_config_error(value: str,
                                           write_config: Callable[..., Path]) -> None:
    """A bad entry is refused naming file, line, section, key, the entry and what is expected."""
    with pytest.raises(ConfigError) as info:
        _load(write_config, f"trusted_proxies = {value}")
    message = str(info.value)
    assert "\n" not in message
    for fragment in (".ini:3: [wsdaemon] trusted_proxies: ", "CIDR", repr(value.split()[0])):
        assert fragment in message, message


def test_config_value(write_config: Callable[..., Path]) -> None:
    """The setting reaches the config; its default is empty (trust nobody)."""
    config = _load(write_config, "trusted_proxies = 127.0.0.1, 10.0.0.0/8")
    assert config.trusted_proxies == (ip_network("127.0.0.1/32"), ip_network("10.0.0.0/8"))
    assert _load(write_config, "").trusted_proxies == ()


def test_unix_socket_peers_trusted_only_when_listed() -> None:
    """
    'unix' trusts every peer on a Unix socket (nginx on this machine);
    without it a Unix socket's peer is no proxy, and 'unix' trusts no IP.
    """
    from twisted.internet.address import IPv4Address, UNIXAddress

    unix = TrustedProxies(parse_trusted_proxies("unix"))
    host = unix.host_of(UNIXAddress(None))
    assert unix.client(host, "203.0.113.5").host == "203.0.113.5"
    assert not unix.trusts(unix.host_of(IPv4Address("TCP", "127.0.0.1", 1)))
    assert not PROXIES.trusts(host)
    assert PROXIES.client(host, "203.0.113.5") == Forwarded(host)
