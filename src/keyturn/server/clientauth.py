"""Who is calling the token, device, revocation and introspection endpoints (RFC 6749 §2.3).

Accepted: ``client_secret_basic``, ``client_secret_post``, and ``none`` (a public client names
itself with ``client_id``). Real clients differ in how they send a public client's id, so all of
these are one and the same: ``client_id`` in the body; Basic with an empty password
(requests-oauthlib); both at once (openid-client). A Basic header and a body ``client_id`` that
disagree, or a secret sent both ways, are refused. A public client's ``client_secret`` in the body
is ignored (cegal-keystoneauth sends a random one); a non-empty Basic password is refused.

The Authorization header and the secret are held as :class:`~keyturn.secret.Secret` in every frame
here, and the form is :class:`~keyturn.secret.SecretFields`: a server traceback rendered with its
locals shows neither.

A confidential client's secret is checked against a slow hash (scrypt: 0.1 s and 32 MiB), so
wrong secrets are counted (:class:`SecretAttempts`, kept in the server's storage): past the
limits, a secret is no longer hashed at all, which bounds both the CPU an unauthenticated caller
can burn and the guesses it can make. A secret this process has already verified is still
accepted (it costs no hash), so a client that was working is not locked out by someone else's
guesses.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Protocol
from urllib.parse import unquote

from ..errors import InvalidClient, InvalidRequest
from ..secret import Secret
from .config import ClientConfig
from .errors import refusal
from .passwords import verify_password

__all__ = ["SecretAttempts", "authenticate_client"]


def _invalid_client(description: str) -> InvalidClient:
    # RFC 6749 §5.2, invalid_client: "Client authentication failed (e.g., unknown client, no
    # client authentication included, or unsupported authentication method). The authorization
    # server MAY return an HTTP 401 (Unauthorized) status code".
    return refusal(InvalidClient, description)


def _basic(header: Secret[str]) -> tuple[str, Secret[str]] | None:
    """(client_id, secret) from a Basic header; None for another scheme."""
    if header.reveal().partition(" ")[0].lower() != "basic":
        return None
    decoded = _decoded(header)
    if decoded is None or ":" not in decoded.reveal():
        raise _invalid_client("the Authorization header is not valid Basic credentials")
    # RFC 6749 §2.3.1: "The client identifier is encoded using the
    # "application/x-www-form-urlencoded" encoding algorithm ... and the encoded value is used as
    # the username; the client password is encoded using the same algorithm".
    return (_form_decoded(decoded.reveal().partition(":")[0]),
            Secret(_form_decoded(decoded.reveal().partition(":")[2])))


def _decoded(header: Secret[str]) -> Secret[str] | None:
    """The Basic credentials as text, or None when they are not base64 of UTF-8. (None, not an
    exception: the caller raises from a frame that holds only Secrets.)"""
    try:
        return Secret(base64.b64decode(header.reveal().partition(" ")[2].strip(), validate=True
                                       ).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        # ValueError, not only binascii.Error: b64decode refuses a str with a non-ASCII character
        # (a header byte >= 0x80, which starlette decodes as latin-1) with a bare ValueError.
        return None


def _form_decoded(text: str) -> str:
    return unquote(text.replace("+", " "))


class SecretAttempts(Protocol):
    """Counts the checks of confidential clients' secrets against their hashes, for one request
    (its caller's address, its time): :mod:`.service` keeps the counts in the storage."""

    def take(self, client_id: str) -> bool:
        """Count one check *before* it is made; False, with nothing counted, past a limit."""

    def give_back(self, client_id: str) -> None:
        """The secret was right: the check :meth:`take` counted was no failure."""


class _VerifiedSecrets:
    """Secrets already checked against a hash, by a keyed digest: checking scrypt on every token
    request would cost 0.1 s each. Only a digest is kept, never the secret; a bounded LRU."""

    def __init__(self, size: int = 1024) -> None:
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._size = size
        # Requests are checked on the threadpool: without it, one thread's move_to_end could meet
        # another's eviction of the same digest (a KeyError, a 500).
        self._lock = threading.Lock()

    @staticmethod
    def _digest(client: ClientConfig, secret: Secret[str]) -> bytes:
        assert client.secret_hash is not None
        return hashlib.sha256(b"\0".join(
            (client.client_id.encode(), client.secret_hash.encode(), secret.reveal().encode()))
        ).digest()

    def known(self, client: ClientConfig, secret: Secret[str]) -> bool:
        """True if this secret was verified before (no hash is checked)."""
        digest = self._digest(client, secret)
        with self._lock:
            if digest in self._seen:
                self._seen.move_to_end(digest)
                return True
        return False

    def verify(self, client: ClientConfig, secret: Secret[str]) -> bool:
        """Check the secret against the client's hash (slow), and remember it if it is right."""
        assert client.secret_hash is not None
        if not verify_password(secret.reveal(), client.secret_hash):  # slow: outside the lock
            return False
        digest = self._digest(client, secret)
        with self._lock:
            self._seen[digest] = None
            if len(self._seen) > self._size:
                self._seen.popitem(last=False)
        return True


_verified = _VerifiedSecrets()


def authenticate_client(
    clients: Mapping[str, ClientConfig], authorization: str | Secret[str] | None,
    form: Mapping[str, str], attempts: SecretAttempts | None = None,
) -> ClientConfig:
    """The calling client; else :class:`~keyturn.errors.InvalidClient` (401) or
    :class:`~keyturn.errors.InvalidRequest` (credentials sent two ways at once). May hash, and
    ``attempts`` may reach the storage: call it off the event loop. Without ``attempts``, secret
    checks are not limited.

    Give the form as :class:`~keyturn.secret.SecretFields` (``read_form`` does).
    """
    authorization = Secret.optional(authorization)  # first: this frame is in every traceback
    basic = _basic(authorization) if authorization else None
    body_id = form.get("client_id") or None
    body_secret = Secret(form["client_secret"]) if form.get("client_secret") else None
    secret: Secret[str] | None
    header_secret: Secret[str] | None = None
    if basic is not None:
        client_id, header_secret = basic[0], (basic[1] or None)
        if body_id is not None and body_id != client_id:
            raise refusal(InvalidRequest, "client_id in the body and in the Authorization "
                          "header differ")
        if header_secret is not None and body_secret is not None:
            # RFC 6749 §2.3: "The client MUST NOT use more than one authentication method in
            # each request."
            raise refusal(InvalidRequest, "the client secret was sent twice")
        secret = header_secret or body_secret
    else:
        client_id, secret = body_id or "", body_secret
    if not client_id:
        raise _invalid_client("no client authentication included (client_id is missing)")
    client = clients.get(client_id)
    if client is None:
        raise _invalid_client("unknown client")
    if client.public:
        if header_secret is not None:
            # A password in Basic is an authentication method (RFC 6749 §2.3.1) this client
            # cannot have: refused, so a confidential client misconfigured as public is noticed.
            raise _invalid_client("this is a public client: it has no secret")
        # A client_secret in the body of a public client is ignored: cegal-keystoneauth sends a
        # random one on every refresh. RFC 6749 §2.3.1 calls client_secret_post "NOT
        # RECOMMENDED"; it authenticates nothing for a client that has no secret, and refusing it
        # would end that client's refreshes (a new device login each time).
        return client
    if secret is None:
        raise _invalid_client("this client must authenticate (client_secret_basic or "
                              "client_secret_post)")
    if _verified.known(client, secret):
        # Before the limits: a client that already authenticated keeps working while someone
        # else's wrong guesses have used them up (and this costs no hash).
        return client
    if attempts is not None and not attempts.take(client.client_id):
        # Past a limit nothing is hashed, and the answer is the one a wrong secret gets: a guess
        # made now learns nothing, even when it is right.
        raise _invalid_client("client authentication failed")
    if not _verified.verify(client, secret):
        raise _invalid_client("client authentication failed")
    if attempts is not None:
        attempts.give_back(client.client_id)
    return client
