"""Sign-in through an upstream identity provider (issue 12 §1), over HTTP.

The upstream is the test suite's npm oidc-provider (its dev login takes any name; its accounts'
email is ``<login>@example.test``) with keyturn registered as a confidential client whose redirect
is ``<keyturn issuer>/device/callback``; keyturn's real server runs on a port picked first. A
person is an httpx client with one cookie jar for keyturn; the upstream's pages are driven by
parsing their HTML (``complete_authorization``), and the browser's way back to keyturn is the
callback URL they end on.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from keyturn.errors import ConfigError
from keyturn.server.config import load_config, parse_config
from keyturn.server.runner import ServerThread
from keyturn.server.storage.memory import MemoryStorage
from keyturn.server.upstreams.flow import PendingLogin, login_key
from tests.support.providerfixture import Provider, complete_authorization, make_client, start_provider
from tests.support.serverkit import make_config, poll, start_device

_CSRF = re.compile(r'name=csrf value="([^"]+)"')
_TICKET = re.compile(r'name=ticket value="([^"]+)"')
_ONWARD = re.compile(r'<meta http-equiv=refresh content="0;url=([^"]+)">')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def upstream_tables(provider: Provider, secret_file: Path, key_file: Path) -> dict[str, Any]:
    return {
        "campus": {
            "issuer": provider.issuer, "client_id": "keyturn-gw",
            "client_secret_file": str(secret_file), "display_name": "Campus",
            "subject_claim": "preferred_username", "copy_claims": ["name", "email"],
            # alice by name, or anyone whose address is at staff.example.test: not mallory.
            "allow": [{"claim": "preferred_username", "equals": "alice"},
                      {"claim": "email", "ends_with": "@staff.example.test"}],
        },
        "keyed": {
            "issuer": provider.issuer, "client_id": "keyturn-jwt",
            "private_key_file": str(key_file), "display_name": "Campus (key)",
            "subject_claim": "email", "subject_prefix": "key:", "copy_claims": ["email"],
            "allow_all": True, "prompt": "login",
        },
    }


@dataclass
class Setup:
    provider: Provider
    keyturn: ServerThread
    tables: dict[str, Any]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    yield from running_setup(tmp_path_factory.mktemp("upstream"))


def running_setup(work: Path, host: str = "127.0.0.1") -> Iterator[Setup]:
    """The upstream and keyturn (on ``host``: "localhost" puts it on another site than the
    upstream's 127.0.0.1, as a real provider is), until the generator is closed."""
    port = free_port()
    callback = f"http://{host}:{port}/device/callback"
    code_client = {"grant_types": ["authorization_code"], "response_types": ["code"],
                   "redirect_uris": [callback]}
    gateway = make_client("keyturn-gw", "client_secret_basic", **code_client)
    keyed = make_client("keyturn-jwt", "private_key_jwt", **code_client)
    provider = start_provider([gateway, keyed], work)
    secret_file, key_file = work / "campus.secret", work / "keyed.jwk"
    for path, text in ((secret_file, gateway["client_secret"]),
                       (key_file, json.dumps(keyed["private_jwk"]))):
        path.write_text(text)
        path.chmod(0o600)
    tables = upstream_tables(provider, secret_file, key_file)
    # Each upstream parsed on its own, beside make_config's local alice: the loader refuses
    # campus's empty subject_prefix there (review R19 H3, test_server_upstream_review.py); the
    # server must still keep a login's own claims apart from the local user's.
    upstreams = {name: parse_config({"upstreams": {name: table}}).upstreams[name]
                 for name, table in tables.items()}
    config = replace(make_config(), upstreams=upstreams)
    keyturn = ServerThread(config, data_dir=work / "keyturn", host=host, port=port)
    try:
        yield Setup(provider, keyturn, tables)
    finally:
        keyturn.stop()
        provider.stop()


class Person:
    """A browser as far as keyturn sees it: one cookie jar, redirects looked at one by one."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self.http = httpx.Client(timeout=30, follow_redirects=False, trust_env=False)

    def close(self) -> None:
        self.http.close()

    def press(self, upstream: str, user_code: str) -> httpx.Response:
        """Open /device, type the code, press "Sign in with ..." of ``upstream``."""
        page = self.http.get(f"{self.issuer}/device")
        csrf = _CSRF.search(page.text)
        assert page.status_code == 200 and csrf, page.text
        self.csrf = csrf.group(1)
        return self.http.post(f"{self.issuer}/device/upstream/{upstream}",
                              data={"csrf": self.csrf, "user_code": user_code,
                                    "upstream": upstream})

    def start(self, upstream: str, user_code: str) -> str:
        """The upstream authorization URL keyturn sends the browser on to (a refresh)."""
        response = self.press(upstream, user_code)
        onward = _ONWARD.search(response.text)
        assert response.status_code == 200 and onward, response.text
        return html.unescape(onward.group(1))

    def back(self, callback_url: str) -> httpx.Response:
        return self.http.get(callback_url)

    def decide(self, consent: httpx.Response, decision: str = "approve") -> httpx.Response:
        ticket = _TICKET.search(consent.text)
        csrf = _CSRF.search(consent.text)
        assert consent.status_code == 200 and ticket and csrf, consent.text
        return self.http.post(f"{self.issuer}/device/decision",
                              data={"csrf": csrf.group(1), "ticket": ticket.group(1),
                                    "decision": decision})


@pytest.fixture
def person(setup: Setup) -> Iterator[Person]:
    someone = Person(setup.keyturn.issuer)
    yield someone
    someone.close()


def claims_of(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def shows_consent_for(page: httpx.Response, subject: str) -> bool:
    """The Approve/Deny step of pages.py, naming ``subject`` as the one who signs in (in bold,
    alone or with the person's name: "Alice (alice)")."""
    named = re.search(rf"<b>[^<]*\b{re.escape(subject)}\b[^<]*</b>", page.text)
    return (page.status_code == 200 and named is not None
            and "name=ticket" in page.text and "value=approve" in page.text)


def sign_ins(setup: Setup, upstream: str, outcome: str) -> int:
    """keyturn_upstream_sign_ins_total{upstream, outcome} of the server's /metrics counters."""
    line = f'keyturn_upstream_sign_ins_total{{upstream="{upstream}",outcome="{outcome}"}} '
    text = setup.keyturn.app.state.server.metrics.render()
    return next((int(float(row[len(line):])) for row in text.splitlines() if row.startswith(line)),
                0)


def pending(issuer: str, device_code: str) -> bool:
    answer = poll(issuer, device_code)
    return answer.status_code == 400 and answer.json()["error"] in ("authorization_pending",
                                                                     "slow_down")


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


# -- the whole way -----------------------------------------------------------------------------


def test_a_person_signs_in_at_the_upstream_and_the_device_gets_tokens_with_their_claims(
        setup: Setup, person: Person) -> None:
    issuer = setup.keyturn.issuer
    started = start_device(issuer, scope="openid profile email offline_access")
    to_upstream = person.start("campus", started["user_code"].lower())
    query = parse_qs(urlsplit(to_upstream).query)
    assert to_upstream.startswith(f"{setup.provider.issuer}/")
    # PKCE S256, a state and a nonce, the registered redirect (RFC 7636 §4.3, OIDC Core §3.1.2.1).
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0]
    assert len(query["state"][0]) >= 43 and len(query["nonce"][0]) >= 43
    assert query["redirect_uri"] == [f"{issuer}/device/callback"]
    assert query["scope"] == ["openid profile email"]
    assert "prompt" not in query  # none configured
    callback = complete_authorization(setup.provider, to_upstream, login="alice")
    assert callback.startswith(f"{issuer}/device/callback?") and "iss=" in callback
    assert pending(issuer, started["device_code"])  # signing in upstream approves nothing yet
    consent = person.back(callback)
    assert shows_consent_for(consent, "alice")
    assert sign_ins(setup, "campus", "ok") >= 1 and sign_ins(setup, "campus", "started") >= 1
    assert "keyturn_upstream=" in consent.headers.get("set-cookie", "")  # cleared
    done = person.decide(consent)
    assert done.status_code == 200 and "Device approved" in done.text
    tokens = poll(issuer, started["device_code"]).json()
    id_token = claims_of(tokens["id_token"])
    assert id_token["sub"] == "alice" and id_token["iss"] == issuer
    assert id_token["email"] == "alice@example.test" and id_token["name"] == "Alice"
    # userinfo carries the copied claims too (the upstream's are in no configuration file).
    info = httpx.get(f"{issuer}/userinfo",
                     headers={"Authorization": f"Bearer {tokens['access_token']}"}).json()
    assert info == {"sub": "alice", "name": "Alice", "email": "alice@example.test"}
    # A refresh keeps them in the id_token.
    refreshed = httpx.post(f"{issuer}/token", data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
        "client_id": "demo"}).json()
    assert claims_of(refreshed["id_token"])["email"] == "alice@example.test"


