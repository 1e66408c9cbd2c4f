"""Client authentication at the token endpoint (RFC 6749 §2.3, RFC 7523 §2.2, RFC 8705 §2).

A :class:`ClientAuth` adds the client's credentials to a form request: it never sends a request
itself. The secret and key stay inside it (the secret as a :class:`~keyturn.secret.Secret`); its
repr shows only the method and client id. What it adds goes into the request's
:class:`~keyturn.secret.SecretFields`, which show it only as a tag.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeAlias
from urllib.parse import quote

from ..errors import ConfigError
from ..secret import Secret
from .jwt import SigningKey, build_assertion, load_secret_key, secret_signing_key
from .wire import auth_method_for

if TYPE_CHECKING:
    from joserfc.jwk import Key as JoseKey
else:
    # joserfc is imported only to sign (protocol/jwt.py), never to read an annotation: at run
    # time (typing.get_type_hints) a joserfc key object is spelled Any.
    JoseKey = Any

__all__ = ["AUTH_METHODS", "ClientAuth", "PrivateKey", "basic_credentials"]

#: What ``private_key=`` (and JwtBearer's ``assertion_key=``) may be: a PEM (str or bytes), a JWK
#: (a dict, or its JSON as a str), a joserfc key object, or a Secret holding one of these
#: (:func:`keyturn.protocol.jwt.load_signing_key` reads each).
PrivateKey: TypeAlias = str | bytes | Mapping[str, Any] | JoseKey | Secret[Any]

AUTH_METHODS: Final = (
    "none",
    "client_secret_basic",
    "client_secret_post",
    "client_secret_jwt",
    "private_key_jwt",
    "tls_client_auth",
)

_ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def basic_credentials(client_id: str, client_secret: str) -> str:
    """The Authorization header value for client_secret_basic.

    RFC 6749 §2.3.1: "The client identifier is encoded using the application/x-www-form-urlencoded
    encoding algorithm ..., and the encoded value is used as the username; the client password is
    encoded using the same algorithm and used as the password."
    """
    user = quote(client_id, safe="").replace("%20", "+")
    password = quote(client_secret, safe="").replace("%20", "+")
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


@dataclass(frozen=True, repr=False)
class ClientAuth:
    """How a client proves who it is. Build with :meth:`create`, which checks the combination."""

    client_id: str
    method: str
    _secret: Secret[str] | None = field(default=None)
    _key: SigningKey | None = field(default=None)

    def __repr__(self) -> str:
        return f"ClientAuth(client_id={self.client_id!r}, method={self.method!r})"

    def __reduce__(self) -> Any:
        raise TypeError("a keyturn ClientAuth holds a secret and cannot be pickled")

    @classmethod
    def create(
        cls,
        *,
        client_id: str | None,
        client_secret: str | Secret[str] | None = None,
        private_key: PrivateKey | None = None,
        auth_method: str | None = None,
        signing_alg: str | None = None,
        has_client_cert: bool = False,
    ) -> ClientAuth:
        # First: from here on this frame, which every ConfigError below has in its traceback,
        # holds the secrets only as tags.
        client_secret = Secret.optional(client_secret)
        private_key = Secret.optional(private_key)
        if not client_id:
            raise ConfigError("client_id= is required")
        # The one choice of a default method, which a profile makes too for the cache key.
        method = auth_method_for(auth_method, client_secret=client_secret, private_key=private_key,
                                 has_client_cert=has_client_cert)
        if method not in AUTH_METHODS:
            raise ConfigError(f"auth_method={method!r} is not one of {', '.join(AUTH_METHODS)}")
        if method in ("client_secret_basic", "client_secret_post", "client_secret_jwt"):
            if not client_secret:
                raise ConfigError(f"auth_method={method!r} needs client_secret=")
            key = secret_signing_key(client_secret, alg=signing_alg or "HS256") if (
                method == "client_secret_jwt") else None
            return cls(client_id, method, client_secret, key)
        if method == "private_key_jwt":
            if private_key is None:
                raise ConfigError("auth_method='private_key_jwt' needs private_key= (PEM or JWK)")
            return cls(client_id, method, None, load_secret_key(private_key, alg=signing_alg))
        if method == "tls_client_auth" and not has_client_cert:
            raise ConfigError("auth_method='tls_client_auth' needs cert= (client certificate)")
        return cls(client_id, method)

    def apply(
        self, form: MutableMapping[str, Any], headers: MutableMapping[str, Any], *,
        audience: str, now: float,
    ) -> None:
        """Add the credentials to a token-endpoint request. ``audience`` is the endpoint URL.

        Give :class:`~keyturn.secret.SecretFields` (the flows do): what is added is a secret.
        """
        if self.method == "client_secret_basic":
            assert self._secret is not None
            headers["Authorization"] = basic_credentials(self.client_id, self._secret.reveal())
            return
        # Every other method names the client in the body (RFC 6749 §2.3.1 for post; §3.2.1 for
        # public clients; RFC 8705 §2 for mutual TLS).
        form["client_id"] = self.client_id
        if self.method == "client_secret_post":
            assert self._secret is not None
            form["client_secret"] = self._secret.reveal()
        elif self.method in ("client_secret_jwt", "private_key_jwt"):
            assert self._key is not None
            # RFC 7523 §3: iss and sub are the client_id; aud identifies the authorization server,
            # for which the token endpoint URL is the value every server accepts.
            form["client_assertion_type"] = _ASSERTION_TYPE
            form["client_assertion"] = build_assertion(
                self._key, issuer=self.client_id, subject=self.client_id, audience=audience,
                now=now,
            )

