"""Hostile JSON at every parser: nested 100,000 deep, nested just past the limit, NaN, 1e999999,
numbers of too many digits, bytes that are not UTF-8, unpaired surrogates, JWTs whose header or
payload is such JSON. Each parser answers its typed error (InvalidResponse, DiscoveryError,
InvalidIdToken, ConfigError; a damaged token file is quarantined) with a message that says what
is wrong and holds no secret — never a RecursionError, never a value that breaks later."""

from __future__ import annotations

import base64
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from joserfc import jws
from joserfc.jwk import ECKey

from keyturn import strictjson
from keyturn.config import load_profile
from keyturn.errors import (
    ConfigError,
    DiscoveryError,
    InvalidIdToken,
    InvalidResponse,
    KeyturnError,
)
from keyturn.protocol.client_auth import ClientAuth
from keyturn.protocol.device import DeviceAuthorization, device_authorization_flow, device_poll_flow
from keyturn.protocol.grants import jwt_expiry, parse_token_response
from keyturn.protocol.http import HttpResponse, Wait
from keyturn.protocol.idtoken import KeySetCache, fetch_jwks_flow, validate_id_token_flow
from keyturn.protocol.jwt import load_signing_key
from keyturn.protocol.metadata import ServerMetadata, discover
from keyturn.protocol.revocation import revocation_flow
from keyturn.protocol.userinfo import userinfo_flow
from keyturn.stores.file import FileStore, file_name
from keyturn.stores.redis import RedisStore
from keyturn.token import Token

SECRET = "AT-secret-hostile-4711"
URL = "https://id.example.org/token"
#: Far past any recursion limit, and (base64url-encoded) still under joserfc's 128,000-byte limit
#: of a JWS payload, so that a signed id_token can carry it to keyturn's own parser.
DEEP = 40_000
JUST_TOO_DEEP = strictjson.MAX_DEPTH + 1  # parses with json.loads, refused by keyturn