def test_copied_claims_are_released_by_the_local_scope(setup: Setup, person: Person) -> None:
    issuer = setup.keyturn.issuer
    started = start_device(issuer, scope="openid profile")  # no email scope
    callback = complete_authorization(setup.provider, person.start("campus", started["user_code"]),
                                      login="alice")
    person.decide(person.back(callback))
    tokens = poll(issuer, started["device_code"]).json()
    assert "email" not in claims_of(tokens["id_token"])
    assert claims_of(tokens["id_token"])["name"] == "Alice"
    info = httpx.get(f"{issuer}/userinfo",
                     headers={"Authorization": f"Bearer {tokens['access_token']}"}).json()
    assert info == {"sub": "alice", "name": "Alice"}


def test_a_private_key_jwt_upstream_maps_the_email_to_the_subject(setup: Setup,
                                                                  person: Person) -> None:
    issuer = setup.keyturn.issuer
    started = start_device(issuer, scope="openid email")
    to_upstream = person.start("keyed", started["user_code"])
    assert parse_qs(urlsplit(to_upstream).query)["prompt"] == ["login"]
    callback = complete_authorization(setup.provider, to_upstream, login="bob")
    consent = person.back(callback)
    assert shows_consent_for(consent, "key:bob@example.test")
    person.decide(consent)
    tokens = poll(issuer, started["device_code"]).json()
    assert claims_of(tokens["id_token"])["sub"] == "key:bob@example.test"
    assert setup.provider.token_requests("keyturn-jwt", "authorization_code") >= 1


