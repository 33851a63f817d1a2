"""
How a route proves who its visitors are, for operators (issue 22, item 3;
docs/conversations.md, section 7): the route's options and the HMAC check
of a visitor's C{identify}.

A route's options (values, read once when the config is read):

    - C{identity_hash_secret_file}: a file holding the secret the site's
      backend signs visitor ids with (one line; blank lines and lines
      starting with C{#} skipped; at least 16 characters). A visitor's
      C{identify} is kept only when its C{hash} is
      C{HMAC-SHA256(secret, visitor id)} in hex, the visitor id being the
      public one the daemon gives it in C{welcome} (as Chatwoot's
      C{identifier_hash}). Without the option, C{identify} is refused.
    - C{profile_attributes_claim}: on a route with C{identity = jwt}, the
      claim whose object becomes the profile's attributes (none by
      default); the token's C{name} and C{email} claims are always read.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from twisted.logger import Logger
from twisted.python.failure import Failure

from wsdaemon.conversations.events import Identify
from wsdaemon.conversations.profile import Profile, merged
from wsdaemon.interfaces import ISession
from wsdaemon.strategies.api import OptionError
from wsdaemon.support.driver import ConversationDriver
from wsdaemon.support.lanes import LaneFull
from wsdaemon.support.visitor_protocol import Identification, error_frame, ok_frame

__all__ = ["MAX_IDENTIFIES", "MIN_SECRET_CHARS", "NO_SECRET", "OPTIONS", "ConnectionProfile",
           "VisitorIdentity", "identifier_hash", "read_hash_secret", "refusal", "verified",
           "visitor_identity"]

#: The route options this module reads.
OPTIONS = ("identity_hash_secret_file", "profile_attributes_claim")
#: Proven C{identify} requests one connection may make (each may be a
#: store write); more are refused.
MAX_IDENTIFIES = 32
#: The shortest secret taken (characters).
MIN_SECRET_CHARS = 16
_log = Logger(namespace="wsdaemon.support.visitor")

_SECRET_KEY = "identity_hash_secret_file"
#: The answer to C{identify} on a route without a secret.
NO_SECRET = "identify needs identity_hash_secret_file on this route"
_NO_HASH = "identify needs hash: the HMAC-SHA256 of your visitor id (from welcome), in hex"
_WRONG_HASH = "hash: not the HMAC-SHA256 of your visitor id with this route's secret"
_CLAIM_CHARS = 64


@dataclass(frozen=True)
class VisitorIdentity:
    """
    @ivar hash_secret: the key C{identify} hashes are checked with (None:
        C{identify} is refused on the route).
    @ivar attributes_claim: the token claim that holds the attributes.
    """

    hash_secret: bytes | None = None
    attributes_claim: str | None = None

    def __repr__(self) -> str:  # never the secret, in a log or a traceback
        shown = "set" if self.hash_secret is not None else None
        return f"VisitorIdentity(hash_secret={shown}, attributes_claim={self.attributes_claim!r})"


def read_hash_secret(path: Path) -> bytes:
    """
    @return: the secret in C{path} (its one line that is neither blank nor
        a comment, trimmed), as UTF-8.
    @raise OptionError: naming the file (and the line) that is wrong,
        never the secret.
    """
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise OptionError(_SECRET_KEY, f"cannot read {path}: {type(e).__name__}",
                          path=path) from None
    found: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            found.append((number, line))
    if not found:
        raise OptionError(_SECRET_KEY, f"{path} holds no secret (expected one line of at "
                                       f"least {MIN_SECRET_CHARS} characters)", path=path)
    if len(found) > 1:
        raise OptionError(_SECRET_KEY, "expected one secret, on one line", path=path,
                          line=found[1][0])
    number, secret = found[0]
    if len(secret) < MIN_SECRET_CHARS:
        raise OptionError(_SECRET_KEY, f"expected a secret of at least {MIN_SECRET_CHARS} "
                                       "characters", path=path, line=number)
    return secret.encode("utf-8")


def visitor_identity(options: Mapping[str, str], config_dir: Path) -> VisitorIdentity:
    """
    @return: the route's identity options, checked (the secret read).
    @raise OptionError: naming the option that is wrong.
    """
    secret = None
    raw = options.get(_SECRET_KEY)
    if raw is not None:
        if not raw.strip():
            raise OptionError(_SECRET_KEY, "expected the path of a file holding the secret "
                                           "the site's backend signs visitor ids with")
        secret = read_hash_secret(Path(config_dir, raw.strip()))
    claim = options.get("profile_attributes_claim")
    if claim is not None:
        claim = claim.strip()
        if not 0 < len(claim) <= _CLAIM_CHARS or not claim.isprintable() or " " in claim:
            raise OptionError("profile_attributes_claim",
                              f"expected a claim name of 1 to {_CLAIM_CHARS} characters "
                              "without spaces, e.g. attributes")
    return VisitorIdentity(secret, claim)


def identifier_hash(secret: bytes, visitor: str) -> str:
    """What the site's backend computes: C{HMAC-SHA256(secret, visitor)} in hex."""
    return hmac.new(secret, visitor.encode("utf-8"), hashlib.sha256).hexdigest()


