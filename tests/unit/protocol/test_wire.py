"""The protocol facts the registry and the cache key read (keyturn.protocol.wire): the wire grant
types and the default client authentication method, defined once, in protocol/."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from keyturn import registry
from keyturn.protocol import authcode, grants, wire
from keyturn.secret import Secret


@pytest.mark.parametrize(("given", "secret", "key", "cert", "chosen"), [
    ("client_secret_post", "s", None, False, "client_secret_post"),
    (None, "s", "pem", True, "private_key_jwt"),
    (None, Secret("s"), None, True, "client_secret_basic"),
    (None, Secret(""), None, True, "tls_client_auth"),
    (None, None, None, False, "none"),
])
def test_the_default_client_auth_method(given: str | None, secret: object, key: object,
                                        cert: bool, chosen: str) -> None:
    assert wire.auth_method_for(given, client_secret=secret, private_key=key,
                                has_client_cert=cert) == chosen


def test_the_registry_and_the_token_requests_send_the_same_grant_types() -> None:
    assert {row.name: row.grant_type for row in registry.GRANT_ROWS if row.grant_type} == {
        "client_credentials": grants.GRANT_CLIENT_CREDENTIALS,
        "refresh_token": grants.GRANT_REFRESH_TOKEN,
        "device_code": grants.GRANT_DEVICE_CODE,
        "authorization_code": authcode.GRANT_AUTHORIZATION_CODE,
        "jwt_bearer": grants.GRANT_JWT_BEARER,
        "token_exchange": grants.GRANT_TOKEN_EXCHANGE,
    }
    assert grants.GRANT_DEVICE_CODE is wire.GRANT_DEVICE_CODE


def test_wire_imports_nothing_but_itself() -> None:
    # The fast path imports it (through the registry and the cache key): not even typing.
    code = ("import sys; before = set(sys.modules); import keyturn.protocol.wire; "
            "print(sorted(set(sys.modules) - before))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    imported = set(ast.literal_eval(out.stdout))
    assert imported <= {"__future__", "keyturn", "keyturn.protocol", "keyturn.protocol.wire"}
