"""The authorization server's endpoints as plain methods: form in, :class:`Reply` out.

No HTTP framework here (``app.py`` is the thin starlette layer), and no clock: ``now`` is passed
in. The device grant's rules are in :mod:`.device_flow`; this module strings them together with
client checks, scopes, token issuance, refresh-token rotation, revocation and introspection.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

from ..protocol.grants import GRANT_CLIENT_CREDENTIALS, GRANT_DEVICE_CODE, GRANT_REFRESH_TOKEN
from .clientauth import SecretAttempts
from .config import SUPPORTED_GRANTS, ClientConfig, RateLimits, ServerConfig
from .device_flow import (
    DeviceGrant,
    DeviceStatus,
    decide_poll,
    format_user_code,
    hash_code,
    new_device_grant,
    normalize_user_code,
)
from .passwords import User
from .storage.base import RefreshRecord, ServerStorage
from .tokens import ALG, Signer

__all__ = ["AuthorizationServer", "CodeLookup", "Reply"]

#: RFC 6749 §5.1: "The authorization server MUST include the HTTP "Cache-Control" response header
#: field [RFC2616] with a value of "no-store" in any response containing tokens, credentials, or
#: other sensitive information, as well as the "Pragma" response header field [RFC2616] with a
#: value of "no-cache"."
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@dataclass(frozen=True)
class Reply:
    status: int
    body: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


def error(code: str, description: str, status: int = 400) -> Reply:
    """An RFC 6749 §5.2 error response."""
    return Reply(status, {"error": code, "error_description": description}, NO_STORE)


def _scope(form: Mapping[str, str]) -> tuple[str, ...] | None:
    raw = form.get("scope")
    return None if raw is None else tuple(dict.fromkeys(raw.split()))


def _take(storage: ServerStorage, window: int, now: float,
          limits: Sequence[tuple[str, int]]) -> bool:
    """Count one attempt under every key *before* it is made; False, with nothing counted, when
    any key's limit is used up. Reading the counters first and counting a failure after it would
    let every request in flight at once through the check (concurrent guesses would overrun the
    limit)."""
    taken: list[str] = []
    for key, limit in limits:
        taken.append(key)
        if storage.hit(key, window, now) > limit:
            for counted in taken:
                storage.hit(counted, window, now, -1)
            return False
    return True


class _StoredSecretAttempts:
    """:class:`~.clientauth.SecretAttempts` counted in the storage, so that every replica sees
    every failure: per (client, address), so one caller's guesses cannot shut out a client at
    another address, and per client, so guesses spread over many addresses stop too."""

    def __init__(self, storage: ServerStorage, limits: RateLimits, address: str, now: float) -> None:
        self._storage = storage
        self._limits = limits
        self._address = address
        self._now = now

    def _keys(self, client_id: str) -> tuple[tuple[str, int], tuple[str, int]]:
        # Quoted: a client id may hold ":" (any TOML key), and must not run into the address.
        client = quote(client_id, safe="")
        return ((f"secret:{client}:{self._address}", self._limits.secret_per_address),
                (f"secret:{client}", self._limits.secret_per_client))

    def take(self, client_id: str) -> bool:
        return _take(self._storage, self._limits.window, self._now, self._keys(client_id))

    def give_back(self, client_id: str) -> None:
        for key, _ in self._keys(client_id):
            self._storage.hit(key, self._limits.window, self._now, -1)


@dataclass(frozen=True)
class CodeLookup:
    """The verification page's look-up of a typed user code."""

    grant: DeviceGrant | None
    limited: bool = False