def verified(secret: bytes, visitor: str, given: str) -> bool:
    """Whether C{given} is C{visitor}'s hash, compared in constant time."""
    expected = identifier_hash(secret, visitor).encode("ascii")
    return hmac.compare_digest(expected, given.lower().encode("utf-8", "replace"))


def refusal(identity: VisitorIdentity, visitor: str, given: str | None) -> str | None:
    """
    @return: why an C{identify} of C{visitor} with hash C{given} is
        refused (the C{error} frame's text), or None: it is proven.
    """
    if identity.hash_secret is None:
        return NO_SECRET
    if given is None:
        return _NO_HASH
    if not verified(identity.hash_secret, visitor, given):
        return _WRONG_HASH
    return None


class ConnectionProfile:
    """
    Who one visitor connection proved the visitor is: the token's claims
    it connected with, then what its C{identify} requests proved (merged:
    the token's fields stand). It goes with each of the connection's
    messages (L{VisitorMessage.profile}), so that a visitor who identified
    before writing has its profile stored with its first message.

    @param identity: how the route checks C{identify}.
    @param profile: the token's profile, if any.
    """

    def __init__(self, driver: ConversationDriver, route: str, visitor: str,
                 identity: VisitorIdentity | None = None,
                 profile: Profile | None = None) -> None:
        self._driver = driver
        self._route = route
        self.visitor = visitor
        self._identity = identity or VisitorIdentity()
        self.profile = profile
        self._refusal_logged = False
        self._identified = 0

    def identify(self, session: ISession, request: Identification) -> None:
        """
        Answers C{ok} once stored, or C{error}: refused (nothing kept; logged
        once per connection), past L{MAX_IDENTIFIES}, or not stored (send it
        again).
        """
        why = refusal(self._identity, self.visitor, request.hash)
        if why is not None:
            if not self._refusal_logged:
                self._refusal_logged = True
                _log.warn("conversations: identify from {client_id} on {route} refused: {why}",
                          client_id=self.visitor, route=self._route, why=why)
            session.send(error_frame(why, "identify"))
            return
        if self._identified >= MAX_IDENTIFIES:
            session.send(error_frame(f"at most {MAX_IDENTIFIES} identify requests a connection",
                                     "identify"))
            return
        self._identified += 1
        self.profile = merged(self.profile, request.profile)
        d = self._driver.submit(Identify(self._route, self.visitor, request.profile))

        def failed(failure: Failure) -> None:
            if not failure.check(LaneFull):
                _log.failure("conversations: the profile of {client_id} on {route} was not "
                             "stored", failure, client_id=self.visitor, route=self._route)
            session.send(error_frame("your profile could not be stored: send it again",
                                     "identify"))

        d.addCallbacks(lambda _: session.send(ok_frame("identify")), failed)
