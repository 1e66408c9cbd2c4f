"""The sign-in through an upstream provider, without I/O: what is kept while the person is away,
and who comes back.

Rules
-----
* Pressing "Sign in with NAME" makes an :class:`~keyturn.protocol.authcode.AuthorizationRequest`
  (the client side's: a 256-bit ``state``, a ``nonce``, a PKCE S256 pair) and a
  :class:`PendingLogin` kept in the server's storage under the hash of the ``state``, sealed with a
  key derived from the ``state`` itself (:class:`~..replay.Sealer`): a copy of the database opens
  none of them. Any replica can take it back; it is taken once (``take_once``), so a callback
  replayed, or one with a state this server never made, finds nothing.
* The login is bound to the browser that pressed the button: a random cookie whose hash the
  login holds. A callback arriving in another browser (a link an attacker started with their own
  user code, sent to a victim who is signed in at the upstream) approves nothing.
* A login older than :data:`LOGIN_LIFETIME` is refused, whatever the storage still holds.
* Who came back: the claim ``subject_claim`` of the upstream's (validated) id_token, completed by
  its userinfo, becomes the local ``sub``; ``copy_claims`` are kept for the local id_token and
  userinfo (released by scope there, :mod:`..claims`); the allow-list decides whether the person
  is let in at all (:func:`admitted`).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from ...protocol.authcode import AuthorizationRequest
from ...protocol.metadata import ServerMetadata
from ...protocol.pkce import Pkce
from ..device_flow import hash_code
from ..passwords import User
from ..replay import Sealer
from .config import AllowRule, UpstreamConfig

__all__ = ["LOGIN_LIFETIME", "PendingLogin", "admitted", "begin", "email_proven", "login_key",
           "map_user", "reauthenticated", "resume"]

#: Seconds between the button and the callback: enough to sign in, too little to keep a link.
LOGIN_LIFETIME: Final = 300
#: How far the clock of the replica taking the callback may be behind the one that stored the
#: login (review R19 L6): a login "made in the future" by this much is still fresh.
CLOCK_SKEW: Final = 10


@dataclass(frozen=True, kw_only=True)
class PendingLogin:
    """What the callback needs to finish a login; the secrets show in no repr."""

    upstream: str
    user_code: str
    created_at: float
    nonce: str = field(repr=False)
    code_verifier: str = field(repr=False)
    #: SHA-256 of the cookie set in the browser that pressed the button.
    browser: str = field(repr=False)

    def seal(self, state: str) -> str:
        return Sealer(state).seal(asdict(self))

    @classmethod
    def open(cls, state: str, sealed: str) -> PendingLogin | None:
        data = Sealer(state).open(sealed)
        if data is None:
            return None
        try:
            return cls(upstream=str(data["upstream"]), user_code=str(data["user_code"]),
                       created_at=float(data["created_at"]), nonce=str(data["nonce"]),
                       code_verifier=str(data["code_verifier"]), browser=str(data["browser"]))
        except (KeyError, TypeError, ValueError):
            return None

    def stale(self, now: float) -> bool:
        return not self.created_at - CLOCK_SKEW <= now < self.created_at + LOGIN_LIFETIME

    def same_browser(self, cookie: str | None) -> bool:
        return cookie is not None and secrets.compare_digest(_digest(cookie), self.browser)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def login_key(state: str) -> str:
    """Where the login of ``state`` is kept (the hash only: the state opens it)."""
    return f"upstream-login:{hash_code(state)}"


def _request(upstream: UpstreamConfig, metadata: ServerMetadata, redirect_uri: str, *,
             state: str, nonce: str, pkce: Pkce) -> AuthorizationRequest:
    from ...protocol.authcode import iss_required

    assert metadata.authorization_endpoint is not None
    return AuthorizationRequest(
        authorization_endpoint=metadata.authorization_endpoint, client_id=upstream.client_id,
        redirect_uri=redirect_uri, scope=upstream.scope, state=state, pkce=pkce, nonce=nonce,
        prompt=upstream.prompt, params=_max_age(upstream),
        # RFC 9207 §2.4: the iss of the response is compared "to the issuer identifier of the
        # authorization server where the authorization request was sent to".
        issuer=metadata.issuer, require_iss=iss_required(metadata),
    )


def _forces_login(upstream: UpstreamConfig) -> bool:
    return "login" in (upstream.prompt or "").split()


def _max_age(upstream: UpstreamConfig) -> dict[str, str | list[str]]:
    """OIDC Core §3.1.2.1, max_age: "When max_age is used, the ID Token returned MUST include
    an auth_time Claim Value": with ``prompt = "login"``, 0, so that :func:`reauthenticated`
    can tell whether the provider did ask again (review R19 L2)."""
    return {"max_age": "0"} if _forces_login(upstream) else {}


def reauthenticated(upstream: UpstreamConfig, claims: Mapping[str, Any],
                    login: PendingLogin) -> bool:
    """With ``prompt = "login"``: the id_token's ``auth_time`` is no older than the press (a
    provider that ignores prompt and max_age is caught here; OIDC Core §3.1.3.7 step 13:
    "the Client SHOULD check the auth_time Claim value and request re-authentication if it
    determines too much time has elapsed")."""
    if not _forces_login(upstream):
        return True
    auth_time = claims.get("auth_time")
    return (isinstance(auth_time, int | float) and not isinstance(auth_time, bool)
            and auth_time >= login.created_at - CLOCK_SKEW)


