"""
The identity keys of [protocol] and route sections (see
L{wsdaemon.connections.identity}).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wsdaemon.config._credentials import read_path
from wsdaemon.config._model import MODES, IdentityPolicy, JwtSettings
from wsdaemon.config._reader import _Reader
from wsdaemon.config._values import _seconds
from wsdaemon.spelling import did_you_mean

__all__ = ["IDENTITY_KEYS", "identity_policy"]

_JWT_KEYS = {"jwt_secret_file", "jwt_public_key_file", "jwt_algorithms", "jwt_audience",
             "jwt_issuer", "jwt_leeway"}
IDENTITY_KEYS = {"identity", "identity_secret_file", *_JWT_KEYS}
_SHARED_SECRET = ("HS256", "HS384", "HS512")
_PUBLIC_KEY = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512")
#: The shortest shared secret accepted for HS* (RFC 7518 section 3.2).
MIN_SECRET = 32
#: The shortest identity secret accepted (as the daemon writes: 64 hex digits).
MIN_IDENTITY_SECRET = 16


def identity_policy(reader: _Reader, section: str, base: IdentityPolicy) -> IdentityPolicy:
    values = reader.parser[section]
    if not any(key in values for key in IDENTITY_KEYS):
        return base
    mode = values.get("identity", base.mode).strip()
    if mode not in MODES:
        raise reader.error(section, "identity",
                           f"expected one of {', '.join(MODES)}, got {mode!r}"
                           f"{did_you_mean(mode, MODES)}")
    secret, secret_file = base.secret, base.secret_file
    if "identity_secret_file" in values:
        secret_file = read_path(reader, section, "identity_secret_file")
        secret = _read_secret(reader, section, secret_file)
    jwt = base.jwt
    if any(key in values for key in _JWT_KEYS):
        jwt = _jwt_settings(reader, section, base.jwt)
    if mode == "jwt" and jwt is None:
        needs = "jwt needs jwt_secret_file (HS256) or jwt_public_key_file (RS256, ES256)"
        for key in values:
            # A misspelt jwt key is the likelier mistake: name its line.
            hint = "" if key in IDENTITY_KEYS else did_you_mean(key, _JWT_KEYS)
            if hint:
                raise reader.error(section, key, f"unknown key{hint}; {needs}")
        raise reader.error(section, "identity", needs)
    return IdentityPolicy(mode=mode, secret=secret, secret_file=secret_file, jwt=jwt)


def _read_secret(reader: _Reader, section: str, path: Path) -> bytes | None:
    """
    @return: the identity secret in C{path}, or None if the file does not
        exist yet (the daemon creates it when it is built, not the check).
    """
    try:
        data = path.read_bytes().strip()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise reader.error(section, "identity_secret_file",
                           f"cannot read {path}: {e.strerror or e}") from None
    if len(data) < MIN_IDENTITY_SECRET:
        raise reader.error(section, "identity_secret_file",
                           f"{path} holds {len(data)} bytes; expected a secret of at least "
                           f"{MIN_IDENTITY_SECRET}")
    return data


def _read(reader: _Reader, section: str, key: str) -> bytes:
    path = read_path(reader, section, key)
    try:
        return path.read_bytes().strip()
    except OSError as e:
        raise reader.error(section, key, f"cannot read {path}: {e.strerror}") from None


def _jwt_settings(reader: _Reader, section: str, base: JwtSettings | None) -> JwtSettings:
    values = reader.parser[section]
    found: dict[str, Any] = {}
    if "jwt_secret_file" in values and "jwt_public_key_file" in values:
        raise reader.error(section, "jwt_public_key_file",
                           "give jwt_secret_file (HS256) or jwt_public_key_file, not both")
    allowed: tuple[str, ...]
    default: tuple[str, ...]
    if "jwt_secret_file" in values:
        found["key"] = _read(reader, section, "jwt_secret_file")
        if len(found["key"]) < MIN_SECRET:
            raise reader.error(section, "jwt_secret_file",
                               f"the secret is {len(found['key'])} bytes; expected at least "
                               f"{MIN_SECRET} (e.g. `openssl rand -hex 32`)")
        allowed, default = _SHARED_SECRET, ("HS256",)
    elif "jwt_public_key_file" in values:
        found["key"] = _read(reader, section, "jwt_public_key_file")
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        try:
            load_pem_public_key(found["key"])
        except ValueError:
            raise reader.error(section, "jwt_public_key_file",
                               "expected a PEM public key (-----BEGIN PUBLIC KEY-----)") from None
        allowed, default = _PUBLIC_KEY, ("RS256", "ES256")
    elif base is not None:
        found["key"] = base.key
        allowed = _SHARED_SECRET if base.algorithms[0] in _SHARED_SECRET else _PUBLIC_KEY
        default = base.algorithms
    else:
        raise reader.error(section, "jwt_secret_file",
                           "missing; expected jwt_secret_file or jwt_public_key_file")
    algorithms = tuple(values.get("jwt_algorithms", " ".join(default)).replace(",", " ").split())
    wrong = [a for a in algorithms if a not in allowed]
    if wrong or not algorithms:
        raise reader.error(section, "jwt_algorithms",
                           f"expected some of {', '.join(allowed)} for this key, got "
                           f"{', '.join(wrong) or 'nothing'}")
    found["algorithms"] = algorithms
    for key in ("audience", "issuer"):
        raw = values.get(f"jwt_{key}", getattr(base, key, None) or "")
        found[key] = raw.strip() or None
    found["leeway"] = (reader.convert(section, "jwt_leeway", lambda raw: _seconds(raw, True))
                       if "jwt_leeway" in values else getattr(base, "leeway", 0.0))
    return JwtSettings(**found)
