"""The security review R19 of the upstream sign-in (issue 12 §1), as tests: one per finding.

A lax or hostile provider is :class:`~tests.support.hostileop.HostileProvider` (loopback, real
RS256 id_tokens with the claims a test picks: fault injection, since the suite's oidc-provider
always verifies its addresses); keyturn is its real server (SQLite) over HTTP, the person an
httpx client with one cookie jar (:class:`~tests.server.test_server_upstream.Person`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from keyturn.errors import ConfigError
from keyturn.server.claims import login_claims
from keyturn.server.config import Lifetimes, parse_config
from keyturn.server.runner import ServerThread
from tests.server.test_server_upstream import Person, claims_of, pending, shows_consent_for
from tests.support.hostileop import HostileProvider
from tests.support.serverkit import make_config, poll, start_device

#: The refresh tokens of this module's server live this long (the M5 test outlives one).
REFRESH_SECONDS = 3600
#: The slow upstream sends a byte this often (its discovery document: ~90 s in all, never
#: quiet long enough for httpx's 10 s read timeout), and keyturn gives it this long per call.
DRIP = 0.2
SLOW_DEADLINE = 3


@dataclass
class Review:
    op: HostileProvider
    keyturn: ServerThread
    slow: HostileProvider  # drips its answers, one byte per DRIP seconds

    def table(self, **changes: Any) -> dict[str, Any]:
        """An upstream table for the hostile provider, as an operator writes one."""
        return {"issuer": self.op.issuer, "client_id": "c", "client_secret": "s",
                "subject_claim": "preferred_username", **changes}


def _tables(issuer: str, slow: str) -> dict[str, dict[str, Any]]:
    base = {"issuer": issuer, "client_id": "c", "client_secret": "s",
            "subject_claim": "preferred_username"}
    return {
        # Every call may take SLOW_DEADLINE seconds in all.
        "slow": {**base, "issuer": slow, "subject_prefix": "slow:", "allow_all": True,
                 "timeout": SLOW_DEADLINE},
        # Let in by a verified address at example.org, or by the staff group.
        "corp": {**base, "subject_prefix": "corp:", "copy_claims": ["email", "name"],
                 "allow": [{"claim": "email", "ends_with": "@example.org"},
                           {"claim": "groups", "contains": "staff"}]},
        # Asks the provider to authenticate the person again at every press (L2).
        "fresh": {**base, "subject_prefix": "fresh:", "allow_all": True, "prompt": "login"},
        # The explicit, documented-as-dangerous opt-out.
        "lax": {**base, "subject_claim": "email", "subject_prefix": "lax:",
                "copy_claims": ["email"], "trust_unverified_email": True,
                "allow": [{"claim": "email", "ends_with": "@example.org"}]},
        # A configuration the loader now refuses beside local users (H3), given to the server
        # anyway: userinfo must still not answer with the local user's profile.
        "bare": {**base, "allow_all": True},
    }


@pytest.fixture(scope="module")
def review(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Review]:
    op, slow = HostileProvider().start(), HostileProvider().start()
    slow.drip = DRIP
    upstreams = {name: parse_config({"upstreams": {name: table}}).upstreams[name]
                 for name, table in _tables(op.issuer, slow.issuer).items()}
    base = make_config()
    # Presses from this one address: more than M1's MAX_CALLS + 1 (M2 has a server of its own).
    config = replace(base, upstreams=upstreams,
                     lifetimes=Lifetimes(interval=1, refresh_token=REFRESH_SECONDS),
                     rate_limits=replace(base.rate_limits, upstream_presses_per_address=1000))
    keyturn = ServerThread(config, data_dir=tmp_path_factory.mktemp("review") / "keyturn")
    try:
        yield Review(op, keyturn, slow)
    finally:
        keyturn.stop()
        op.stop()
        slow.stop()


@pytest.fixture
def person(review: Review) -> Iterator[Person]:
    someone = Person(review.keyturn.issuer)
    yield someone
    someone.close()


def come_back(review: Review, person: Person, upstream: str, claims: dict[str, Any],
              scope: str = "openid profile email") -> tuple[dict[str, str], httpx.Response]:
    """A device code, the button, the provider (saying ``claims``), the callback's page."""
    review.op.claims = claims
    started = start_device(review.keyturn.issuer, scope=scope)
    to_upstream = person.start(upstream, started["user_code"])
    back = httpx.get(to_upstream, trust_env=False)
    assert back.status_code == 302, back.text
    return started, person.back(back.headers["location"])


