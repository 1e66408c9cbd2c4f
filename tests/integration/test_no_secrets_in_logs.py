"""Secrets never reach a log record — keyturn's, httpx's or httpcore's — even at DEBUG."""

from __future__ import annotations

import logging

import httpx

from keyturn import ClientCredentials, InvalidClient, MemoryStore, RefreshToken
from tests.support.resource_server import ResourceServer


def test_no_secret_in_any_log_record(fresh_stats, caplog):
    provider = fresh_stats
    caplog.set_level(logging.DEBUG)
    client = provider.clients["post"]
    source = ClientCredentials(issuer=provider.issuer, client_id="post",
                               client_secret=client.client_secret, auth_method="client_secret_post",
                               store=MemoryStore())
    rt_source = RefreshToken(issuer=provider.issuer, client_id="public",
                             refresh_token=provider.mint_refresh_token("public"), store=MemoryStore())
    jwt_client = provider.clients["pk-es256"]
    jwt_source = ClientCredentials(issuer=provider.issuer, client_id="pk-es256",
                                   private_key=jwt_client.private_key, store=MemoryStore())
    basic = provider.clients["basic"]
    api = ResourceServer(provider.introspection_endpoint, "basic", basic.client_secret)
    secrets = [client.client_secret]
    with api.running(), httpx.Client(auth=source, trust_env=False) as http:
        assert http.get(api.url).status_code == 200
        token = source.get_token()
        rt = rt_source.get_token()
        jwt_token = jwt_source.get_token()
        secrets += [token.access_token, rt.access_token, rt.refresh_token, jwt_token.access_token,
                    jwt_client.private_key["d"]]
        wrong = ClientCredentials(issuer=provider.issuer, client_id="post",
                                  client_secret="wrong-secret-value-123",
                                  auth_method="client_secret_post", store=MemoryStore())
        secrets.append("wrong-secret-value-123")
        try:
            wrong.get_access_token()
        except InvalidClient as exc:
            logging.getLogger("test").exception("expected failure: %s", exc)
    text = "\n".join(record.getMessage() + str(record.exc_info) for record in caplog.records)
    assert any(r.name.startswith("keyturn") for r in caplog.records)  # something was logged
    assert any(r.name.startswith("httpx") for r in caplog.records)
    for secret in secrets:
        assert secret and secret not in text
