"""
Origin patterns: what browsers' pages may connect.
"""

from __future__ import annotations

import pytest

from wsdaemon.origin import OriginPolicy

LOCAL = OriginPolicy.local_only()


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://localhost:8080", True),
        ("http://localhost", True),  # default port 80 matches localhost:*
        ("https://127.0.0.1:8443", True),
        ("HTTP://LOCALHOST:3000", True),
        ("http://localhost.evil.com:80", False),
        ("http://evil.com", False),
        ("http://127.0.0.2:8080", False),
        ("null", False),
        ("not a url", False),
        ("ftp://localhost:21", False),
        (None, True),  # no Origin header: not a browser
        ("", True),
    ],
)
def test_local_only(origin: str | None, allowed: bool) -> None:
    """The shipped policy allows this machine's pages and tools without an Origin."""
    assert LOCAL.allows(origin) is allowed


def test_missing_origin_can_be_refused() -> None:
    """Missing origin can be refused."""
    policy = LOCAL.with_allow_missing(False)
    assert not policy.allows(None)
    assert policy.allows("http://localhost:1")


def test_pattern_without_port_means_default_port() -> None:
    """Pattern without port means default port."""
    policy = OriginPolicy(patterns=("https://example.com",))
    assert policy.allows("https://example.com")
    assert policy.allows("https://example.com:443")
    assert not policy.allows("https://example.com:8443")
    assert not policy.allows("http://example.com")


def test_host_wildcard() -> None:
    """Host wildcard."""
    policy = OriginPolicy(patterns=("https://*.example.com:*",))
    assert policy.allows("https://app.example.com:444")
    assert not policy.allows("https://example.org")


def test_star_and_null() -> None:
    """Star and null."""
    assert OriginPolicy(patterns=("*",)).allows("https://anything.test:1")
    assert OriginPolicy(patterns=("null",)).allows("null")
    assert not OriginPolicy(patterns=()).allows("http://localhost:1")


@pytest.mark.parametrize("bad", ["localhost", "http://", "ws://localhost", "http://a:port"])
def test_malformed_pattern(bad: str) -> None:
    """Malformed pattern."""
    with pytest.raises(ValueError, match="expected origin patterns"):
        OriginPolicy(patterns=(bad,))


def test_answers_are_remembered_up_to_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """A storm's repeated origins are parsed once (the answer is the same
    the second time, without parsing); at MAX_REMEMBERED the memory starts
    again, so a client sending a new Origin each time grows nothing."""
    from wsdaemon import origin as module

    policy = OriginPolicy.local_only()
    assert policy.allows("http://localhost:1") and not policy.allows("http://evil:1")
    parsed: list[str] = []
    real = module._normalise
    monkeypatch.setattr(module, "_normalise", lambda o: parsed.append(o) or real(o))
    assert policy.allows("http://localhost:1") and not policy.allows("http://evil:1")
    assert parsed == []
    for i in range(module.MAX_REMEMBERED + 10):
        assert policy.allows(f"http://localhost:{i}")
    assert len(policy._answers) <= module.MAX_REMEMBERED
    assert policy == OriginPolicy.local_only() and hash(policy) == hash(OriginPolicy.local_only())