def approved_tokens(review: Review, person: Person, started: dict[str, str],
                    consent: httpx.Response) -> dict[str, Any]:
    done = person.decide(consent)
    assert done.status_code == 200 and "Device approved" in done.text
    tokens: dict[str, Any] = poll(review.keyturn.issuer, started["device_code"]).json()
    return tokens


def userinfo(review: Review, access_token: str) -> dict[str, Any]:
    answer = httpx.get(f"{review.keyturn.issuer}/userinfo",
                       headers={"Authorization": f"Bearer {access_token}"}, trust_env=False)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def not_allowed(page: httpx.Response) -> bool:
    return (page.status_code == 403 and "is not allowed to sign in here" in page.text
            and "name=ticket" not in page.text)


# -- H1: only email_verified: true proves an address -------------------------------------------


@pytest.mark.parametrize("verified", ["missing", "false", 0, False, None])
def test_h1_an_address_not_marked_verified_true_admits_nobody(
        review: Review, person: Person, verified: object) -> None:
    """Entra ID never sends email_verified (its email is a free-text attribute); other providers
    send "false" or 0: none of them proves the address, so the @example.org rule admits nobody."""
    claims: dict[str, Any] = {"sub": "x", "preferred_username": "mallory",
                              "email": "ceo@example.org"}
    if verified != "missing":
        claims["email_verified"] = verified
    _, page = come_back(review, person, "corp", claims)
    assert not_allowed(page), page.text


def test_h1_a_verified_address_admits_and_is_copied(review: Review, person: Person) -> None:
    started, consent = come_back(review, person, "corp", {
        "sub": "x", "preferred_username": "dora", "email": "dora@example.org",
        "email_verified": True, "name": "Dora"})
    assert shows_consent_for(consent, "corp:dora")
    id_token = claims_of(approved_tokens(review, person, started, consent)["id_token"])
    assert id_token["sub"] == "corp:dora" and id_token["email"] == "dora@example.org"


def test_h1_an_unverified_address_is_not_passed_on(review: Review, person: Person) -> None:
    """Let in by another rule (the staff group), the person's unproven email is not copied: a
    relying party would take it as theirs."""
    started, consent = come_back(review, person, "corp", {
        "sub": "x", "preferred_username": "erin", "email": "ceo@example.org", "name": "Erin",
        "groups": ["staff"]})
    assert shows_consent_for(consent, "corp:erin")
    tokens = approved_tokens(review, person, started, consent)
    id_token = claims_of(tokens["id_token"])
    assert id_token["name"] == "Erin" and "email" not in id_token
    assert userinfo(review, tokens["access_token"]) == {"sub": "corp:erin", "name": "Erin"}


def test_h1_an_email_subject_needs_a_verified_address(review: Review) -> None:
    from keyturn.server.upstreams.flow import admitted, map_user

    upstream = parse_config({"upstreams": {"corp": review.table(
        subject_claim="email", allow_all=True)}}).upstreams["corp"]
    for unproven in ({}, {"email_verified": "true"}, {"email_verified": 1}):
        assert map_user(upstream, {"email": "ceo@example.org", **unproven}) is None
    user = map_user(upstream, {"email": "ceo@example.org", "email_verified": True})
    assert user is not None and user.subject == "ceo@example.org"
    assert admitted(upstream, {})  # allow_all: the subject is what refuses


def test_h1_trust_unverified_email_is_an_explicit_opt_out(review: Review,
                                                          person: Person) -> None:
    started, consent = come_back(review, person, "lax", {
        "sub": "x", "email": "ceo@example.org"})
    assert shows_consent_for(consent, "lax:ceo@example.org")
    id_token = claims_of(approved_tokens(review, person, started, consent)["id_token"])
    assert id_token["email"] == "ceo@example.org"
    with pytest.raises(ConfigError, match="trust_unverified_email must be true or false"):
        parse_config({"upstreams": {"x": review.table(allow_all=True,
                                                       trust_unverified_email="yes")}})