def test_the_page_offers_each_upstream_and_the_password_form_only_with_local_users(
        setup: Setup, tmp_path: Path) -> None:
    page = httpx.get(f"{setup.keyturn.issuer}/device").text
    assert "Sign in with Campus</button>" in page and "Sign in with Campus (key)" in page
    assert 'name=password' in page  # make_config has local users
    config = replace(make_config(users={}), upstreams=setup.keyturn.config.upstreams)
    with ServerThread(config, storage=MemoryStorage()) as alone:
        page = httpx.get(f"{alone.issuer}/device").text
        assert "Sign in with Campus</button>" in page and "name=password" not in page
        # And a password posted anyway is not checked.
        csrf = _CSRF.search(page)
        assert csrf
        refused = httpx.post(f"{alone.issuer}/device", data={
            "csrf": csrf.group(1), "user_code": "BCDF-GHJK", "username": "alice",
            "password": "x"}, cookies={"keyturn_csrf": csrf.group(1)})
        assert refused.status_code == 400 and "Choose how to sign in" in refused.text


# -- who is let in -----------------------------------------------------------------------------


def test_a_person_not_on_the_allow_list_is_told_so_and_nothing_is_approved(
        setup: Setup, person: Person) -> None:
    issuer = setup.keyturn.issuer
    started = start_device(issuer, scope="openid profile")
    callback = complete_authorization(setup.provider, person.start("campus", started["user_code"]),
                                      login="mallory")
    counted = sign_ins(setup, "campus", "not_allowed")
    refused = person.back(callback)
    assert sign_ins(setup, "campus", "not_allowed") == counted + 1
    assert refused.status_code == 403
    assert "Your Campus account is not allowed to sign in here" in refused.text
    assert "ticket" not in refused.text
    assert pending(issuer, started["device_code"])


def test_a_wrong_user_code_goes_nowhere(setup: Setup, person: Person) -> None:
    refused = person.press("campus", "BCDF-GHJK")
    assert refused.status_code == 400 and "not valid" in refused.text
    unknown = person.press("nosuch", "BCDF-GHJK")
    assert unknown.status_code == 404