def nested_arrays(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def nested_objects(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


#: (body, words the message must contain). Every body carries SECRET where a token would be.
HOSTILE: dict[str, tuple[bytes, str]] = {
    "arrays-40000": (nested_arrays(DEEP), "deeper than 64 levels"),
    "objects-10000": (nested_objects(DEEP // 4), "deeper than 64 levels"),
    "unclosed-40000": (b"[" * DEEP, "deeper than 64 levels"),
    "inside-a-token-response": (
        b'{"access_token":"' + SECRET.encode() + b'","token_type":"Bearer","extra":'
        + nested_arrays(DEEP) + b"}", "deeper than 64 levels"),
    "just-too-deep": (
        b'{"access_token":"' + SECRET.encode() + b'","extra":' + nested_arrays(JUST_TOO_DEEP)
        + b"}", "deeper than 64 levels"),
    "nan": (b'{"access_token":"' + SECRET.encode() + b'","expires_in":NaN}', "NaN"),
    "infinity": (b'{"access_token":"' + SECRET.encode() + b'","x":-Infinity}', "Infinity"),
    "1e999999": (b'{"access_token":"' + SECRET.encode() + b'","expires_in":1e999999}',
                 "beyond the range of a double"),
    "5000-digits": (b'{"access_token":"' + SECRET.encode() + b'","expires_in":' + b"9" * 5000
                    + b"}", "too many digits"),
    "not-utf-8": (b'{"access_token":"' + SECRET.encode() + b'\xff\xfe"}', "not UTF-8"),
    "lone-surrogate": (b'{"access_token":"' + SECRET.encode() + b'\\ud800"}',
                       "unpaired UTF-16 surrogate"),
}
CASES = pytest.mark.parametrize("body,words", HOSTILE.values(), ids=HOSTILE.keys())


def answer(status: int, body: bytes, url: str = URL) -> HttpResponse:
    return HttpResponse(status, {"content-type": "application/json"}, body, url)


def drive(flow: Any, respond: Callable[[str], HttpResponse]) -> Any:
    """Run a flow, answering each request with ``respond(url)``; its result, or its KeyturnError."""
    try:
        step = next(flow)
        for _ in range(10):  # bounded: every flow here asks a few times at most
            step = flow.send(step.until if isinstance(step, Wait) else respond(step.url))
    except StopIteration as stop:
        return stop.value
    except KeyturnError as exc:
        return exc
    raise AssertionError("the flow kept asking")


def check(error: object, kind: type[KeyturnError], *words: str) -> None:
    assert isinstance(error, kind), repr(error)
    text = f"{error} {error!r}"
    for word in words:
        assert word in text, text
    assert SECRET not in text
    assert "Traceback" not in text and "RecursionError" not in text


# -- the parser ------------------------------------------------------------------------------------


@CASES
def test_strictjson_refuses_with_a_reason_that_quotes_nothing(body: bytes, words: str) -> None:
    with pytest.raises(strictjson.JsonError) as info:
        strictjson.loads(body)
    assert isinstance(info.value, ValueError)  # every caller's `except ValueError` catches it
    assert words in str(info.value) and SECRET not in str(info.value)
    # No chained JSONDecodeError either: its .doc is the whole text, secrets and all.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__


def test_strictjson_accepts_what_servers_really_send() -> None:
    assert strictjson.loads(nested_arrays(strictjson.MAX_DEPTH)) is not None  # the limit itself
    assert strictjson.loads(b'\xef\xbb\xbf{"a": 1.5e3}') == {"a": 1500.0}  # BOM: RFC 8259 §8.1
    assert strictjson.loads('{"e": "\\ud83d\\ude00", "n": 12345678901234567890}') == {
        "e": "\U0001f600", "n": 12345678901234567890}
    assert strictjson.loads("7") == 7 and strictjson.loads('"x"') == "x"


def test_strictjson_as_written_reads_back_what_json_dumps_writes() -> None:
    # A token saved by an older keyturn may hold NaN or an unpaired surrogate in its `extra`:
    # json.dumps writes both, so reading the file back must not lose the login over them.
    written = json.dumps({"x": float("nan"), "y": float("inf"), "s": "\ud800"})
    value = strictjson.loads(written, as_written=True)
    assert value["y"] == float("inf") and value["s"] == "\ud800"
    with pytest.raises(strictjson.JsonError, match="deeper than 64"):
        strictjson.loads(nested_arrays(DEEP), as_written=True)
    with pytest.raises(strictjson.JsonError, match="not JSON"):
        strictjson.loads(b"{truncated", as_written=True)


def test_strictjson_sees_depth_on_a_deep_stack() -> None:
    # Called from deep inside a program, json.loads runs out of stack long before 1,000 levels;
    # that is still the typed error, not a RecursionError.
    def nest(levels: int) -> Any:
        return nest(levels - 1) if levels else strictjson.loads(nested_arrays(60))

    with pytest.raises(strictjson.JsonError, match="deeper than 64"):
        nest(sys.getrecursionlimit() - 80)


# -- every response parser -------------------------------------------------------------------------


@CASES
@pytest.mark.parametrize("status", [200, 400])
def test_token_endpoint(body: bytes, words: str, status: int) -> None:
    with pytest.raises(InvalidResponse) as info:
        parse_token_response(answer(status, body), now=1000.0)
    check(info.value, InvalidResponse, "token endpoint", words, URL)


@CASES
def test_discovery(body: bytes, words: str) -> None:
    result = drive(discover("https://id.example.org"), lambda url: answer(200, body, url))
    check(result, DiscoveryError, "id.example.org", words)


@CASES
def test_jwks(body: bytes, words: str) -> None:
    result = drive(fetch_jwks_flow("https://id.example.org/jwks"),
                   lambda url: answer(200, body, url))
    check(result, InvalidResponse, "JWKS endpoint", words)


@CASES
def test_userinfo(body: bytes, words: str) -> None:
    result = drive(userinfo_flow(endpoint="https://id.example.org/me", access_token=SECRET),
                   lambda url: answer(200, body, url))
    check(result, InvalidResponse, "userinfo endpoint", words)


def _device() -> DeviceAuthorization:
    return DeviceAuthorization(device_authorization_endpoint="https://id.example.org/device",
                               token_endpoint=URL, client_auth=ClientAuth.create(client_id="cli"))


@CASES
def test_device_authorization(body: bytes, words: str) -> None:
    result = drive(device_authorization_flow(_device(), now=1000.0),
                   lambda url: answer(200, body, url))
    check(result, InvalidResponse, "device authorization endpoint", words)


@CASES
@pytest.mark.parametrize("status", [200, 400])
def test_device_poll(body: bytes, words: str, status: int) -> None:
    device = _device()
    started = json.dumps({"device_code": "d" * 43, "user_code": "BCDF-GHJK", "expires_in": 600,
                          "verification_uri": "https://id.example.org/verify", "interval": 1})
    drive(device_authorization_flow(device, now=1000.0),
          lambda url: answer(200, started.encode(), url))
    result = drive(device_poll_flow(device), lambda url: answer(status, body, url))
    check(result, InvalidResponse, "token endpoint", words)


@CASES
def test_revocation_error_answer(body: bytes, words: str) -> None:
    flow = revocation_flow(endpoint="https://id.example.org/revoke", token=SECRET,
                           token_type_hint="refresh_token",
                           client_auth=ClientAuth.create(client_id="cli"), audience=URL, now=1.0)
    check(drive(flow, lambda url: answer(400, body, url)), InvalidResponse, "revocation endpoint",
          words)


@pytest.mark.parametrize("access,token_type", [
    (SECRET + "\u00e9", "Bearer"),          # httpx: UnicodeEncodeError at the first request
    (SECRET + "\r\nX-Injected: 1", "Bearer"),  # a header injected into every request
    (SECRET, "Bearer\r\nX-Injected: 1"),
    (SECRET, "B\u00e9arer"),
])
def test_a_token_that_cannot_go_into_a_header_is_refused(access: str, token_type: str) -> None:
    body = json.dumps({"access_token": access, "token_type": token_type}).encode()
    with pytest.raises(InvalidResponse) as info:
        parse_token_response(answer(200, body), now=1000.0)
    check(info.value, InvalidResponse, "printable ASCII", "RFC 6749 Appendix A.1")


def test_a_token_of_printable_ascii_still_works() -> None:
    odd = "a b~!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}"  # every VSCHAR class, a space included
    token = parse_token_response(answer(200, json.dumps({"access_token": odd, "token_type":
                                                         "DPoP"}).encode()), now=1000.0)
    assert token.access_token == odd and token.token_type == "DPoP"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@CASES
def test_jwt_expiry_of_a_hostile_payload_is_no_hint(body: bytes, words: str) -> None:
    assert jwt_expiry(f"{_b64(b'{}')}.{_b64(body)}.sig") is None


# -- id_tokens and keys ----------------------------------------------------------------------------

ISSUER = "https://id.example.org"
METADATA = ServerMetadata(issuer=ISSUER, jwks_uri=f"{ISSUER}/jwks")


@pytest.fixture(scope="module")
def key() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": "k1"}, private=True)


def jwks(key: ECKey) -> bytes:
    return json.dumps({"keys": [key.as_dict(private=False)]}).encode()


def validate(token: str, key_set: bytes) -> object:
    return drive(validate_id_token_flow(token, metadata=METADATA, client_id="cli", now=1000.0,
                                        keys=KeySetCache()),
                 lambda url: answer(200, key_set, url))


@CASES
def test_id_token_with_a_hostile_header(key: ECKey, body: bytes, words: str) -> None:
    token = f"{_b64(body)}.{_b64(b'{}')}.c2ln"
    check(validate(token, jwks(key)), InvalidIdToken, "id_token header", words)


@CASES
def test_id_token_with_a_hostile_signed_payload(key: ECKey, body: bytes, words: str) -> None:
    # Validly signed by the issuer's key: only the claims are hostile (a broken or hostile issuer).
    token = jws.serialize_compact({"alg": "ES256", "kid": "k1"}, body, key)
    check(validate(token, jwks(key)), InvalidIdToken, "id_token payload", words)


def test_an_id_token_too_large_to_check(key: ECKey) -> None:
    token = jws.serialize_compact({"alg": "ES256", "kid": "k1"}, nested_arrays(100_000), key)
    # The limit is joserfc's own (128000 bytes in 1.4, 129536 in later releases): not ours to pin.
    check(validate(token, jwks(key)), InvalidIdToken, "id_token is too large", " bytes")


@pytest.mark.parametrize("header", [
    b'{"alg":"ES256","kid":' + nested_arrays(200) + b"}",    # under joserfc's 512-byte limit
    b'{"alg":"ES256","kid":"k1","crit":' + nested_objects(40) + b"}",
    b'{"alg":"ES256","kid":"k1","crit":["exp"]}',             # joserfc's own checks, typed
    b'{"alg":"ES256","kid":"k1","b64":false}',
], ids=["nested-kid", "nested-crit", "crit", "b64"])
def test_id_token_with_odd_headers_is_refused_typed(key: ECKey, header: bytes) -> None:
    signed = jws.serialize_compact({"alg": "ES256", "kid": "k1"}, b'{"sub":"x"}', key)
    token = f"{_b64(header)}.{signed.split('.', 1)[1]}"
    check(validate(token, jwks(key)), InvalidIdToken, "id_token")


@CASES
def test_id_token_whose_jwks_answer_is_hostile(key: ECKey, body: bytes, words: str) -> None:
    token = jws.serialize_compact({"alg": "ES256", "kid": "k1"}, b'{"sub":"x"}', key)
    check(validate(token, body), InvalidResponse, "JWKS endpoint", words)


def test_jwks_entries_nested_deep_are_skipped_not_fatal(key: ECKey) -> None:
    good = key.as_dict(private=False)
    document = b'{"keys":[{"kty":"RSA","n":' + nested_arrays(60) + b',"e":"AQAB"},' + \
        json.dumps(good).encode() + b"]}"
    keys = drive(fetch_jwks_flow(f"{ISSUER}/jwks"), lambda url: answer(200, document, url))
    assert [k.kid for k in keys] == ["k1"]


@CASES
def test_signing_key_given_as_hostile_json(body: bytes, words: str) -> None:
    text = "{" + body.decode("utf-8", "replace") if not body.startswith(b"{") else \
        body.decode("utf-8", "replace")
    with pytest.raises(ConfigError) as info:
        load_signing_key(text)
    check(info.value, ConfigError, "private_key")


# -- stored tokens ---------------------------------------------------------------------------------

KEY = "keyturn:v1:hostile"
TOKEN = Token(access_token=SECRET, expires_at=2e9, issued_at=1e9, refresh_token="RT-secret-0815")


@CASES
def test_a_hostile_token_file_is_quarantined(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                             body: bytes, words: str) -> None:
    store = FileStore(tmp_path / "keyturn")
    store.save(KEY, TOKEN)
    path = tmp_path / "keyturn" / f"{file_name(KEY)}.json"
    path.write_bytes(body)
    with caplog.at_level(logging.WARNING, logger="keyturn.stores.file"):
        loaded = store.load(KEY)
    if words in ("NaN", "Infinity", "beyond the range of a double", "unpaired UTF-16 surrogate"):
        # What json.dumps writes is read back (as_written): these files are only not keyturn's
        # format (no "format", no "key"), and are quarantined for that.
        words = "not a keyturn token file"
    assert loaded is None
    assert not path.exists()
    aside = [name for name in os.listdir(path.parent) if name.startswith(path.name + ".corrupt-")]
    assert len(aside) == 1 and (path.parent / aside[0]).read_bytes() == body
    assert words in caplog.text
    assert SECRET not in caplog.text and "RT-secret" not in caplog.text
    # Then a plain miss, and a new login saves afresh.
    assert store.load(KEY) is None
    store.save(KEY, TOKEN)
    assert store.load(KEY) == TOKEN


def test_a_token_file_with_nan_in_extra_is_still_a_login(tmp_path: Path) -> None:
    # json.dumps writes NaN; an older keyturn took it from a server into `extra` and saved it.
    store = FileStore(tmp_path / "keyturn")
    store.save(KEY, Token(access_token=SECRET, expires_at=2e9, issued_at=1e9,
                          refresh_token="RT-secret-0815", extra={"odd": float("nan")}))
    loaded = store.load(KEY)
    assert loaded is not None and loaded.refresh_token == "RT-secret-0815"


def test_a_hostile_redis_record_is_treated_as_absent(redis_url: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    store = RedisStore(redis_url)
    store.save(KEY, TOKEN)
    redis.Redis.from_url(redis_url).hset(store._names(KEY)[1], "record", nested_arrays(DEEP))
    with caplog.at_level(logging.WARNING, logger="keyturn.stores.redis"):
        assert store.load(KEY) is None
    assert "damaged" in caplog.text and SECRET not in caplog.text
    store.save(KEY, TOKEN)
    assert store.load(KEY) == TOKEN


# -- configuration files ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", [b"a = " + b"[" * DEEP, b"a = " + b"{b=" * DEEP],
                         ids=["arrays", "inline-tables"])
def test_a_deeply_nested_profile_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        text: bytes) -> None:
    config = tmp_path / "config.toml"
    config.write_bytes(text)
    config.chmod(0o600)
    monkeypatch.setenv("KEYTURN_CONFIG", str(config))
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_profile("dev")