# -- H2: Entra's multi-tenant issuers -------------------------------------------------------------


@pytest.mark.parametrize("issuer", [
    "https://login.microsoftonline.com/common/v2.0",
    "https://login.microsoftonline.com/organizations/v2.0",
    "https://login.microsoftonline.com/consumers/v2.0",
    "https://login.microsoftonline.com/common",
    "https://login.microsoftonline.us/Organizations/v2.0/",
])
def test_h2_a_multi_tenant_issuer_is_refused_with_the_issuer_to_use(issuer: str) -> None:
    table = {"issuer": issuer, "client_id": "c", "client_secret": "s", "subject_claim": "oid",
             "allow": [{"claim": "email", "ends_with": "@example.org"}]}
    with pytest.raises(ConfigError, match=r"multi-tenant.*/TENANT-ID") as caught:
        parse_config({"upstreams": {"entra": table}})
    assert "[upstreams.entra]" in str(caught.value)
    # A tid rule beside another rule pins nothing: rules are alternatives.
    loose = {**table, "allow": [{"claim": "tid", "equals": "T"},
                                {"claim": "groups", "contains": "g"}]}
    with pytest.raises(ConfigError, match="multi-tenant"):
        parse_config({"upstreams": {"entra": loose}})
    with pytest.raises(ConfigError, match="multi-tenant"):
        parse_config({"upstreams": {"entra": {**table, "allow": [], "allow_all": True}}})
    # Every rule naming a tenant: let in.
    pinned = {**table, "allow": [{"claim": "tid", "equals": "11111111-2222-3333-4444-555555555555"}]}
    assert parse_config({"upstreams": {"entra": pinned}}).upstreams["entra"].issuer == \
        issuer.rstrip("/")


@pytest.mark.parametrize("issuer", [
    "https://login.microsoftonline.com/11111111-2222-3333-4444-555555555555/v2.0",
    "https://kc.example.org/realms/common",  # a Keycloak realm that happens to be so named
])
def test_h2_a_tenants_own_issuer_is_taken(issuer: str) -> None:
    table = {"issuer": issuer, "client_id": "c", "client_secret": "s",
             "allow": [{"claim": "groups", "contains": "g"}]}
    assert parse_config({"upstreams": {"entra": table}}).upstreams["entra"].issuer == issuer


# -- H3: subjects that collide --------------------------------------------------------------------


def _user(password_hash: str = "scrypt$16384$8$1$c2FsdA$aGFzaA") -> dict[str, Any]:
    return {"password_hash": password_hash}


@pytest.mark.parametrize(("tables", "users", "message"), [
    ({"one": {}}, {"alice": _user()}, r"\[upstreams.one\] needs a subject_prefix .*local users"),
    ({"one": {}, "two": {"subject_prefix": "two:"}}, {},
     r"\[upstreams.one\] needs a subject_prefix .*other upstreams"),
    ({"one": {"subject_prefix": "a"}, "two": {"subject_prefix": "ab"}}, {},
     r"\[upstreams.one\] subject_prefix 'a' begins \[upstreams.two\]'s 'ab'"),
    ({"one": {"subject_prefix": "x:"}, "two": {"subject_prefix": "x:"}}, {}, "could collide"),
    ({"one": {"subject_prefix": "corp:"}}, {"corp:alice": _user()},
     r"\[users.corp:alice\] begins with \[upstreams.one\]'s subject_prefix"),
])
def test_h3_subjects_that_could_collide_are_refused_at_load(
        review: Review, tables: dict[str, dict[str, Any]], users: dict[str, Any],
        message: str) -> None:
    data = {"upstreams": {name: review.table(allow_all=True, **extra)
                          for name, extra in tables.items()}, "users": users}
    with pytest.raises(ConfigError, match=message):
        parse_config(data)


def test_h3_distinct_prefixes_and_a_lone_unprefixed_upstream_are_taken(review: Review) -> None:
    both = {"one": review.table(allow_all=True, subject_prefix="one:"),
            "two": review.table(allow_all=True, subject_prefix="two:")}
    config = parse_config({"upstreams": both, "users": {"alice": _user()}})
    assert [u.subject_prefix for u in config.upstreams.values()] == ["one:", "two:"]
    assert parse_config({"upstreams": {"one": review.table(allow_all=True)}}).upstreams


