"""The demo configuration offers a confidential client, so the README's ClientCredentials example
runs against ``keyturn serve`` (issue 11.6): its made-up secret gets a token with
client_credentials, a wrong one gets 401 invalid_client."""

from __future__ import annotations

import httpx
import jwt

from keyturn.server.config import demo_config
from keyturn.server.passwords import verify_password
from keyturn.server.runner import ServerThread

DEMO_SERVICE_CLIENT = "batch-job"  # the client_id of the README's ClientCredentials example


def test_demo_config_has_a_confidential_client_credentials_client() -> None:
    config = demo_config()
    assert DEMO_SERVICE_CLIENT in config.clients, list(config.clients)
    client = config.clients[DEMO_SERVICE_CLIENT]
    assert client.grants == ("client_credentials",) and not client.public
    assert config.demo_client_secret and client.secret_hash
    assert config.demo_client_secret not in client.secret_hash
    assert client.secret_hash.startswith("scrypt$")
    assert verify_password(config.demo_client_secret, client.secret_hash)
    assert config.demo_client_secret not in repr(config)
    # Made up at each start, like the demo password.
    assert demo_config().demo_client_secret != config.demo_client_secret


def test_demo_client_gets_a_token_and_a_wrong_secret_gets_401() -> None:
    config = demo_config()
    secret = getattr(config, "demo_client_secret", None)
    assert secret is not None
    with ServerThread(config) as running:
        doc = httpx.get(f"{running.issuer}/.well-known/openid-configuration").json()
        assert "client_credentials" in doc["grant_types_supported"]
        ok = httpx.post(f"{running.issuer}/token",
                        data={"grant_type": "client_credentials", "scope": "api:read api:write"},
                        auth=(DEMO_SERVICE_CLIENT, secret), timeout=30)
        assert ok.status_code == 200, ok.text
        body = ok.json()
        assert body["token_type"].lower() == "bearer" and body["scope"] == "api:read api:write"
        claims = jwt.decode(body["access_token"], options={"verify_signature": False})
        assert claims["sub"] == DEMO_SERVICE_CLIENT and claims["client_id"] == DEMO_SERVICE_CLIENT
        wrong = httpx.post(f"{running.issuer}/token", data={"grant_type": "client_credentials"},
                           auth=(DEMO_SERVICE_CLIENT, secret + "x"), timeout=30)
        assert wrong.status_code == 401, wrong.text
        assert wrong.json()["error"] == "invalid_client"
        assert secret not in wrong.text
        # The public demo client may not use it.
        public = httpx.post(f"{running.issuer}/token",
                            data={"grant_type": "client_credentials", "client_id": "demo"},
                            timeout=30)
        assert public.status_code in (400, 401) and secret not in public.text
