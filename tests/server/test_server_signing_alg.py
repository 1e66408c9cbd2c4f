"""``signing_alg``: ES256 (a P-256 key) or RS256 (the default) for access tokens and id_tokens.

A real server (ServerThread on a real SQLite file) signs with the configured algorithm, publishes
the key with that ``alg`` and discovery says so; keyturn's own client validates its id_tokens and
its introspection accepts its access tokens. Changing ``signing_alg`` rotates: a key of the new
type signs, the old one stays published with its own ``alg``, and its tokens stay valid; a token
whose header names an algorithm other than its key's is refused (RFC 8725 §3.1).
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import replace

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from keyturn import DeviceCode, MemoryStore
from keyturn.errors import ConfigError
from keyturn.protocol.idtoken import KeySetCache, validate_id_token_flow
from keyturn.protocol.metadata import discover
from keyturn.server.config import parse_config
from keyturn.server.keys import REFRESH_SECONDS, KeyPolicy, Keyring, KeyStore, decode_keyring
from keyturn.server.passwords import hash_password
from keyturn.server.replay import Sealer
from keyturn.server.runner import ServerThread
from keyturn.server.storage.sqlite import SQLiteStorage
from keyturn.transport import run
from tests.support.serverkit import basic, page_approve

PASSWORD = "carol-alg-pw"
SECRET = "rs-alg-secret-1234"


def config(alg: str | None) -> dict:
    data: dict = {
        "lifetimes": {"interval": 1},
        "clients": {
            "cli": {"grants": ["device_code", "refresh_token"],
                    "scopes": ["openid", "profile", "offline_access"]},
            "rs": {"grants": ["client_credentials"], "scopes": ["introspect"],
                   "secret_hash": hash_password(SECRET, n=2**10)},
        },
        "users": {"carol": {"password_hash": hash_password(PASSWORD, n=2**10), "name": "Carol"}},
    }
    if alg is not None:
        data["signing_alg"] = alg
    return data


def header(token: str) -> dict:
    head = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))


def login(issuer: str) -> DeviceCode:
    return DeviceCode(issuer=issuer, client_id="cli", store=MemoryStore(), scope="openid profile",
                      prompt=lambda v: page_approve(issuer, v.user_code, username="carol",
                                                    password=PASSWORD))


def validate(issuer: str, id_token: str) -> dict:
    with httpx.Client(timeout=10) as client:
        metadata = run(discover(issuer, allow_http=True), client)
        return run(validate_id_token_flow(id_token, metadata=metadata, client_id="cli",
                                          now=time.time(), keys=KeySetCache()), client)


def introspect(issuer: str, token: str) -> dict:
    return httpx.post(f"{issuer}/introspect", data={"token": token},
                      headers=basic("rs", SECRET)).json()


def test_es256_signs_both_tokens_and_is_what_the_jwks_and_discovery_say(tmp_path):
    with ServerThread(parse_config(config("ES256")), data_dir=tmp_path) as running:
        issuer = running.issuer
        token = login(issuer).get_token()
        assert header(token.id_token)["alg"] == header(token.access_token)["alg"] == "ES256"
        assert validate(issuer, token.id_token)["sub"] == "carol"
        assert introspect(issuer, token.access_token)["active"] is True
        keys = httpx.get(f"{issuer}/jwks").json()["keys"]
        assert [(key["kty"], key["crv"], key["alg"]) for key in keys] == [("EC", "P-256", "ES256")]
        assert "d" not in keys[0]  # the public half only
        # A resource server validating on its own, with the published key.
        claims = jwt.decode(token.access_token, KeySet.import_key_set({"keys": keys}),
                            algorithms=["ES256"]).claims
        assert claims["sub"] == "carol" and header(token.access_token)["typ"] == "at+jwt"
        metadata = httpx.get(f"{issuer}/.well-known/openid-configuration").json()
        assert metadata["id_token_signing_alg_values_supported"] == ["ES256"]


def test_rs256_is_the_default(tmp_path):
    with ServerThread(parse_config(config(None)), data_dir=tmp_path) as running:
        answer = httpx.post(f"{running.issuer}/token", headers=basic("rs", SECRET),
                            data={"grant_type": "client_credentials"})
        assert header(answer.json()["access_token"])["alg"] == "RS256"
        keys = httpx.get(f"{running.issuer}/jwks").json()["keys"]
        assert [(key["kty"], key["alg"]) for key in keys] == [("RSA", "RS256")]


def test_changing_signing_alg_rotates_and_keeps_the_old_tokens_valid(tmp_path):
    with ServerThread(parse_config(config("RS256")), data_dir=tmp_path) as running:
        before = login(running.issuer).get_token()
        issuer = running.issuer
    with ServerThread(replace(parse_config(config("ES256")), issuer=issuer),
                      data_dir=tmp_path) as running:
        assert running.issuer == issuer
        local = f"http://127.0.0.1:{running.port}"
        keys = httpx.get(f"{local}/jwks").json()["keys"]
        assert [key["alg"] for key in keys] == ["ES256", "RS256"]  # the new one signs
        metadata = httpx.get(f"{local}/.well-known/openid-configuration").json()
        assert metadata["id_token_signing_alg_values_supported"] == ["ES256", "RS256"]
        after = httpx.post(f"{local}/token", headers=basic("rs", SECRET),
                           data={"grant_type": "client_credentials"}).json()["access_token"]
        assert header(after)["alg"] == "ES256"
        assert header(after)["kid"] != header(before.access_token)["kid"]
        for token in (before.access_token, after):
            assert introspect(local, token)["active"] is True


def test_a_header_alg_other_than_its_keys_is_refused(tmp_path):
    """An ES256 token re-labelled RS256 (same kid, same signature) is not a token of this server:
    the alg of the header must be the key's own."""
    with ServerThread(parse_config(config("ES256")), data_dir=tmp_path) as running:
        token = httpx.post(f"{running.issuer}/token", headers=basic("rs", SECRET),
                           data={"grant_type": "client_credentials"}).json()["access_token"]
        assert introspect(running.issuer, token)["active"] is True
        forged_header = {**header(token), "alg": "RS256"}
        head = base64.urlsafe_b64encode(json.dumps(forged_header).encode()).rstrip(b"=").decode()
        forged = ".".join([head, *token.split(".")[1:]])
        assert introspect(running.issuer, forged) == {"active": False}