def test_h3_userinfo_never_answers_an_upstream_login_with_a_local_users_profile(
        review: Review, person: Person) -> None:
    """An upstream account named like local alice (a configuration the loader refuses, given
    to the server anyway), copying no claims: userinfo is the login's, not alice's profile."""
    started, consent = come_back(review, person, "bare", {"sub": "x",
                                                          "preferred_username": "alice"})
    tokens = approved_tokens(review, person, started, consent)
    assert claims_of(tokens["id_token"])["sub"] == "alice"
    assert userinfo(review, tokens["access_token"]) == {"sub": "alice"}


# -- M5: userinfo keeps a login's claims as long as the login lives -------------------------------


def test_m5_a_refresh_keeps_the_logins_claims_for_userinfo(review: Review,
                                                           person: Person) -> None:
    started, consent = come_back(review, person, "corp", {
        "sub": "x", "preferred_username": "fay", "email": "fay@example.org",
        "email_verified": True, "name": "Fay"})
    tokens = approved_tokens(review, person, started, consent)
    redeemed_by = time.time()  # the login's claims were kept until before this + REFRESH_SECONDS
    family = claims_of(tokens["access_token"])["sid"]
    time.sleep(1.1)  # so that the refresh's new expiry is later than the first one
    refreshed = httpx.post(f"{review.keyturn.issuer}/token", data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
        "client_id": "demo"}, trust_env=False).json()
    # Past the first refresh token's lifetime, the claims are still there for the new one's.
    later = redeemed_by + REFRESH_SECONDS + 0.5
    assert login_claims(review.keyturn.storage, family, later) == {"email": "fay@example.org",
                                                                   "name": "Fay"}
    assert userinfo(review, refreshed["access_token"]) == {
        "sub": "corp:fay", "email": "fay@example.org", "name": "Fay"}


# -- M1: a deadline per call, bounded calls, one client per upstream ------------------------------


def test_m1_an_upstream_that_drips_its_answer_gets_the_clear_page_at_the_deadline(
        review: Review, person: Person) -> None:
    """httpx's timeouts are per read: without a deadline the press would wait ~90 s (the
    person's own client gives up at 30 s)."""
    started = start_device(review.keyturn.issuer)
    answer = person.press("slow", started["user_code"])
    assert answer.status_code == 502 and "could not be reached" in answer.text
    assert answer.headers["retry-after"] == "60" and "refresh" not in answer.text
    assert pending(review.keyturn.issuer, started["device_code"])


def test_m1_past_max_calls_a_press_fails_at_once_without_a_connection(review: Review) -> None:
    from keyturn.server.upstreams.calls import MAX_CALLS

    issuer = review.keyturn.issuer
    codes = [start_device(issuer)["user_code"] for _ in range(MAX_CALLS + 1)]
    before = sum(review.slow.requests.values())
    people = [Person(issuer) for _ in codes]
    answers: list[int] = []
    try:
        pressing = [threading.Thread(target=lambda p=p, c=c: answers.append(
            p.press("slow", c).status_code)) for p, c in zip(people, codes, strict=True)]
        for thread in pressing:
            thread.start()
        for thread in pressing:
            thread.join(timeout=60)
    finally:
        for someone in people:
            someone.close()
    assert answers == [502] * (MAX_CALLS + 1)
    # MAX_CALLS discovery requests reached the upstream, all at once (each was cut at its
    # deadline); the one press past them never opened a connection.
    assert sum(review.slow.requests.values()) - before == MAX_CALLS


def test_m1_one_connection_pool_per_upstream(review: Review, person: Person) -> None:
    """A sign-in's calls (discovery, token, JWKS) and the next sign-in's go over the upstream's
    one kept-alive connection, not a new client (and connection) per call."""
    review.op.peers.clear()
    for name in ("gia", "hal"):
        _, consent = come_back(review, person, "corp", {
            "sub": name, "preferred_username": name, "groups": ["staff"]})
        assert shows_consent_for(consent, f"corp:{name}")
    assert len(review.op.peers) == 1, review.op.peers


# -- M3: the JWKS is read again after JWKS_SECONDS ------------------------------------------------