def test_the_button_needs_the_pages_csrf_token(setup: Setup) -> None:
    started = start_device(setup.keyturn.issuer)
    forged = httpx.post(f"{setup.keyturn.issuer}/device/upstream/campus",
                        data={"csrf": "x", "user_code": started["user_code"]})
    assert forged.status_code == 403 and "refresh" not in forged.text


# -- forged callbacks ------------------------------------------------------------------------------


def test_a_callback_with_a_state_never_issued_approves_nothing(setup: Setup,
                                                               person: Person) -> None:
    answer = person.back(f"{setup.keyturn.issuer}/device/callback?code=abc&state=forged"
                         f"&iss={setup.provider.issuer}")
    assert answer.status_code == 400 and "not valid" in answer.text and "ticket" not in answer.text
    assert person.back(f"{setup.keyturn.issuer}/device/callback").status_code == 400


def test_a_replayed_callback_finds_its_state_taken(setup: Setup, person: Person) -> None:
    started = start_device(setup.keyturn.issuer)
    callback = complete_authorization(setup.provider, person.start("campus", started["user_code"]),
                                      login="alice")
    assert "ticket" in person.back(callback).text
    again = person.back(callback)
    assert again.status_code == 400 and "already used" in again.text and "ticket" not in again.text


def test_a_callback_in_another_browser_approves_nothing(setup: Setup, person: Person) -> None:
    """An attacker starts a sign-in with their own device's code and sends the link to a victim:
    the victim's browser lacks the cookie of the browser that pressed the button."""
    started = start_device(setup.keyturn.issuer)
    callback = complete_authorization(setup.provider, person.start("campus", started["user_code"]),
                                      login="alice")
    victim = Person(setup.keyturn.issuer)
    try:
        answer = victim.back(callback)
    finally:
        victim.close()
    assert answer.status_code == 400 and "another browser" in answer.text
    assert "ticket" not in answer.text
    # The state was spent by that try: the link works nowhere now.
    assert "ticket" not in person.back(callback).text


def test_a_callback_with_another_iss_is_refused(setup: Setup, person: Person) -> None:
    """RFC 9207 §2.4: a response whose iss is not the issuer the request went to is a mix-up."""
    started = start_device(setup.keyturn.issuer)
    callback = complete_authorization(setup.provider, person.start("campus", started["user_code"]),
                                      login="alice")
    answer = person.back(with_query(callback, iss="https://evil.example"))
    assert answer.status_code == 400 and "did not come from the provider" in answer.text
    # Without iss, too: the provider advertises authorization_response_iss_parameter_supported.
    started = start_device(setup.keyturn.issuer)
    callback = complete_authorization(setup.provider, person.start("campus", started["user_code"]),
                                      login="alice")
    parts = urlsplit(callback)
    query = {k: v[0] for k, v in parse_qs(parts.query).items() if k != "iss"}
    answer = person.back(urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), "")))
    assert answer.status_code == 400 and "ticket" not in answer.text
    assert pending(setup.keyturn.issuer, started["device_code"])


def test_a_code_from_another_sign_in_is_refused_by_pkce(setup: Setup, person: Person) -> None:
    issuer = setup.keyturn.issuer
    first, second = start_device(issuer), start_device(issuer)
    one = complete_authorization(setup.provider, person.start("campus", first["user_code"]),
                                 login="alice")
    other = Person(issuer)  # one sign-in at a time per browser: the second is another's
    try:
        two = complete_authorization(setup.provider, other.start("campus", second["user_code"]),
                                     login="alice")
    finally:
        other.close()
    # The first sign-in's state with the second's code: the verifier kept for the state does not
    # fit the code's challenge (RFC 7636 §4.6), so the upstream refuses the exchange.
    swapped = with_query(one, code=parse_qs(urlsplit(two).query)["code"][0])
    answer = person.back(swapped)
    assert answer.status_code == 403 and "did not confirm who you are" in answer.text
    assert pending(issuer, first["device_code"]) and pending(issuer, second["device_code"])


