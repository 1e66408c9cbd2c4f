"""The endpoints that issue credentials: device authorization (RFC 8628 §3.1-3.2) and the token
endpoint (RFC 6749 §4-6, RFC 8628 §3.4-3.5): the device, refresh and client-credentials grants,
refresh-token rotation and the revocation of a login whose code or refresh token came back.

Form in, :class:`~.reply.Reply` out, or an :class:`~keyturn.errors.OAuthError` raised (rendered
by :func:`~.errors.error_reply`). The device grant's rules are :mod:`.device_flow`'s; this module
applies them to the storage with compare-and-set. Each redemption (a device code, a refresh
token) is one atomic storage operation that spends the credential and stores the new refresh
token, and keeps the sealed answer (:mod:`.replay`) for an identical retry within
``Lifetimes.retry_grace``. The device code and the refresh token are hashed at once and never
held in a local of a frame that can raise (the sealing key derived from them is held by a
:class:`~.replay.Sealer`, whose repr hides it).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ..errors import (
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from ..protocol.grants import GRANT_CLIENT_CREDENTIALS, GRANT_DEVICE_CODE, GRANT_REFRESH_TOKEN
from .claims import keep_login_claims, renew_login_claims
from .config import SUPPORTED_GRANTS, ClientConfig, ServerConfig
from .device_flow import decide_poll, format_user_code, hash_code, new_device_grant
from .errors import TemporarilyUnavailable, refusal, refusal_for_code
from .metrics import Metrics
from .replay import Sealer, request_fingerprint
from .reply import NO_STORE, Reply
from .storage.base import RefreshRecord, Replay, ServerStorage
from .tokens import Signer

__all__ = ["TokenEndpoint", "requested_scope"]

#: Compare-and-set retries: another request changed the grant between read and write.
_SWAP_TRIES = 5
#: New user codes drawn when one collides with a live grant's.
_USER_CODE_TRIES = 10


def requested_scope(form: Mapping[str, str]) -> tuple[str, ...] | None:
    """The ``scope`` parameter as a tuple without repeats; None when it was not sent."""
    raw = form.get("scope")
    return None if raw is None else tuple(dict.fromkeys(raw.split()))


class TokenEndpoint:
    """Everything the device authorization and token endpoints decide. ``issuer`` is the
    server's final public URL (without a trailing slash)."""

    def __init__(self, config: ServerConfig, storage: ServerStorage, signer: Signer,
                 issuer: str) -> None:
        self.config = config
        self.storage = storage
        self.signer = signer
        self.issuer = issuer
        self.lifetimes = config.lifetimes
        #: Where redemptions are counted (AuthorizationServer gives its /metrics').
        self.metrics: Metrics | None = None

    def __repr__(self) -> str:
        return f"TokenEndpoint(issuer={self.issuer!r})"

    def _granted_scope(self, client: ClientConfig, requested: tuple[str, ...] | None
                       ) -> tuple[str, ...]:
        if requested is None:
            # RFC 6749 §3.3: "If the client omits the scope parameter when requesting
            # authorization, the authorization server MUST either process the request using a
            # pre-defined default value or fail": the default is what the client may have.
            return client.scopes
        unknown = [s for s in requested if s not in client.scopes]
        if unknown:
            # RFC 6749 §5.2, invalid_scope: "The requested scope is invalid, unknown, malformed,
            # or exceeds the scope granted by the resource owner."
            raise refusal(InvalidScope, "this client may not ask for the scope "
                          f"{' '.join(unknown)[:100]!r}")
        return requested

    # -- device authorization (RFC 8628 §3.1, §3.2) ------------------------------------------------

    def device_authorization(self, client: ClientConfig, form: Mapping[str, str], now: float) -> Reply:
        if GRANT_DEVICE_CODE not in client.grants:
            raise refusal(UnauthorizedClient, "this client may not use the device grant")
        scope = self._granted_scope(client, requested_scope(form))
        for _ in range(_USER_CODE_TRIES):  # a user code collision with a live grant: draw again
            device_code, grant = new_device_grant(
                client_id=client.client_id, scope=scope, now=now,
                lifetime=self.lifetimes.device_code, interval=self.lifetimes.interval,
                user_codes=self.config.user_codes,
            )
            if self.storage.create_device_grant(grant):
                break
        else:  # pragma: no cover - 10 collisions in 2.56e10 (or 1e11) codes
            raise refusal(TemporarilyUnavailable, "no free user code")
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
            raise refusal(InvalidRequest, "grant_type is missing")
        if grant_type not in SUPPORTED_GRANTS:
            # RFC 6749 §5.2, unsupported_grant_type: "The authorization grant type is not
            # supported by the authorization server."
            raise refusal(UnsupportedGrantType, "supported: " + ", ".join(SUPPORTED_GRANTS))
        if grant_type not in client.grants:
            # RFC 6749 §5.2, unauthorized_client: "The authenticated client is not authorized to
            # use this authorization grant type."
            raise refusal(UnauthorizedClient, "this client may not use this grant type")
        if grant_type == GRANT_DEVICE_CODE:
            return self._device_grant(client, form, now)
        if grant_type == GRANT_REFRESH_TOKEN:
            return self._refresh_grant(client, form, now)
        assert grant_type == GRANT_CLIENT_CREDENTIALS
        scope = self._granted_scope(client, requested_scope(form))
        # RFC 6749 §4.4.3: "A refresh token SHOULD NOT be included."
        return self._issue(client, subject=client.client_id, scope=scope, now=now,
                           refresh=False, auth_time=None, claims={}, family_id=None)

    def _device_grant(self, client: ClientConfig, form: Mapping[str, str], now: float) -> Reply:
        if not form.get("device_code"):
            raise refusal(InvalidRequest, "device_code is missing")
        code_hash = hash_code(form["device_code"])
        replay_key = f"dc:{code_hash}"

        def fingerprint() -> str:  # only a redemption (or a code that came back) needs it
            return request_fingerprint(client.client_id, GRANT_DEVICE_CODE, None)

        for _ in range(_SWAP_TRIES):  # compare-and-set: another request changed the grant
            grant = self.storage.device_grant(code_hash)
            outcome = decide_poll(grant, client_id=client.client_id, now=now)
            if outcome.reused:
                # The poll retried because its answer was lost (after the commit) gets that
                # answer again within the grace. RFC 8628 §3.5 does not forbid it: the code is
                # still redeemed once, and only its holder (the client) can open the answer.
                again = self._replayed(replay_key, Sealer(form["device_code"]), fingerprint(), now)
                if again is not None:
                    return again
            if outcome.reused and grant is not None and grant.family_id:
                # A second redemption: whoever got the first answer may not be the client. Like a
                # reused refresh token, it ends the login (tokens already issued die).
                self.storage.revoke_family(grant.family_id, now + self.lifetimes.refresh_token)
            updated = outcome.updated
            if updated is None:
                assert outcome.error is not None
                raise refusal_for_code(outcome.error, outcome.description)
            if outcome.error is not None:
                if not self.storage.swap_device_grant(updated):
                    continue
                # authorization_pending or slow_down, now that the poll's time is written.
                raise refusal_for_code(outcome.error, outcome.description)
            family_id = secrets.token_urlsafe(12)
            updated = replace(updated, family_id=family_id)
            assert updated.subject is not None
            # Before the redemption: userinfo must find the login's claims once it has tokens (a
            # redemption that then loses the race leaves a record no token names, which expires).
            keep_login_claims(self.storage, family_id, updated.extra, now,
                              now + self.lifetimes.refresh_token)
            body, successor = self._answer(
                client, subject=updated.subject, scope=updated.scope, now=now,
                refresh=client.issues_refresh_tokens, auth_time=updated.auth_time,
                claims=updated.extra, family_id=family_id,
            )
            # The grant is consumed, its refresh token and the sealed answer stored in one step:
            # a storage error before the commit leaves the grant APPROVED (the retried poll
            # redeems it); an answer lost after it is given again to the identical retry.
            replay = Replay(key=replay_key, fingerprint=fingerprint(),
                            expires_at=now + self.lifetimes.retry_grace,
                            sealed=Sealer(form["device_code"]).seal(body),
                            family_id=family_id,
                            successor_hash=successor.token_hash if successor else None)
            if self.storage.redeem_device_grant(updated, successor, replay):
                if self.metrics is not None:  # here: a retry given the kept answer is no redemption
                    self.metrics.device_grant("redeemed")
                return Reply(200, body, NO_STORE)
        raise refusal(InvalidGrant, "the device_code is being redeemed concurrently")

    def _refresh_grant(self, client: ClientConfig, form: Mapping[str, str], now: float) -> Reply:
        if not form.get("refresh_token"):
            raise refusal(InvalidRequest, "refresh_token is missing")
        token_hash = hash_code(form["refresh_token"])
        sealer = Sealer(form["refresh_token"])
        record = self.storage.refresh_token(token_hash)
        # RFC 6749 §5.2, invalid_grant: "The provided authorization grant ... or refresh token is
        # invalid, expired, revoked, ... or was issued to another client."
        if record is None or record.client_id != client.client_id:
            raise refusal(InvalidGrant, "unknown refresh token")
        if record.expires_at <= now or self.storage.family_revoked(record.family_id):
            raise refusal(InvalidGrant, "the refresh token expired or was revoked")
        requested = requested_scope(form)
        scope = record.scope
        if requested is not None:
            # RFC 6749 §6: "The requested scope MUST NOT include any scope not originally granted
            # by the resource owner, and if omitted is treated as equal to the scope originally
            # granted".
            if not set(requested) <= set(record.scope):
                raise refusal(InvalidScope, "a refresh cannot widen the scope")
            scope = requested
        replay_key = f"rt:{token_hash}"
        fingerprint = request_fingerprint(client.client_id, GRANT_REFRESH_TOKEN, requested)
        if record.used_at is None:
            body, successor = self._answer(
                client, subject=record.subject, scope=scope, now=now, refresh=True,
                auth_time=record.auth_time, claims=record.claims, family_id=record.family_id,
                refresh_scope=record.scope)
            assert successor is not None
            # RFC 6749 §6: "The authorization server MAY revoke the old refresh token after
            # issuing a new refresh token to the client": spending it, storing the new one and
            # keeping the answer are one step, so a storage error leaves the old one working.
            if self.storage.rotate_refresh_token(token_hash, now, successor, self._replay(
                    replay_key, sealer, fingerprint, body, record.family_id, successor, now)):
                # The login lives on with the new token: so do its claims for userinfo.
                renew_login_claims(self.storage, record.family_id, record.claims, now,
                                   successor.expires_at)
                return Reply(200, body, NO_STORE)
        # Already used (or used by a concurrent request just now): the identical request retried
        # within the grace gets the answer it was given.
        again = self._replayed(replay_key, sealer, fingerprint, now)
        if again is not None:
            return again
        # OAuth 2.0 Security BCP §4.14.2 (refresh token rotation): "If a refresh token is
        # compromised and subsequently used by both the attacker and the legitimate client,
        # one of them will present an invalidated refresh token, which will inform the
        # authorization server of the breach" - so the whole family is revoked.
        self.storage.revoke_family(record.family_id, now + self.lifetimes.refresh_token)
        raise refusal(InvalidGrant, "the refresh token was already used")

    # -- the retry grace (.replay) -----------------------------------------------------------------

    def _replay(self, key: str, sealer: Sealer, fingerprint: str, body: Mapping[str, Any],
                family_id: str, successor: RefreshRecord, now: float) -> Replay:
        return Replay(key=key, fingerprint=fingerprint, expires_at=now + self.lifetimes.retry_grace,
                      sealed=sealer.seal(body), family_id=family_id,
                      successor_hash=successor.token_hash)

    def _replayed(self, key: str, sealer: Sealer, fingerprint: str, now: float) -> Reply | None:
        """The answer kept for this identical request, while the grace lasts and the client has
        not moved on (the refresh token it carried is unused); None: a reuse."""
        kept = self.storage.replay(key)
        if (kept is None or kept.expires_at <= now or kept.fingerprint != fingerprint
                or self.storage.family_revoked(kept.family_id)):
            return None
        if kept.successor_hash is not None:
            successor = self.storage.refresh_token(kept.successor_hash)
            if successor is None or successor.used_at is not None:
                return None
        body = sealer.open(kept.sealed)
        return None if body is None else Reply(200, body, NO_STORE)

    # -- the answer --------------------------------------------------------------------------------

    def _issue(
        self, client: ClientConfig, *, subject: str, scope: tuple[str, ...], now: float,
        refresh: bool, auth_time: float | None, claims: Mapping[str, str], family_id: str | None,
    ) -> Reply:
        """An answer that spends nothing (client credentials: no refresh token to store)."""
        body, successor = self._answer(client, subject=subject, scope=scope, now=now,
                                       refresh=refresh, auth_time=auth_time, claims=claims,
                                       family_id=family_id)
        assert successor is None
        return Reply(200, body, NO_STORE)

    def _answer(
        self, client: ClientConfig, *, subject: str, scope: tuple[str, ...], now: float,
        refresh: bool, auth_time: float | None, claims: Mapping[str, str], family_id: str | None,
        refresh_scope: tuple[str, ...] | None = None,
    ) -> tuple[dict[str, Any], RefreshRecord | None]:
        """The token answer, and the new refresh token's record for the caller to store (in the
        same step that spends the credential it was redeemed with)."""
        access, _ = self.signer.access_token(
            subject=subject, client_id=client.client_id, audience=self.config.audience or self.issuer,
            scope=scope, now=now, lifetime=self.lifetimes.access_token, auth_time=auth_time,
            family_id=family_id,
        )
        body: dict[str, Any] = {"access_token": access, "token_type": "Bearer",
                                "expires_in": self.lifetimes.access_token, "scope": " ".join(scope)}
        successor = None
        if refresh and family_id is not None:
            refresh_token = secrets.token_urlsafe(32)
            successor = RefreshRecord(
                token_hash=hash_code(refresh_token), family_id=family_id,
                client_id=client.client_id, subject=subject, scope=refresh_scope or scope,
                created_at=now, expires_at=now + self.lifetimes.refresh_token, auth_time=auth_time,
                claims=dict(claims),
            )
            body["refresh_token"] = refresh_token
        if "openid" in scope and family_id is not None:
            body["id_token"] = self.signer.id_token(
                subject=subject, client_id=client.client_id, now=now,
                lifetime=self.lifetimes.id_token, auth_time=auth_time, claims=claims, scope=scope,
            )
        return body, successor