def test_m3_a_key_the_provider_removed_is_trusted_no_longer_than_jwks_seconds() -> None:
    """The provider drops k1 (compromised) from its JWKS; whoever holds k1 keeps signing with
    it. Within JWKS_SECONDS of the last read it still passes; after, the JWKS is read again and
    the id_token is refused. A token with a kid never seen is fetched for at once."""
    from keyturn.secret import Secret
    from keyturn.server.upstreams.client import JWKS_SECONDS, UpstreamClient, UpstreamRefused
    from keyturn.server.upstreams.flow import begin

    op = HostileProvider().start()
    op.claims = {"sub": "ivy"}
    upstream = parse_config({"upstreams": {"idp": {
        "issuer": op.issuer, "client_id": "c", "client_secret": "s",
        "allow_all": True}}}).upstreams["idp"]
    clock = [1000.0]
    client = UpstreamClient(upstream, clock=lambda: clock[0])

    async def sign_in() -> str:
        metadata = await client.metadata()
        request, _, _ = begin(upstream, metadata, "http://127.0.0.1:9/device/callback", "BCDF",
                              time.time())
        async with httpx.AsyncClient(trust_env=False) as browser:
            back = (await browser.get(request.url)).headers["location"]
        code = parse_qs(urlsplit(back).query)["code"][0]
        return str((await client.sign_in(request, Secret.wrap(code), metadata))["sub"])

    async def scenario() -> None:
        try:
            assert await sign_in() == "ivy"
            op.published = ["k2"]  # k1 removed; the attacker still signs with it
            clock[0] += JWKS_SECONDS - 1
            assert await sign_in() == "ivy"  # the cache is at most JWKS_SECONDS old
            reads = op.requests["/jwks"]
            clock[0] += 2
            with pytest.raises(UpstreamRefused):
                await sign_in()
            assert op.requests["/jwks"] > reads
            op.signing = "k2"  # the provider's real key: known from that read
            assert await sign_in() == "ivy"
            # M1: every call of those five sign-ins went over one kept-alive connection, which
            # aclose (the server's shutdown) closes.
            assert op.open_connections == 1
        finally:
            await client.aclose()
        for _ in range(100):  # the provider's handler sees the end of the connection soon
            if op.open_connections == 0:
                break
            await asyncio.sleep(0.05)
        assert op.open_connections == 0

    try:
        asyncio.run(scenario())
    finally:
        op.stop()


# -- M2: presses are counted ----------------------------------------------------------------------


def limited(page: httpx.Response) -> bool:
    return (page.status_code == 429 and "Too many sign-in attempts" in page.text
            and "refresh" not in page.text and "keyturn_upstream=" not in
            page.headers.get("set-cookie", ""))


def test_m2_one_user_code_gets_five_presses_a_window(review: Review, person: Person) -> None:
    started = start_device(review.keyturn.issuer)
    for _ in range(5):  # default upstream_presses_per_code
        assert person.start("corp", started["user_code"])
    refused = person.press("corp", started["user_code"])
    assert limited(refused), refused.text
    assert refused.headers["retry-after"] == "3600"  # make_config's window
    # Another code from the same address is still served.
    assert person.start("corp", start_device(review.keyturn.issuer)["user_code"])


def test_m2_one_address_gets_upstream_presses_per_address(tmp_path: Path) -> None:
    op = HostileProvider().start()
    try:
        table = {"issuer": op.issuer, "client_id": "c", "client_secret": "s", "allow_all": True}
        base = make_config(users={})
        config = replace(base, upstreams=parse_config({"upstreams": {"idp": table}}).upstreams,
                         rate_limits=replace(base.rate_limits, upstream_presses_per_address=3))
        with ServerThread(config, data_dir=tmp_path / "keyturn") as keyturn:
            someone = Person(keyturn.issuer)
            try:
                for _ in range(3):
                    assert someone.start("idp", start_device(keyturn.issuer)["user_code"])
                refused = someone.press("idp", start_device(keyturn.issuer)["user_code"])
            finally:
                someone.close()
        assert limited(refused), refused.text
        with pytest.raises(ConfigError, match="upstream_presses_per_code must be a positive"):
            parse_config({"rate_limits": {"upstream_presses_per_code": 0}})
    finally:
        op.stop()


