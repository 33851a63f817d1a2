"""
Who a client is: proven, never taken from what it claims.

A route's C{identity} is one of:

    - C{anonymous} (the default): the daemon issues each new client a
      credential of 128 random bits, signed with the daemon's identity
      secret, in a cookie (C{wsdaemon_client}) set on the handshake
      response; a client that comes back with it (the cookie, or
      C{?client_token=} for clients without cookies) is the same client. A
      credential the daemon did not issue is ignored and a new one issued:
      nobody can choose to be someone else. The client's id, the one shown
      to operators and in logs, the journal, the admin API and metrics, is
      derived from the credential one way (L{wsdaemon.client_ids}): knowing it proves
      nothing, and C{?client_id=} is not read on these routes.
    - C{jwt}: the team's backend mints a token (HS256 with a shared secret,
      or RS256/ES256 with a key pair); the client gives it at connect as
      C{?access_token=} (what a browser can do) or C{Authorization: Bearer};
      the client id is the token's subject. A missing token is refused with
      401, a bad, expired or wrong-audience one with 403, before the upgrade.
    - C{claimed}: C{?client_id=} as the client gives it. For test setups
      only: anyone can be anyone.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import replace
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Any

from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.logger import Logger

from wsdaemon.client_ids import public_id
from wsdaemon.config import IdentityPolicy, JwtSettings
from wsdaemon.connections.refusals import logged
from wsdaemon.escaping import visible

__all__ = ["COOKIE", "TOKEN_PARAM", "IdentityPolicy", "JwtSettings", "issue", "public_id",
           "read_or_create_secret", "resolve", "resolve_with_claims", "verify", "with_secret"]

_log = Logger(namespace="wsdaemon.identity")

COOKIE = "wsdaemon_client"
#: The query parameter that carries the credential for clients without cookies.
TOKEN_PARAM = "client_token"
UNAUTHORIZED = 401
#: Issued ids live this long in the browser (a year).
COOKIE_MAX_AGE = 365 * 24 * 3600
_CLAIMED = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_SUBJECT = re.compile(r"[^\x00-\x1f\x7f]{1,128}")

#: A secret for issued ids when none is configured: ids then survive
#: reloads but not restarts.
_PROCESS_SECRET = secrets.token_bytes(32)


def with_secret(policy: IdentityPolicy) -> IdentityPolicy:
    """
    @return: C{policy} with its secret: read from (or first written to) its
        C{secret_file}, else this process's own.
    @raise OSError: if the file can be neither read nor created.
    """
    if policy.secret is not None:
        return policy
    if policy.secret_file is not None:
        return replace(policy, secret=read_or_create_secret(policy.secret_file))
    return replace(policy, secret=_PROCESS_SECRET)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _signature(secret: bytes, nonce: str) -> str:
    return _b64(hmac.new(secret, nonce.encode("ascii"), hashlib.sha256).digest()[:12])


def issue(secret: bytes) -> str:
    """
    @return: a new client id: 128 random bits and the daemon's signature.
    """
    nonce = _b64(secrets.token_bytes(16))
    return f"{nonce}.{_signature(secret, nonce)}"


def verify(secret: bytes, credential: str) -> bool:
    """
    @return: whether this daemon (or one with the same secret) issued it.
    """
    nonce, dot, signature = credential.partition(".")
    if not dot or len(nonce) != 22 or not nonce.isascii():
        return False
    return hmac.compare_digest(signature, _signature(secret, nonce))


def read_or_create_secret(path: Path) -> bytes:
    """
    @return: the identity secret kept in C{path}, created (32 random bytes,
        readable by this user only) if missing.
    @raise OSError: if it can be neither read nor created.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = secrets.token_hex(32).encode("ascii")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another daemon made it just now
            return read_or_create_secret(path)
        with os.fdopen(fd, "wb") as f:
            f.write(data + b"\n")
        return data
    data = data.strip()
    if len(data) < 16:
        raise OSError(f"{path} holds {len(data)} bytes; expected a secret of at least 16")
    return data


def _cookie(request: ConnectionRequest) -> str | None:
    raw = request.headers.get("cookie")
    if not raw:
        return None
    try:
        jar = SimpleCookie(str(raw))
    except CookieError:
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None else None


def _param(request: ConnectionRequest, name: str) -> str | None:
    values = request.params.get(name)
    return str(values[0]) if values else None


def _anonymous(policy: IdentityPolicy, request: ConnectionRequest,
               secure: bool) -> tuple[str, dict[str, str]]:
    secret = policy.secret if policy.secret is not None else _PROCESS_SECRET
    for presented in (_cookie(request), _param(request, TOKEN_PARAM)):
        if presented and verify(secret, presented):
            return public_id(presented), {}
    credential = issue(secret)
    cookie = (f"{COOKIE}={credential}; Path=/; Max-Age={COOKIE_MAX_AGE}; HttpOnly; "
              "SameSite=Strict" + ("; Secure" if secure else ""))
    return public_id(credential), {"Set-Cookie": cookie}


def _from_token(settings: JwtSettings, request: ConnectionRequest) -> tuple[str, dict[str, Any]]:
    import jwt

    header = str(request.headers.get("authorization", ""))
    token = header[7:].strip() if header.lower().startswith("bearer ") else None
    token = token or _param(request, "access_token")
    if not token:
        raise ConnectionDeny(UNAUTHORIZED, "identity token required")
    try:
        claims = jwt.decode(
            token, settings.key, algorithms=list(settings.algorithms),
            audience=settings.audience, issuer=settings.issuer, leeway=settings.leeway,
            options={"require": ["exp", "sub"], "verify_aud": settings.audience is not None},
        )
    except jwt.PyJWTError as e:
        _log.info("refused {peer}: identity token not accepted ({why})", peer=request.peer,
                  why=type(e).__name__)
        raise logged(ConnectionDeny(ConnectionDeny.FORBIDDEN,
                                    "identity token not accepted")) from None
    subject = claims.get("sub")
    if (not isinstance(subject, str) or not _SUBJECT.fullmatch(subject)
            or visible(subject) != subject):
        raise ConnectionDeny(ConnectionDeny.FORBIDDEN, "identity token has no usable subject")
    return subject, dict(claims)


def resolve(policy: IdentityPolicy, request: ConnectionRequest,
            secure: bool = False) -> tuple[str | None, dict[str, str]]:
    """
    @return: the client's id (None: its session id stands in) and headers
        to add to the handshake response.
    @raise ConnectionDeny: 401 or 403, for a route that requires a token.
    """
    client_id, headers, _ = resolve_with_claims(policy, request, secure)
    return client_id, headers


def resolve_with_claims(policy: IdentityPolicy, request: ConnectionRequest,
                        secure: bool = False) -> tuple[str | None, dict[str, str],
                                                       dict[str, Any]]:
    """
    @return: as L{resolve}, and the claims of the verified identity token
        (C{identity = jwt}; empty for the other modes).
    @raise ConnectionDeny: 401 or 403, for a route that requires a token.
    """
    if policy.mode == "jwt":
        assert policy.jwt is not None
        subject, claims = _from_token(policy.jwt, request)
        return subject, {}, claims
    if policy.mode == "anonymous":
        client_id, headers = _anonymous(policy, request, secure)
        return client_id, headers, {}
    claimed = _param(request, "client_id")
    return (claimed if claimed and _CLAIMED.fullmatch(claimed) else None), {}, {}
