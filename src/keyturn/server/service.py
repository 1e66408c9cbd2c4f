"""The authorization server as plain methods: form in, :class:`~.reply.Reply` out (or an
:class:`~keyturn.errors.OAuthError` raised, rendered by :func:`~.errors.error_reply`).

No HTTP framework here (:mod:`.app` is the thin starlette layer), and no clock: ``now`` is passed
in. :class:`AuthorizationServer` is the one object the app and the pages hold; each job is its own
module and it delegates to them: :mod:`.token_endpoint` (device authorization and the token
endpoint), :mod:`.verification` (the ``/device`` page's decisions), :mod:`.ratelimit` (attempt
counters). What is left here is small: discovery, revocation, introspection and userinfo.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..errors import InvalidClient, InvalidRequest
from .claims import login_claims, released_claims
from .clientauth import SecretAttempts
from .config import SUPPORTED_GRANTS, ClientConfig, ServerConfig
from .device_flow import DeviceStatus, hash_code
from .errors import InvalidToken, TemporarilyUnavailable, refusal
from .grantlimit import PendingGrantLimit
from .metrics import Metrics
from .passwords import User
from .ratelimit import StoredSecretAttempts
from .reply import NO_STORE, Reply
from .storage.base import ServerStorage
from .token_endpoint import TokenEndpoint
from .tokens import Signer
from .verification import CodeLookup, Verification

__all__ = ["AuthorizationServer", "CodeLookup", "Reply"]


class AuthorizationServer:
    """Everything the endpoints decide. ``issuer`` is the server's final public URL."""

    def __init__(self, config: ServerConfig, storage: ServerStorage, signer: Signer, issuer: str) -> None:
        self.config = config
        self.storage = storage
        self.signer = signer
        self.issuer = issuer.rstrip("/")
        self.lifetimes = config.lifetimes
        self.grants = TokenEndpoint(config, storage, signer, self.issuer)
        self.verification = Verification(storage, config.rate_limits, user_codes=config.user_codes)
        self.pending_grants = PendingGrantLimit(config, storage)
        self._metadata_json: tuple[tuple[str, ...], bytes] | None = None
        #: The counters of /metrics (:mod:`.metrics`), kept whether or not /metrics is served.
        self.metrics = Metrics()
        self.verification.metrics = self.metrics
        self.grants.metrics = self.metrics

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
            # The signing key's alg first (signing_alg), then those of keys still published.
            "id_token_signing_alg_values_supported": self.signer.algs(),
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "name", "email"],
            "service_documentation": f"{base}/device",
        }

    def metadata_json(self) -> bytes:
        """:meth:`metadata` as the bytes the discovery endpoints send: encoded once (again only
        when the published algorithms change), not per request."""
        algs = tuple(self.signer.algs())
        if self._metadata_json is None or self._metadata_json[0] != algs:
            self._metadata_json = (algs, json.dumps(self.metadata()).encode())
        return self._metadata_json[1]

    def jwks(self) -> dict[str, Any]:
        return self.signer.jwks()

    # -- the endpoints that issue credentials (.token_endpoint) -----------------------------------

    def device_authorization(self, client: ClientConfig, form: Mapping[str, str], now: float) -> Reply:
        reply = self.grants.device_authorization(client, form, now)
        self.metrics.device_grant("pending")
        return reply

    def token(self, client: ClientConfig, form: Mapping[str, str], now: float) -> Reply:
        return self.grants.token(client, form, now)  # counts a redemption (not a retry's answer)

    # -- revocation (RFC 7009) and introspection (RFC 7662) ----------------------------------------

    def revoke(self, client: ClientConfig, form: Mapping[str, str], now: float) -> Reply:
        if not form.get("token"):
            raise refusal(InvalidRequest, "token is missing")
        token = form["token"]
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
            raise refusal(InvalidClient, "introspection is for confidential clients")
        if not form.get("token"):
            raise refusal(InvalidRequest, "token is missing")
        token = form["token"]
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
        del token  # not a local of the traceback of the refusal below
        if claims is None or "openid" not in str(claims.get("scope", "")).split():
            # RFC 6750 §3.1, invalid_token: "The access token provided is expired, revoked,
            # malformed, or invalid for other reasons." (No description: only the code is sent.)
            raise refusal(InvalidToken, None)
        subject = str(claims["sub"])
        # Only a person's login (it has a sid) is about a user: a client-credentials token's sub is
        # a client id, which may happen to equal a user's name.
        family = claims.get("sid")
        user = self.config.users.get(subject) if family else None
        # The claims the person signed in with (an upstream provider's are in no file), else the
        # local user's.
        kept = login_claims(self.storage, family, now) if isinstance(family, str) else None
        signed_in_with = kept if kept is not None else (user[1] if user else {})
        # OIDC Core §5.4: the scope values "request access to" the claims they name; only those
        # (and sub) are released, as in the id_token.
        extra = released_claims(signed_in_with, str(claims.get("scope", "")).split())
        return Reply(200, {**extra, "sub": subject}, NO_STORE)

    # -- rate limits (.ratelimit) ------------------------------------------------------------------

    def count_new_grant(self, client: ClientConfig, address: str, now: float) -> None:
        """Before a device authorization: see :meth:`.PendingGrantLimit.take` (429 past it)."""
        try:
            self.pending_grants.take(client, address, now)
        except TemporarilyUnavailable:
            self.metrics.rate_limited("pending_grants")
            raise

    def secret_attempts(self, address: str, now: float) -> SecretAttempts:
        """The counter of secret checks for one request from ``address`` at ``now``, for
        :func:`~.clientauth.authenticate_client`."""
        return StoredSecretAttempts(self.storage, self.config.rate_limits, address, now,
                                    refused=lambda: self.metrics.rate_limited("client_secret"))

    # -- the verification page's side (.verification) ----------------------------------------------

    def lookup_user_code(self, typed: str, address: str, now: float) -> CodeLookup:
        """See :meth:`.Verification.lookup_user_code`."""
        return self.verification.lookup_user_code(typed, address, now)

    def signed_in(self, address: str, now: float) -> None:
        """See :meth:`.Verification.signed_in`."""
        self.verification.signed_in(address, now)

    def settle(self, device_code_hash: str, user: User | None, now: float) -> DeviceStatus | None:
        """See :meth:`.Verification.settle`."""
        return self.verification.settle(device_code_hash, user, now)