def begin(upstream: UpstreamConfig, metadata: ServerMetadata, redirect_uri: str, user_code: str,
          now: float) -> tuple[AuthorizationRequest, PendingLogin, str]:
    """A new login: the request to send the browser to, what to keep, and the browser cookie."""
    fresh = AuthorizationRequest.create(
        authorization_endpoint=metadata.authorization_endpoint or "", client_id=upstream.client_id,
        redirect_uri=redirect_uri, scope=upstream.scope, prompt=upstream.prompt or "",
    )
    assert fresh.nonce is not None  # the scope holds openid (config.py)
    request = _request(upstream, metadata, redirect_uri, state=fresh.state, nonce=fresh.nonce,
                       pkce=fresh.pkce)
    cookie = secrets.token_urlsafe(32)
    login = PendingLogin(upstream=upstream.name, user_code=user_code, created_at=now,
                         nonce=fresh.nonce, code_verifier=fresh.pkce.verifier,
                         browser=_digest(cookie))
    return request, login, cookie


def resume(upstream: UpstreamConfig, metadata: ServerMetadata, redirect_uri: str, state: str,
           login: PendingLogin) -> AuthorizationRequest:
    """The request the login was started with, to check its response and exchange its code."""
    return _request(upstream, metadata, redirect_uri, state=state, nonce=login.nonce,
                    pkce=Pkce.create(login.code_verifier))


def email_proven(upstream: UpstreamConfig, claims: Mapping[str, Any]) -> bool:
    """Whether the ``email`` of these claims may name or admit anyone.

    OIDC Core §5.1, email_verified: "True if the End-User's e-mail address has been verified;
    otherwise false." Only the JSON ``true`` counts: a missing claim (Entra ID never sends it,
    and its ``email`` is a free-text attribute), ``"false"`` or ``0`` prove nothing."""
    return upstream.trust_unverified_email or claims.get("email_verified") is True


def _matches(rule: AllowRule, claims: Mapping[str, Any], email_ok: bool) -> bool:
    value = claims.get(rule.claim)
    if rule.claim == "email":
        if not email_ok:
            return False  # an address the upstream has not verified proves no domain
        # RFC 5321 §2.4: a domain is case-insensitive; so, in practice, is the local part
        # (review R19 L3: alice@EXAMPLE.ORG is at example.org).
        value, rule = _lower(value), AllowRule(claim=rule.claim, equals=_lower(rule.equals),
                                                contains=rule.contains,
                                                ends_with=_lower(rule.ends_with))
    if rule.equals is not None:
        # Bytes: compare_digest refuses a str that is not ASCII (a name such as "józef").
        return isinstance(value, str) and secrets.compare_digest(value.encode(),
                                                                 rule.equals.encode())
    if rule.ends_with is not None:
        return isinstance(value, str) and value.endswith(rule.ends_with)
    assert rule.contains is not None
    return isinstance(value, list) and rule.contains in value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def admitted(upstream: UpstreamConfig, claims: Mapping[str, Any]) -> bool:
    """Whether the allow-list lets this person in (any rule; ``allow_all`` everyone)."""
    if upstream.allow_all:
        return True
    email_ok = email_proven(upstream, claims)
    return any(_matches(rule, claims, email_ok) for rule in upstream.allow)


def map_user(upstream: UpstreamConfig, claims: Mapping[str, Any]) -> User | None:
    """The local user for the upstream's claims; None when the subject claim is missing or not
    a non-empty string, or an email the upstream says is unverified (nobody can be named by it)."""
    subject = claims.get(upstream.subject_claim)
    if not isinstance(subject, str) or not subject:
        return None
    email_ok = email_proven(upstream, claims)
    if upstream.subject_claim == "email":
        if not email_ok:
            return None  # an address anyone may have typed names nobody
        subject = subject.lower()  # Alice@X and alice@x are one person (review R19 L3)
    # Only strings are copied: the local claims are strings (config.py's users have the same).
    # An unproven email is not passed on: a relying party would take it as the person's.
    copied = {name: claims[name] for name in upstream.copy_claims
              if isinstance(claims.get(name), str) and (name != "email" or email_ok)}
    return User(subject=upstream.subject_prefix + subject, claims=copied)