# -- M4: tossed cookies, cross-site posts ---------------------------------------------------------


def _form_posts(review: Review, person: Person) -> list[tuple[str, dict[str, str]]]:
    """The three POST routes of the pages, each with a valid CSRF cookie and field."""
    started = start_device(review.keyturn.issuer)
    person.press("corp", started["user_code"])  # sets person.csrf
    form = {"csrf": person.csrf, "user_code": started["user_code"]}
    return [("/device/upstream/corp", form), ("/device", {**form, "username": "alice",
                                                          "password": "wrong"}),
            ("/device/decision", {"csrf": person.csrf, "ticket": "x", "decision": "approve"})]


@pytest.mark.parametrize("headers", [
    {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
    {"Origin": "https://evil.example"}, {"Origin": "http://127.0.0.1:1"},
    {"Sec-Fetch-Site": "same-origin", "Origin": "https://evil.example"},
])
def test_m4_a_post_the_browser_says_came_from_elsewhere_is_refused(
        review: Review, person: Person, headers: dict[str, str]) -> None:
    for path, form in _form_posts(review, person):
        answer = person.http.post(f"{review.keyturn.issuer}{path}", data=form, headers=headers)
        assert answer.status_code == 403 and "The form expired" in answer.text, (path, answer)
        assert "refresh" not in answer.text and "ticket" not in answer.text


@pytest.mark.parametrize("headers", [
    {}, {"Sec-Fetch-Site": "same-origin"}, {"Origin": "null"},  # no-referrer pages send null
    {"Sec-Fetch-Site": "same-origin", "Origin": "SAME"},
])
def test_m4_a_post_from_the_pages_own_form_is_served(review: Review, person: Person,
                                                     headers: dict[str, str]) -> None:
    if headers.get("Origin") == "SAME":
        headers = {**headers, "Origin": review.keyturn.issuer}
    started = start_device(review.keyturn.issuer)
    person.press("corp", started["user_code"])
    answer = person.http.post(f"{review.keyturn.issuer}/device/upstream/corp", headers=headers,
                              data={"csrf": person.csrf, "user_code": started["user_code"]})
    assert answer.status_code == 200 and "http-equiv=refresh" in answer.text, answer.text


def test_m4_over_https_the_cookies_are_host_prefixed_and_a_tossed_one_is_ignored(
        review: Review, tmp_path: Path) -> None:
    """The issuer is https (TLS ends at a proxy in front): the CSRF and browser cookies are
    __Host- (Secure, Path=/), which no sibling subdomain can set; the plain-named cookie such a
    sibling could toss opens nothing."""
    from keyturn.server.fetchsite import origin_of

    issuer = "https://login.example.test"
    config = replace(review.keyturn.config, issuer=issuer)
    with ServerThread(config, data_dir=tmp_path / "keyturn") as keyturn:
        direct = f"http://127.0.0.1:{keyturn._sock.getsockname()[1]}"
        with httpx.Client(base_url=direct, trust_env=False, timeout=30) as http:
            page = http.get("/device")
            cookie = page.headers["set-cookie"]
            assert cookie.startswith("__Host-keyturn_csrf=") and "Path=/;" in cookie
            assert "Secure" in cookie and "HttpOnly" in cookie
            csrf = cookie.split(";", 1)[0].split("=", 1)[1]
            started = start_device(direct)
            form = {"csrf": csrf, "user_code": started["user_code"]}
            tossed = http.post("/device/upstream/corp", data=form,
                               headers={"Cookie": f"keyturn_csrf={csrf}"})
            assert tossed.status_code == 403 and "The form expired" in tossed.text
            pressed = http.post("/device/upstream/corp", data=form, headers={
                "Cookie": f"__Host-keyturn_csrf={csrf}", "Origin": origin_of(issuer),
                "Sec-Fetch-Site": "same-origin"})
            assert pressed.status_code == 200 and "http-equiv=refresh" in pressed.text
            browser = pressed.headers["set-cookie"]
            assert browser.startswith("__Host-keyturn_upstream=") and "Path=/;" in browser
            assert "Secure" in browser


# -- L3, L5, L6 -----------------------------------------------------------------------------------


def test_l3_email_rules_and_email_subjects_ignore_case(review: Review) -> None:
    from keyturn.server.upstreams.flow import admitted, map_user

    upstream = parse_config({"upstreams": {"corp": review.table(
        subject_claim="email", allow=[{"claim": "email", "ends_with": "@Example.org"},
                                      {"claim": "email", "equals": "Boss@Other.org"},
                                      {"claim": "preferred_username", "equals": "józef"}])}}
    ).upstreams["corp"]
    verified = {"email_verified": True}
    assert admitted(upstream, {"email": "alice@EXAMPLE.ORG", **verified})
    assert admitted(upstream, {"email": "boss@other.ORG", **verified})
    assert not admitted(upstream, {"email": "alice@example.org.evil.test", **verified})
    assert admitted(upstream, {"preferred_username": "józef"})  # not ASCII: no TypeError
    assert not admitted(upstream, {"preferred_username": "Józef"})  # names stay exact
    one = map_user(upstream, {"email": "Alice@Example.ORG", **verified})
    other = map_user(upstream, {"email": "alice@example.org", **verified})
    assert one is not None and other is not None and one.subject == other.subject == \
        "alice@example.org"


@pytest.mark.parametrize("claim", ["groups", "roles", "amr"])
def test_l5_a_string_test_on_a_list_claim_is_refused_at_load(review: Review, claim: str) -> None:
    for kind in ("equals", "ends_with"):
        with pytest.raises(ConfigError, match=f"{claim} is a list of values: test it with "
                                              "contains"):
            parse_config({"upstreams": {"x": review.table(allow=[{"claim": claim, kind: "v"}])}})
    assert parse_config({"upstreams": {"x": review.table(
        allow=[{"claim": claim, "contains": "v"}])}}).upstreams


def test_l6_a_replica_whose_clock_is_a_little_behind_takes_a_fresh_login() -> None:
    from keyturn.server.upstreams.flow import CLOCK_SKEW, LOGIN_LIFETIME, PendingLogin

    now = time.time()
    login = PendingLogin(upstream="corp", user_code="BCDFGHJK", created_at=now + 5,
                         nonce="n", code_verifier="v", browser="b")
    assert not login.stale(now)  # stored by a replica 5 s ahead
    assert replace(login, created_at=now + CLOCK_SKEW + 1).stale(now)
    assert replace(login, created_at=now - LOGIN_LIFETIME).stale(now)
    assert not replace(login, created_at=now - LOGIN_LIFETIME + 1).stale(now)


# -- L2: prompt = "login" is checked ----------------------------------------------------------------


@pytest.mark.parametrize("auth_time", ["missing", -3600, "now-string", True])
def test_l2_a_provider_that_did_not_ask_again_is_refused(review: Review, person: Person,
                                                         auth_time: object) -> None:
    claims: dict[str, Any] = {"sub": "x", "preferred_username": "kim"}
    if auth_time == -3600:
        claims["auth_time"] = int(time.time()) - 3600  # the session of an hour ago
    elif auth_time == "now-string":
        claims["auth_time"] = str(int(time.time()))
    elif auth_time is True:
        claims["auth_time"] = True
    started, page = come_back(review, person, "fresh", claims)
    assert page.status_code == 403 and "did not ask you to sign in again" in page.text
    assert "name=ticket" not in page.text and pending(review.keyturn.issuer,
                                                      started["device_code"])


def test_l2_prompt_login_sends_max_age_0_and_a_fresh_auth_time_passes(review: Review,
                                                                      person: Person) -> None:
    started = start_device(review.keyturn.issuer)
    to_upstream = person.start("fresh", started["user_code"])
    query = parse_qs(urlsplit(to_upstream).query)
    assert query["prompt"] == ["login"] and query["max_age"] == ["0"]
    review.op.claims = {"sub": "x", "preferred_username": "lee", "auth_time": int(time.time())}
    back = httpx.get(to_upstream, trust_env=False).headers["location"]
    assert shows_consent_for(person.back(back), "fresh:lee")
    # Without prompt = "login", no max_age and no auth_time needed.
    corp = parse_qs(urlsplit(person.start("corp", start_device(
        review.keyturn.issuer)["user_code"])).query)
    assert "max_age" not in corp and "prompt" not in corp