def test_an_error_from_the_upstream_is_shown_and_approves_nothing(setup: Setup,
                                                                  person: Person) -> None:
    started = start_device(setup.keyturn.issuer)
    to_upstream = person.start("campus", started["user_code"])
    state = parse_qs(urlsplit(to_upstream).query)["state"][0]
    answer = person.back(f"{setup.keyturn.issuer}/device/callback?" + urlencode(
        {"error": "access_denied", "state": state, "iss": setup.provider.issuer}))
    assert answer.status_code == 403 and "did not sign you in (access_denied)" in answer.text


@pytest.mark.parametrize(("status", "body"), [
    (503, None),                                        # temporarily_unavailable
    (200, {"token_type": "Bearer", "expires_in": 60}),  # "success" without an access token
    (200, {"access_token": "a", "token_type": "Bearer", "id_token": "not.a.jwt"}),
])
def test_an_upstream_token_endpoint_that_fails_or_answers_garbage_gets_a_clear_page(
        setup: Setup, person: Person, status: int, body: dict[str, Any] | None) -> None:
    started = start_device(setup.keyturn.issuer)
    callback = complete_authorization(setup.provider, person.start("campus", started["user_code"]),
                                      login="alice")
    setup.provider.fail_next(status, body=body)
    try:
        answer = person.back(callback)
    finally:
        setup.provider.reset_stats()
    assert answer.status_code in (502, 403), answer.text
    if body is not None and "id_token" in body:
        assert "did not confirm who you are" in answer.text  # an id_token that fails the checks
    else:
        assert "Campus could not be reached" in answer.text
    assert "ticket" not in answer.text and "Traceback" not in answer.text
    assert pending(setup.keyturn.issuer, started["device_code"])


