"""The TLS context of keyturn's HTTP clients: built once per process for each (verify, cert).

Standard library (and certifi's CA bundle) only; :mod:`keyturn.transport` gives the context to the
httpx clients it makes.
"""

from __future__ import annotations

import os
import ssl
from typing import TypeAlias

from .errors import ConfigError

__all__ = ["ClientCert", "TlsVerify", "build_tls_context", "shared_tls_context"]

#: ``verify=``: True (certifi's CAs), False (no check), a CA file or directory, or a ready
#: SSLContext.
TlsVerify: TypeAlias = bool | str | os.PathLike[str] | ssl.SSLContext
#: ``cert=``, a client certificate for mutual TLS (RFC 8705): one PEM file holding certificate
#: and key, or (certificate file, key file[, key password]).
ClientCert: TypeAlias = str | os.PathLike[str] | tuple[str, str] | tuple[str, str, str]

_TLS_CONTEXTS: dict[tuple[TlsVerify, ClientCert | None], ssl.SSLContext] = {}


def shared_tls_context(verify: TlsVerify, cert: ClientCert | None) -> ssl.SSLContext:
    """One context per process for each (verify, cert): every source of a process pays the CA
    bundle load once. A context given by the caller is used as it is."""
    if isinstance(verify, ssl.SSLContext):
        return build_tls_context(verify, cert)
    key = (verify, tuple(cert) if isinstance(cert, list) else cert)
    try:
        context = _TLS_CONTEXTS.get(key)
    except TypeError:  # unhashable settings: not shared
        return build_tls_context(verify, cert)
    if context is None:
        context = _TLS_CONTEXTS.setdefault(key, build_tls_context(verify, cert))
    return context


def build_tls_context(verify: TlsVerify, cert: ClientCert | None) -> ssl.SSLContext:
    """``verify``: True (certifi's CAs, as httpx), False, a CA file or directory, or a ready
    SSLContext. ``cert``: a client certificate (RFC 8705 mutual TLS) as a path to a PEM holding
    certificate and key, or a tuple (certificate, key[, password])."""
    if isinstance(verify, ssl.SSLContext):
        context = verify
    elif verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif verify is True:
        import certifi

        context = ssl.create_default_context(cafile=certifi.where())
    elif isinstance(verify, (str, os.PathLike)):
        path = os.fspath(verify)
        if not os.path.exists(path):
            raise ConfigError(f"verify={path!r}: no such CA file or directory")
        context = (ssl.create_default_context(capath=path) if os.path.isdir(path)
                   else ssl.create_default_context(cafile=path))
    else:
        raise ConfigError("verify= must be True, False, a CA file or directory, or an SSLContext")
    if cert is not None:
        parts = (cert,) if isinstance(cert, (str, os.PathLike)) else tuple(cert)
        try:
            context.load_cert_chain(*parts)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cert= could not be loaded ({exc.__class__.__name__}): give the "
                              "client certificate and its key as PEM files") from None
    return context