class AuthorizationServer:
    """Everything the endpoints decide. ``issuer`` is the server's final public URL."""

    def __init__(self, config: ServerConfig, storage: ServerStorage, signer: Signer, issuer: str) -> None:
        self.config = config
        self.storage = storage
        self.signer = signer
        self.issuer = issuer.rstrip("/")
        self.lifetimes = config.lifetimes

    def __repr__(self) -> str:
        return f"AuthorizationServer(issuer={self.issuer!r})"

    # -- discovery ---------------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        base = self.issuer
        return {
            "issuer": base,
            # OIDC Discovery §3 makes authorization_endpoint REQUIRED (MSAL reads it); this server
            # has no authorization-code grant, so the endpoint only explains that to a person,
            # and response_types_supported is empty.
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "device_authorization_endpoint": f"{base}/device_authorization",
            "revocation_endpoint": f"{base}/revoke",
            "introspection_endpoint": f"{base}/introspect",
            "userinfo_endpoint": f"{base}/userinfo",
            "jwks_uri": f"{base}/jwks",
            "scopes_supported": list(self.config.scopes_supported),
            "grant_types_supported": list(SUPPORTED_GRANTS),
            "response_types_supported": [],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post",
                                                      "none"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic",
                                                           "client_secret_post", "none"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic",
                                                              "client_secret_post"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [ALG],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "name", "email"],
            "service_documentation": f"{base}/device",
        }

    # -- device authorization (RFC 8628 §3.1, §3.2) ------------------------------------------------

    def _granted_scope(self, client: ClientConfig, requested: tuple[str, ...] | None
                       ) -> tuple[str, ...] | Reply:
        if requested is None:
            # RFC 6749 §3.3: "If the client omits the scope parameter when requesting
            # authorization, the authorization server MUST either process the request using a
            # pre-defined default value or fail": the default is what the client may have.
            return client.scopes
        unknown = [s for s in requested if s not in client.scopes]
        if unknown:
            # RFC 6749 §5.2, invalid_scope: "The requested scope is invalid, unknown, malformed,
            # or exceeds the scope granted by the resource owner."
            return error("invalid_scope", "this client may not ask for the scope "
                         f"{' '.join(unknown)[:100]!r}")
        return requested

    def device_authorization(self, client: ClientConfig, form: Mapping[str, str], now: float) -> Reply:
        if GRANT_DEVICE_CODE not in client.grants:
            return error("unauthorized_client", "this client may not use the device grant")
        scope = self._granted_scope(client, _scope(form))
        if isinstance(scope, Reply):
            return scope
        for _ in range(10):  # a user code collision with a live grant: draw again
            device_code, grant = new_device_grant(
                client_id=client.client_id, scope=scope, now=now,
                lifetime=self.lifetimes.device_code, interval=self.lifetimes.interval,
            )
            if self.storage.create_device_grant(grant):
                break
        else:  # pragma: no cover - 10 collisions in 2.56e10 codes
            return error("temporarily_unavailable", "no free user code", 503)
        shown = format_user_code(grant.user_code)
        verification_uri = f"{self.issuer}/device"
        # RFC 8628 §3.2: device_code, user_code, verification_uri, expires_in REQUIRED;
        # verification_uri_complete and interval OPTIONAL.
        return Reply(200, {
            "device_code": device_code, "user_code": shown, "verification_uri": verification_uri,
            "verification_uri_complete": f"{verification_uri}?user_code={shown}",
            "expires_in": self.lifetimes.device_code, "interval": self.lifetimes.interval,
        }, NO_STORE)

    # -- the token endpoint (RFC 6749 §4-6, RFC 8628 §3.4-3.5) ------------------------------------

    def token(self, client: ClientConfig, form: Mapping[str, str], now: float) -> Reply:
        grant_type = form.get("grant_type")
        if not grant_type:
            return error("invalid_request", "grant_type is missing")
        if grant_type not in SUPPORTED_GRANTS:
            # RFC 6749 §5.2, unsupported_grant_type: "The authorization grant type is not
            # supported by the authorization server."
            return error("unsupported_grant_type", "supported: " + ", ".join(SUPPORTED_GRANTS))
        if grant_type not in client.grants:
            # RFC 6749 §5.2, unauthorized_client: "The authenticated client is not authorized to
            # use this authorization grant type."
            return error("unauthorized_client", "this client may not use this grant type")
        if grant_type == GRANT_DEVICE_CODE:
            return self._device_grant(client, form, now)
        if grant_type == GRANT_REFRESH_TOKEN:
            return self._refresh_grant(client, form, now)
        assert grant_type == GRANT_CLIENT_CREDENTIALS
        scope = self._granted_scope(client, _scope(form))
        if isinstance(scope, Reply):
            return scope
        # RFC 6749 §4.4.3: "A refresh token SHOULD NOT be included."
        return self._issue(client, subject=client.client_id, scope=scope, now=now,
                           refresh=False, auth_time=None, claims={}, family_id=None)

    def _device_grant(self, client: ClientConfig, form: Mapping[str, str], now: float) -> Reply:
        device_code = form.get("device_code")
        if not device_code:
            return error("invalid_request", "device_code is missing")
        code_hash = hash_code(device_code)
        for _ in range(5):  # compare-and-set: another request changed the grant; decide again
            grant = self.storage.device_grant(code_hash)
            outcome = decide_poll(grant, client_id=client.client_id, now=now)
            if outcome.reused and grant is not None and grant.family_id:
                # A second redemption: whoever got the first answer may not be the client. Like a
                # reused refresh token, it ends the login (tokens already issued die).
                self.storage.revoke_family(grant.family_id, now + self.lifetimes.refresh_token)
            updated = outcome.updated
            if updated is None:
                assert outcome.error is not None
                return error(outcome.error, outcome.description)
            family_id = None
            if outcome.error is None:
                family_id = secrets.token_urlsafe(12)
                updated = replace(updated, family_id=family_id)
            if not self.storage.swap_device_grant(updated):
                continue
            if outcome.error is not None:
                return error(outcome.error, outcome.description)
            assert updated.subject is not None
            return self._issue(
                client, subject=updated.subject, scope=updated.scope, now=now,
                refresh=GRANT_REFRESH_TOKEN in client.grants, auth_time=updated.auth_time,
                claims=updated.extra, family_id=family_id,
            )
        return error("invalid_grant", "the device_code is being redeemed concurrently")

    def _refresh_grant(self, client: ClientConfig, form: Mapping[str, str], now: float) -> Reply:
        refresh_token = form.get("refresh_token")
        if not refresh_token:
            return error("invalid_request", "refresh_token is missing")
        token_hash = hash_code(refresh_token)
        record = self.storage.refresh_token(token_hash)
        # RFC 6749 §5.2, invalid_grant: "The provided authorization grant ... or refresh token is
        # invalid, expired, revoked, ... or was issued to another client."
        if record is None or record.client_id != client.client_id:
            return error("invalid_grant", "unknown refresh token")
        if record.expires_at <= now or self.storage.family_revoked(record.family_id):
            return error("invalid_grant", "the refresh token expired or was revoked")
        requested = _scope(form)
        scope = record.scope
        if requested is not None:
            # RFC 6749 §6: "The requested scope MUST NOT include any scope not originally granted
            # by the resource owner, and if omitted is treated as equal to the scope originally
            # granted".
            if not set(requested) <= set(record.scope):
                return error("invalid_scope", "a refresh cannot widen the scope")
            scope = requested
        if not self.storage.use_refresh_token(token_hash, now):
            # OAuth 2.0 Security BCP §4.14.2 (refresh token rotation): "If a refresh token is
            # compromised and subsequently used by both the attacker and the legitimate client,
            # one of them will present an invalidated refresh token, which will inform the
            # authorization server of the breach" - so the whole family is revoked.
            self.storage.revoke_family(record.family_id, now + self.lifetimes.refresh_token)
            return error("invalid_grant", "the refresh token was already used")
        return self._issue(client, subject=record.subject, scope=scope, now=now, refresh=True,
                           auth_time=record.auth_time, claims=record.claims,
                           family_id=record.family_id, refresh_scope=record.scope)

    def _issue(
        self, client: ClientConfig, *, subject: str, scope: tuple[str, ...], now: float,
        refresh: bool, auth_time: float | None, claims: Mapping[str, str], family_id: str | None,
        refresh_scope: tuple[str, ...] | None = None,
    ) -> Reply:
        access, _ = self.signer.access_token(
            subject=subject, client_id=client.client_id, audience=self.config.audience or self.issuer,
            scope=scope, now=now, lifetime=self.lifetimes.access_token, auth_time=auth_time,
            family_id=family_id,
        )
        body: dict[str, Any] = {"access_token": access, "token_type": "Bearer",
                                "expires_in": self.lifetimes.access_token, "scope": " ".join(scope)}
        if refresh and family_id is not None:
            refresh_token = secrets.token_urlsafe(32)
            self.storage.add_refresh_token(RefreshRecord(
                token_hash=hash_code(refresh_token), family_id=family_id,
                client_id=client.client_id, subject=subject, scope=refresh_scope or scope,
                created_at=now, expires_at=now + self.lifetimes.refresh_token, auth_time=auth_time,
                claims=dict(claims),
            ))
            body["refresh_token"] = refresh_token
        if "openid" in scope and family_id is not None:
            body["id_token"] = self.signer.id_token(
                subject=subject, client_id=client.client_id, now=now,
                lifetime=self.lifetimes.id_token, auth_time=auth_time, claims=claims, scope=scope,
            )
        return Reply(200, body, NO_STORE)

    # -- revocation (RFC 7009) and introspection (RFC 7662) ----------------------------------------

    def revoke(self, client: ClientConfig, form: Mapping[str, str], now: float) -> Reply:
        token = form.get("token")
        if not token:
            return error("invalid_request", "token is missing")
        record = self.storage.refresh_token(hash_code(token))
        if record is not None:
            if record.client_id == client.client_id:
                # RFC 7009 §2.1: "If the particular token is a refresh token and the authorization
                # server supports the revocation of access tokens, then the authorization server
                # SHOULD also invalidate all access tokens based on the same authorization grant".
                self.storage.revoke_family(record.family_id, now + self.lifetimes.refresh_token)
        else:
            claims = self.signer.check_access_token(token, now)
            if claims is not None and claims.get("client_id") == client.client_id:
                self.storage.revoke_jti(str(claims["jti"]), float(claims["exp"]))
        # RFC 7009 §2.2: "The authorization server responds with HTTP status code 200 if the token
        # has been revoked successfully or if the client submitted an invalid token."
        return Reply(200, {}, NO_STORE)

    def introspect(self, client: ClientConfig, form: Mapping[str, str], now: float) -> Reply:
        if client.public:
            return error("invalid_client", "introspection is for confidential clients", 401)
        token = form.get("token")
        if not token:
            return error("invalid_request", "token is missing")
        inactive = Reply(200, {"active": False}, NO_STORE)
        record = self.storage.refresh_token(hash_code(token))
        if record is not None:
            if (record.used_at is not None or record.expires_at <= now
                    or self.storage.family_revoked(record.family_id)):
                return inactive
            return Reply(200, {
                "active": True, "token_type": "refresh_token", "client_id": record.client_id,
                "sub": record.subject, "scope": " ".join(record.scope),
                "exp": int(record.expires_at), "iat": int(record.created_at), "iss": self.issuer,
            }, NO_STORE)
        claims = self.active_access_claims(token, now)
        if claims is None:
            # RFC 7662 §2.2: "If the introspection call is properly authorized but the token is not
            # active, does not exist on this server, or the protected resource is not allowed to
            # introspect this particular token, then the authorization server MUST return an
            # introspection response with the "active" field set to "false"."
            return inactive
        return Reply(200, {"active": True, "token_type": "Bearer", **claims}, NO_STORE)

    def active_access_claims(self, token: str, now: float) -> dict[str, Any] | None:
        claims = self.signer.check_access_token(token, now)
        if claims is None or self.storage.jti_revoked(str(claims.get("jti"))):
            return None
        family = claims.get("sid")
        if isinstance(family, str) and self.storage.family_revoked(family):
            return None
        return claims

    def userinfo(self, token: str, now: float) -> Reply:
        claims = self.active_access_claims(token, now)
        if claims is None or "openid" not in str(claims.get("scope", "")).split():
            return Reply(401, {"error": "invalid_token"},
                         {"WWW-Authenticate": 'Bearer error="invalid_token"', **NO_STORE})
        subject = str(claims["sub"])
        # Only a person's login (it has a sid) is about a user: a client-credentials token's sub is
        # a client id, which may happen to equal a user's name.
        user = self.config.users.get(subject) if claims.get("sid") else None
        extra = dict(user[1]) if user else {}
        return Reply(200, {**extra, "sub": subject}, NO_STORE)

    # -- client secrets ----------------------------------------------------------------------------

    def secret_attempts(self, address: str, now: float) -> SecretAttempts:
        """The counter of secret checks for one request from ``address`` at ``now``, for
        :func:`~.clientauth.authenticate_client`."""
        return _StoredSecretAttempts(self.storage, self.config.rate_limits, address, now)

    # -- the verification page's side ------------------------------------------------------------------

    def _take_attempt(self, address: str, now: float) -> bool:
        """Count one attempt against both limits (this address, everyone) *before* it is made;
        False, with nothing counted, when either is used up."""
        limits = self.config.rate_limits
        return _take(self.storage, limits.window, now, ((f"wrong:{address}", limits.per_address),
                                                        ("wrong:*", limits.overall)))

    def lookup_user_code(self, typed: str, address: str, now: float) -> CodeLookup:
        """The pending grant for a typed code. Each try counts against two limits (this address,
        everyone); past either, no code is even looked up until the window ends. A wrong code
        stays counted; so does a right one, until :meth:`signed_in` (a wrong password guesses
        too)."""
        if not self._take_attempt(address, now):
            return CodeLookup(None, limited=True)
        code = normalize_user_code(typed)
        grant = self.storage.device_grant_by_user_code(code) if code else None
        if grant is None or grant.status_at(now) is not DeviceStatus.PENDING:
            return CodeLookup(None)
        return CodeLookup(grant)

    def signed_in(self, address: str, now: float) -> None:
        """A right code and the right password: the try :meth:`lookup_user_code` counted (with
        the same ``now``) is given back."""
        limits = self.config.rate_limits
        self.storage.hit(f"wrong:{address}", limits.window, now, -1)
        self.storage.hit("wrong:*", limits.window, now, -1)

    def settle(self, device_code_hash: str, user: User | None, now: float) -> DeviceStatus | None:
        """Approve (a user) or deny (None) a pending grant; the grant's status after, or None."""
        for _ in range(5):
            grant = self.storage.device_grant(device_code_hash)
            if grant is None or grant.status_at(now) is not DeviceStatus.PENDING:
                return None
            if user is not None:
                updated = replace(grant.approve(user.subject, now), extra=dict(user.claims))
            else:
                updated = grant.deny(now)
            if self.storage.swap_device_grant(updated):
                return updated.status
        return None
