"""
A client's credential and its public id.

On an C{identity = anonymous} route the daemon issues each client a
credential (128 random bits and the daemon's signature), which the client
keeps (a cookie) and presents to be recognised. What everyone else sees, the
operators' consoles, transcripts, the admin API, the journal, logs and
metrics, is the client's public id: 128 bits of the credential's SHA-256.
It names the client and cannot be turned back into what proves it.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode

__all__ = ["CREDENTIAL", "CREDENTIAL_COOKIE", "CREDENTIAL_PARAMS", "public_headers",
           "public_id", "public_id_of_legacy", "public_query"]

#: Query parameters that carry a client's credential (the daemon's own
#: C{client_token}, an identity token): never handed on to a backend.
CREDENTIAL_PARAMS = frozenset({"client_token", "access_token"})
#: The cookie that carries the daemon's credential.
CREDENTIAL_COOKIE = "wsdaemon_client"

#: What an issued credential looks like: a 22-character nonce, a dot, a
#: 16-character signature (both base64url without padding).
CREDENTIAL = re.compile(r"[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{16}")


def public_id(credential: str) -> str:
    """
    @return: the public id of an issued credential (22 characters, no dot).
    """
    digest = hashlib.sha256(b"wsdaemon client id\0" + credential.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode("ascii")


def public_id_of_legacy(client_id: str) -> str:
    """
    Stores written before public ids kept an anonymous client's credential
    as its id: the public id for such an id, any other id unchanged.
    """
    if CREDENTIAL.fullmatch(client_id):
        return public_id(client_id)
    return client_id


def public_query(query: str) -> str:
    """
    @return: C{query} without the parameters that carry a credential, for
        whatever the daemon hands a client's handshake on to (a webhook
        backend, a command's C{QUERY_STRING}).
    """
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, v) for k, v in pairs if k not in CREDENTIAL_PARAMS])


def public_headers(names: tuple[str, ...], headers: Mapping[str, str]) -> dict[str, str]:
    """
    @return: the headers C{names} allows (lower-case names), the daemon's
        credential cookie left out of C{cookie}, and C{authorization} never.
    """
    passed = {name: headers[name] for name in names
              if name in headers and name != "authorization"}
    cookie = passed.get("cookie")
    if cookie is not None:
        kept = [part for part in cookie.split(";")
                if part.strip().partition("=")[0] != CREDENTIAL_COOKIE]
        passed["cookie"] = ";".join(kept).strip()
    return passed
