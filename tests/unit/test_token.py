"""keyturn.token: the Token value type and refresh-ahead arithmetic."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import pickle
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyturn.errors import StoreError
from keyturn.token import Deadlines, Token, fingerprint, monotonic_deadlines, refresh_margin

WALL = 1_700_000_000.0
MONO = 5_000.0

ACCESS = "eyJhbGciOi.ACCESS-secret-value"
REFRESH = "REFRESH-secret-value"
ID_TOKEN = "eyJ.ID-TOKEN-secret-value"


def _full() -> Token:
    return Token(
        access_token=ACCESS, token_type="Bearer", expires_at=WALL + 3600, issued_at=WALL,
        scope=("openid", "api"), refresh_token=REFRESH, id_token=ID_TOKEN,
        refresh_expires_at=WALL + 86400, extra={"id_token_claims": {"sub": "alice"}, "n": 1},
    )


# -- no secrets in repr or pickle -----------------------------------------------------------------------


def test_repr_shows_no_token() -> None:
    token = _full()
    for text in (repr(token), str(token), f"{token}", f"{token!r}", repr([token]), repr({"t": token})):
        assert ACCESS not in text
        assert REFRESH not in text
        assert ID_TOKEN not in text
        assert "secret" not in text
    text = repr(token)
    assert f"sha256:{fingerprint(ACCESS)}" in text
    assert "refresh=yes" in text and "id_token=yes" in text
    assert "expires_at=1700003600" in text


def test_repr_of_a_bare_token() -> None:
    text = repr(Token(access_token=ACCESS))
    assert "expires_at=never" in text and "refresh=no" in text and ACCESS not in text


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_token_cannot_be_pickled(protocol: int) -> None:
    with pytest.raises(TypeError, match="cannot be pickled") as info:
        pickle.dumps(_full(), protocol=protocol)
    assert ACCESS not in str(info.value)


def test_token_cannot_be_deep_copied_into_a_pickle_path() -> None:
    # copy goes through the same __reduce__: no route around the refusal.
    with pytest.raises(TypeError):
        copy.deepcopy(_full())


def test_fingerprint() -> None:
    assert fingerprint(None) == "-"
    assert fingerprint("") == "-"
    assert fingerprint("abc") == "ba7816bf"
    assert fingerprint("abc") != fingerprint("abd")


# -- records ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [
    _full(),
    Token(access_token="a"),
    Token(access_token="a", expires_at=WALL, issued_at=WALL - 10, scope=()),
    Token.refresh_only("rt"),
])
def test_record_round_trip(token: Token) -> None:
    record = token.to_record()
    assert Token.from_record(record) == token
    # Records go through JSON in every shared store.
    assert Token.from_record(json.loads(json.dumps(record))) == token


def test_record_holds_the_secrets_stores_need() -> None:
    record = _full().to_record()
    assert record["access_token"] == ACCESS
    assert record["refresh_token"] == REFRESH
    assert record["scope"] == ["openid", "api"]


@pytest.mark.parametrize("record", [
    {},
    {"access_token": 5},
    {"access_token": None},
    {"access_token": ACCESS, "expires_at": "tomorrow"},
    {"access_token": ACCESS, "issued_at": "x"},
    {"access_token": ACCESS, "extra": "not-a-mapping"},
    {"access_token": ACCESS, "refresh_expires_at": [1]},
])
def test_malformed_record_is_a_store_error_without_secrets(record: dict[str, object]) -> None:
    with pytest.raises(StoreError) as info:
        Token.from_record(record)
    assert ACCESS not in str(info.value)


def test_from_record_defaults() -> None:
    token = Token.from_record({"access_token": "a", "token_type": "", "scope": "not-a-list"})
    assert token.token_type == "Bearer"
    assert token.scope is None
    assert token.issued_at == 0.0


# -- small helpers ------------------------------------------------------------------------------------


def test_lifetime_and_expires_in() -> None:
    token = _full()
    assert token.lifetime == 3600
    assert token.expires_in(WALL + 600) == 3000
    assert token.expires_in(WALL + 4000) == -400
    assert Token(access_token="a").lifetime is None
    assert Token(access_token="a").expires_in(WALL) is None
    # A server clock behind ours never yields a negative lifetime.
    assert Token(access_token="a", expires_at=WALL - 5, issued_at=WALL).lifetime == 0.0


def test_claims() -> None:
    assert _full().claims == {"sub": "alice"}
    assert Token(access_token="a").claims == {}
    assert Token(access_token="a", extra={"id_token_claims": "junk"}).claims == {}


def test_with_refresh_token_keeps_everything_else() -> None:
    token = _full()
    other = token.with_refresh_token("new-rt")
    assert other.refresh_token == "new-rt"
    assert other.to_record() | {"refresh_token": REFRESH} == token.to_record()
    assert token.refresh_token == REFRESH


def test_the_authorization_value_is_rendered_once_and_kept_out_of_repr_and_equality() -> None:
    token = _full()
    assert token.authorization() is token.authorization() == f"Bearer {ACCESS}"
    assert ACCESS not in repr(token)
    assert token == _full() and token.to_record() == _full().to_record()
    # A token made from another renders its own.
    assert dataclasses.replace(token, token_type="DPoP").authorization() == f"DPoP {ACCESS}"
    assert token.with_refresh_token(None).authorization() == f"Bearer {ACCESS}"
    assert Token.from_record(token.to_record() | {"token_type": "bearer"}).authorization() == (
        f"Bearer {ACCESS}")


def test_refresh_only_is_already_expired() -> None:
    token = Token.refresh_only("rt")
    assert token.access_token == ""
    assert token.refresh_token == "rt"
    assert token.expires_at == 0.0
    assert (token.expires_in(WALL) or 0) < 0


# -- refresh_margin ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("lifetime", "leeway", "margin"), [
    (None, 60, 0.0),
    (3600, 60, 60.0),
    (120, 60, 60.0),
    (119, 60, 59.5),
    (30, 60, 15.0),
    (1, 60, 0.5),
    (0, 60, 0.0),
    (3600, 0, 0.0),
])
def test_refresh_margin_caps_the_leeway_at_half_the_lifetime(
    lifetime: float | None, leeway: float, margin: float
) -> None:
    assert refresh_margin(lifetime, leeway) == margin


def test_refresh_margin_is_the_one_of_paths_the_fast_path_applies() -> None:
    # keyturn.token.refresh_margin stays importable; the rule itself lives once, stdlib-only.
    from keyturn import paths

    assert refresh_margin is paths.refresh_margin


# -- monotonic_deadlines ---------------------------------------------------------------------------------


def _token(lifetime: float, issued: float = WALL) -> Token:
    return Token(access_token="a", expires_at=issued + lifetime, issued_at=issued)


def test_deadlines_without_expiry_never_refresh() -> None:
    deadlines = monotonic_deadlines(Token(access_token="a"), wall_now=WALL, mono_now=MONO, leeway=60)
    assert deadlines == Deadlines(math.inf, math.inf)


def test_deadlines_convert_wall_to_monotonic() -> None:
    deadlines = monotonic_deadlines(_token(3600, issued=WALL - 600), wall_now=WALL, mono_now=MONO,
                                    leeway=60, jitter=0.0)
    assert deadlines.expires_at == MONO + 3000
    assert deadlines.refresh_at == MONO + 3000 - 60


def test_short_lived_token_does_not_loop() -> None:
    # 30 s tokens and a 60 s leeway: refresh 15 s before expiry, not immediately.
    deadlines = monotonic_deadlines(_token(30), wall_now=WALL, mono_now=MONO, leeway=60, jitter=0.0)
    assert deadlines.refresh_at == MONO + 15
    assert deadlines.refresh_at > MONO


def test_already_expired_token_is_due_now() -> None:
    deadlines = monotonic_deadlines(_token(3600, issued=WALL - 7200), wall_now=WALL, mono_now=MONO,
                                    leeway=60, jitter=0.0)
    assert deadlines.expires_at == MONO - 3600
    assert deadlines.refresh_at < MONO


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize(("lifetime", "leeway", "jitter"), [(3600, 60, 0.1), (30, 60, 0.5), (600, 300, 1.0)])
def test_jitter_stays_within_its_band(seed: int, lifetime: float, leeway: float, jitter: float) -> None:
    deadlines = monotonic_deadlines(_token(lifetime), wall_now=WALL, mono_now=MONO, leeway=leeway,
                                    jitter=jitter, rng=random.Random(seed))
    margin = refresh_margin(lifetime, leeway)
    expiry = MONO + lifetime
    assert deadlines.expires_at == expiry
    assert expiry - margin * (1 + jitter) <= deadlines.refresh_at <= expiry - margin


def test_jitter_actually_spreads() -> None:
    moments = {
        monotonic_deadlines(_token(3600), wall_now=WALL, mono_now=MONO, leeway=60, jitter=0.1,
                            rng=random.Random(seed)).refresh_at
        for seed in range(20)
    }
    assert len(moments) > 10


@settings(max_examples=300, derandomize=True, deadline=None, database=None)
@given(
    lifetime=st.floats(min_value=0.001, max_value=1e7, allow_nan=False),
    leeway=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    jitter=st.floats(min_value=0, max_value=1),
    elapsed=st.floats(min_value=0, max_value=1e7, allow_nan=False),
    seed=st.integers(0, 2**32),
)
def test_deadline_properties(lifetime: float, leeway: float, jitter: float, elapsed: float,
                             seed: int) -> None:
    token = _token(lifetime, issued=WALL - elapsed)
    deadlines = monotonic_deadlines(token, wall_now=WALL, mono_now=MONO, leeway=leeway, jitter=jitter,
                                    rng=random.Random(seed))
    margin = refresh_margin(lifetime, leeway)
    assert 0 <= margin <= leeway
    assert margin <= lifetime / 2
    assert deadlines.refresh_at <= deadlines.expires_at
    # Measured from when the token was issued, the refresh comes no sooner than a (1 - jitter)/2
    # of its lifetime: a freshly issued token is never due at once, whatever the leeway.
    issued_mono = MONO - elapsed
    slack = 1e-6 * max(1.0, abs(MONO) + lifetime + elapsed)
    assert deadlines.refresh_at - issued_mono >= lifetime * (1 - jitter) / 2 - slack