@pytest.mark.parametrize("value", ["HS256", "none", "EdDSA", 256])
def test_an_unknown_signing_alg_is_refused(value):
    with pytest.raises(ConfigError, match="signing_alg must be one of RS256, ES256"):
        parse_config({**config(None), "signing_alg": value})


def test_a_sealed_answer_is_jwe_compact_dir_a256gcm():
    """replay.py writes the JWE itself: what it seals opens with a JWE library, and the other way
    round (the format of the answers kept for retries did not change)."""
    import hashlib
    import hmac

    from joserfc import jwe
    from joserfc.jwk import OctKey

    sealer = Sealer("a-refresh-token")
    key = OctKey.import_key(hmac.new(b"a-refresh-token", b"keyturn-server retry answer v1",
                                     hashlib.sha256).digest())
    sealed = sealer.seal({"access_token": "x", "n": 1})
    assert json.loads(jwe.decrypt_compact(sealed, key).plaintext or b"") == {"access_token": "x",
                                                                            "n": 1}
    theirs = jwe.encrypt_compact({"alg": "dir", "enc": "A256GCM"}, b'{"a": 2}', key)
    assert sealer.open(theirs) == {"a": 2}
    assert Sealer("another-token").open(sealed) is None
    assert sealer.open(sealed[:-4] + "AAAA") is None


def test_replicas_of_different_signing_alg_do_not_churn_the_keyring(tmp_path):
    # A rolling change of signing_alg: two replicas, RS256 and ES256, on one SQLite file. Each
    # signs with its own type's key, the ring stays at two keys over many reads, and the key the
    # other retired stays published while its replica signs with it (review R19 of 12.3, M1).
    database = tmp_path / "keyturn-server.sqlite3"
    clock = [5_000_000.0]
    retention = 60  # a few reads' worth: the loop below outlasts it three times
    rs = Keyring(KeyStore(SQLiteStorage(database), KeyPolicy(retention=retention, alg="RS256")),
                 clock=lambda: clock[0])
    es = Keyring(KeyStore(SQLiteStorage(database), KeyPolicy(retention=retention, alg="ES256")),
                 clock=lambda: clock[0])
    reader = SQLiteStorage(database)
    signing = {(rs.current.kid, rs.current.alg), (es.current.kid, es.current.alg)}
    assert {alg for _, alg in signing} == {"RS256", "ES256"}
    for _ in range(3 * (retention + int(REFRESH_SECONDS)) // int(REFRESH_SECONDS)):  # 9 reads each
        clock[0] += REFRESH_SECONDS
        for replica in (rs, es):
            current = replica.current  # the due re-read
            assert (current.kid, current.alg) in signing  # no new key
            published = {key.kid: key for key in replica.published()}
            # Its tokens (valid for `retention`) outlive no key of theirs.
            drop_at = published[current.kid].drop_at
            assert drop_at is None or drop_at >= clock[0] + REFRESH_SECONDS + retention
        ring = decode_keyring(reader.setting("signing_key", lambda: "unused"))
        assert len(ring) == 2
    # The change done (the RS256 replica gone): its key leaves once its tokens have expired.
    clock[0] += REFRESH_SECONDS + retention + 2 * REFRESH_SECONDS
    assert [key.alg for key in es.published()] == ["ES256"]