def test_a_forged_error_cannot_write_lines_into_the_log(setup: Setup, person: Person,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    import logging

    caplog.set_level(logging.INFO, logger="keyturn.server.upstreams")
    started = start_device(setup.keyturn.issuer)
    state = parse_qs(urlsplit(person.start("campus", started["user_code"])).query)["state"][0]
    forged = "access_denied\n2026-12-02 INFO keyturn approved everything<b>"
    answer = person.back(f"{setup.keyturn.issuer}/device/callback?" + urlencode(
        {"error": forged, "state": state, "iss": setup.provider.issuer}))
    assert answer.status_code == 403 and "<b>approved" not in answer.text
    lines = [r.getMessage() for r in caplog.records if "authorization error" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0] and "\\n" in lines[0]


def test_a_stale_state_is_refused(setup: Setup, person: Person) -> None:
    """A login kept past five minutes (fault injection: written into the real storage with an
    old created_at, as a slow person would leave it) is refused even if the storage still has it."""
    started = start_device(setup.keyturn.issuer)
    person.start("campus", started["user_code"])  # the browser cookie is set
    state, now = "s" * 43, time.time()
    old = PendingLogin(upstream="campus", user_code=started["user_code"].replace("-", ""),
                       created_at=now - 301, nonce="n" * 43, code_verifier="v" * 43,
                       browser="unused")
    assert setup.keyturn.storage.put_once(login_key(state), old.seal(state), now, now + 60)
    answer = person.back(f"{setup.keyturn.issuer}/device/callback?code=x&state={state}")
    assert answer.status_code == 400 and "took too long" in answer.text
    assert "ticket" not in answer.text


def test_the_storage_never_holds_the_verifier_readable(setup: Setup, person: Person) -> None:
    started = start_device(setup.keyturn.issuer)
    to_upstream = person.start("campus", started["user_code"])
    state = parse_qs(urlsplit(to_upstream).query)["state"][0]
    sealed = setup.keyturn.storage.peek_once(login_key(state), time.time())
    assert sealed is not None and state not in sealed
    login = PendingLogin.open(state, sealed)
    assert login is not None and login.code_verifier not in sealed and login.nonce not in sealed
    assert login.nonce == parse_qs(urlsplit(to_upstream).query)["nonce"][0]
    assert "code_verifier" not in repr(login) and login.nonce not in repr(login)
    assert PendingLogin.open("another state", sealed) is None


# -- configuration ---------------------------------------------------------------------------------


def test_an_upstream_without_an_allow_list_is_a_configuration_error(setup: Setup) -> None:
    table = {k: v for k, v in setup.tables["campus"].items() if k != "allow"}
    with pytest.raises(ConfigError, match=r"lets nobody in.*allow_all = true"):
        parse_config({"upstreams": {"campus": table}})
    assert parse_config({"upstreams": {"campus": {**table, "allow_all": True}}}).upstreams


@pytest.mark.parametrize(("change", "message"), [
    ({"colour": "blue"}, "unknown key 'colour'"),
    ({"client_secret": "x"}, "exactly one of"),
    ({"issuer": "http://idp.example.org"}, "plain http on a non-loopback host"),
    ({"scope": "profile email"}, "must include openid"),
    ({"allow": [{"claim": "email"}]}, "exactly one of equals"),
    ({"allow": [{"claim": "email", "ends_with": "@x", "equals": "y"}]}, "exactly one of equals"),
    ({"auth_method": "private_key_jwt"}, "does not fit"),
    ({"subject_prefix": "a b"}, "subject_prefix must be a string without spaces"),
    ({"prompt": "none"}, "prompt must be made of consent, login, select_account"),
])
def test_upstream_configuration_mistakes_are_named(setup: Setup, change: dict[str, Any],
                                                   message: str) -> None:
    table = {**setup.tables["campus"], **change}
    with pytest.raises(ConfigError, match=message):
        parse_config({"upstreams": {"campus": table}})


def test_a_key_file_that_holds_no_key_stops_the_start(setup: Setup, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5IGF0IGFsbA==\n-----END PRIVATE KEY-----\n")
    bad.chmod(0o600)
    table = {**setup.tables["keyed"], "private_key_file": str(bad)}
    with pytest.raises(ConfigError, match=r"\[upstreams.keyed\]") as caught:
        parse_config({"upstreams": {"keyed": table}})
    assert "bm90IGEga2V5" not in str(caught.value)


def test_secrets_in_files_others_can_read_are_refused_and_never_shown(setup: Setup,
                                                                       tmp_path: Path) -> None:
    loose = tmp_path / "loose.secret"
    loose.write_text("a-real-secret-value")
    loose.chmod(0o644)
    table = {**setup.tables["campus"], "client_secret_file": str(loose)}
    with pytest.raises(ConfigError, match="readable by others: run chmod 600"):
        parse_config({"upstreams": {"campus": table}})
    # An inline client_secret: the whole file must be private.
    conf = tmp_path / "keyturn.toml"
    conf.write_text('[upstreams.campus]\nissuer = "http://127.0.0.1:9"\nclient_id = "c"\n'
                    'client_secret = "a-real-secret-value"\nallow_all = true\n')
    conf.chmod(0o644)
    with pytest.raises(ConfigError, match="client_secret but is readable by others") as caught:
        load_config(conf)
    assert "a-real-secret-value" not in str(caught.value)
    conf.chmod(0o600)
    upstream = load_config(conf).upstreams["campus"]
    assert upstream.client_secret is not None and "a-real-secret-value" not in repr(upstream)
    os.environ["KEYTURN_TEST_UPSTREAM_SECRET"] = "from-the-environment"
    try:
        table = {**{k: v for k, v in setup.tables["campus"].items() if k != "client_secret_file"},
                 "client_secret_env": "KEYTURN_TEST_UPSTREAM_SECRET"}
        secret = parse_config({"upstreams": {"campus": table}}).upstreams["campus"].client_secret
        assert secret is not None and secret.reveal() == "from-the-environment"
    finally:
        del os.environ["KEYTURN_TEST_UPSTREAM_SECRET"]


def test_at_hash_is_checked_as_oidc_core_computes_it() -> None:
    """OIDC Core §3.1.3.8 with the example of its Appendix A.3 (RS256)."""
    from keyturn.errors import InvalidIdToken
    from keyturn.protocol.idtoken import check_at_hash
    from keyturn.secret import Secret

    token = Secret.wrap("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y")
    check_at_hash({"at_hash": "77QmUPtjPfzWtF2AnpK9RQ"}, token, "RS256")
    check_at_hash({}, token, "RS256")  # absent: nothing to check ("If the ID Token contains")
    with pytest.raises(InvalidIdToken, match="at_hash does not match"):
        check_at_hash({"at_hash": "77QmUPtjPfzWtF2AnpK9RQ"}, Secret.wrap("another"), "RS256")


def test_the_allow_list_and_the_mapping_read_claims_as_documented() -> None:
    """The sans-I/O rules of flow.py, on the claims an upstream could send."""
    from keyturn.server.upstreams.config import AllowRule, UpstreamConfig
    from keyturn.server.upstreams.flow import admitted, map_user

    site = UpstreamConfig(name="x", issuer="https://idp.example.org", client_id="c",
                          display_name="X", subject_claim="email", copy_claims=("name", "groups"),
                          allow=(AllowRule(claim="email", ends_with="@example.org"),
                                 AllowRule(claim="groups", contains="hpc")))
    assert not admitted(site, {"email": "a@example.org"})  # unproven (review R19 H1)
    assert admitted(site, {"email": "a@example.org", "email_verified": True})
    # An address the upstream has not verified proves no domain, and names nobody.
    unverified = {"email": "a@example.org", "email_verified": False}
    assert not admitted(site, unverified) and map_user(site, unverified) is None
    assert not admitted(site, {"email": "a@example.org.evil.test"})
    assert admitted(site, {"groups": ["staff", "hpc"]})
    assert not admitted(site, {"groups": "hpc-admins"})  # contains: an element, not a substring
    assert not admitted(site, {"groups": ["hpc-admins"]})
    user = map_user(site, {"email": "a@example.org", "email_verified": True, "name": "A",
                           "groups": ["hpc"]})
    assert user is not None and user.subject == "a@example.org"
    assert dict(user.claims) == {"name": "A"}  # only strings are copied
    assert map_user(site, {"sub": "x"}) is None  # no subject claim: nobody


def test_the_documented_upstream_examples_parse(tmp_path: Path) -> None:
    """docs/server.md "Sign-in through your identity provider": every toml block, with its
    secret file made (0600) and its port filled in, is a configuration the server takes."""
    import tomllib

    docs = (Path(__file__).resolve().parents[2] / "docs" / "server.md").read_text()
    section = docs.split("## Sign-in through your identity provider", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```toml\n(.*?)```", section, re.S)
    assert len(blocks) == 2
    secret = tmp_path / "upstream.secret"
    secret.write_text("s3cret")
    secret.chmod(0o600)
    for block in blocks:
        text = re.sub(r'client_secret_file = "[^"]+"', f'client_secret_file = "{secret}"', block)
        config = parse_config(tomllib.loads(text.replace("PROVIDER_PORT", "9")))
        (upstream,) = config.upstreams.values()
        assert upstream.allow and upstream.client_secret is not None
        assert upstream.client_secret.reveal() == "s3cret"


def test_no_secret_of_a_sign_in_reaches_the_servers_logs(setup: Setup, person: Person,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """The client secret, the code, the state, the nonce and the PKCE verifier: in no line that
    keyturn's server (or uvicorn in it) logs, through a sign-in, a replay and a refusal."""
    import logging

    caplog.set_level(logging.DEBUG)
    started = start_device(setup.keyturn.issuer)
    to_upstream = person.start("campus", started["user_code"])
    query = parse_qs(urlsplit(to_upstream).query)
    callback = complete_authorization(setup.provider, to_upstream, login="alice")
    code = parse_qs(urlsplit(callback).query)["code"][0]
    sealed = setup.keyturn.storage.peek_once(login_key(query["state"][0]), time.time())
    assert sealed is not None
    login = PendingLogin.open(query["state"][0], sealed)
    assert login is not None
    person.decide(person.back(callback))
    person.back(callback)  # the replay is logged as a warning
    secret = setup.tables["campus"]["client_secret_file"]
    secrets = [Path(secret).read_text(), code, query["state"][0], query["nonce"][0],
               login.code_verifier]
    server_lines = [record.getMessage() for record in caplog.records
                    if record.name.startswith(("keyturn", "uvicorn"))]
    assert any("upstream campus" in line for line in server_lines)  # it did log
    for line in server_lines:
        assert not any(value in line for value in secrets), line
