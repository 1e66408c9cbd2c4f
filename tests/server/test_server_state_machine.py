"""The device grant's rules (keyturn.server.device_flow), stepped with explicit times: no I/O."""

from __future__ import annotations

import string
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keyturn.server.device_flow import (
    LETTERS,
    TRANSITIONS,
    USER_CODE_ALPHABET,
    DeviceGrantStateError,
    DeviceStatus,
    Event,
    decide_poll,
    format_user_code,
    hash_code,
    new_device_grant,
    normalize_user_code,
)

T0 = 1_000_000.0


def fresh(**changes):
    code, grant = new_device_grant(client_id="demo", scope=("openid",), now=T0, lifetime=1800,
                                   interval=5, user_codes=LETTERS)
    return code, replace(grant, **changes)


def test_codes_have_the_required_shape():
    code, grant = fresh()
    assert len(code) >= 42
    assert set(code) <= set(string.ascii_letters + string.digits + "-_")
    assert len(grant.user_code) == 8 and set(grant.user_code) <= set(USER_CODE_ALPHABET)
    assert grant.device_code_hash == hash_code(code) and code not in repr(grant)
    assert format_user_code("BCDFGHJK") == "BCDF-GHJK"
    assert grant.expires_at == T0 + 1800 and grant.interval == 5


@pytest.mark.parametrize("typed", ["BCDF-GHJK", "bcdf-ghjk", "bcdfghjk", " bcdf ghjk ", "Bcdf_Ghjk"])
def test_user_code_entry_forgives_case_and_dashes(typed):
    assert normalize_user_code(typed, user_codes=LETTERS) == "BCDFGHJK"


@pytest.mark.parametrize("typed", ["", "BCDF-GHJ", "BCDF-GHJKL", "ABCD-EFGH", "BCDF-GHJ1"])
def test_impossible_user_codes_are_refused(typed):
    # too few or too many of the alphabet's characters ("ABCD-EFGH": A and E are not in it)
    assert normalize_user_code(typed, user_codes=LETTERS) is None


@given(st.text(alphabet=USER_CODE_ALPHABET, min_size=8, max_size=8))
def test_shown_code_typed_in_lower_case_normalizes_back(code):
    assert normalize_user_code(format_user_code(code).lower(), user_codes=LETTERS) == code


def test_pending_then_slow_down_then_pending_then_token_then_spent():
    _, grant = fresh()
    first = decide_poll(grant, client_id="demo", now=T0 + 5)
    assert first.error == "authorization_pending" and first.updated is not None
    grant = first.updated
    fast = decide_poll(grant, client_id="demo", now=T0 + 6)
    # slow_down never ends the flow: the grant stays pending and polling goes on.
    assert fast.error == "slow_down" and fast.updated is not None
    assert fast.updated.status is DeviceStatus.PENDING
    grant = fast.updated
    on_time = decide_poll(grant, client_id="demo", now=T0 + 11)
    assert on_time.error == "authorization_pending"
    grant = on_time.updated.approve("alice", T0 + 12)
    assert grant.status is DeviceStatus.APPROVED and grant.subject == "alice"
    # An approved code gives its token even to a client that polls a bit early.
    win = decide_poll(grant, client_id="demo", now=T0 + 13)
    assert win.error is None and win.updated.status is DeviceStatus.CONSUMED
    again = decide_poll(win.updated, client_id="demo", now=T0 + 20)
    assert again.error == "invalid_grant" and again.reused and again.updated is None


def test_denied_expired_unknown_and_foreign_codes():
    _, grant = fresh()
    assert decide_poll(grant.deny(T0 + 1), client_id="demo", now=T0 + 10).error == "access_denied"
    assert decide_poll(grant, client_id="demo", now=T0 + 1800).error == "expired_token"
    approved = grant.approve("alice", T0 + 1)
    assert decide_poll(approved, client_id="demo", now=T0 + 1801).error == "expired_token"
    assert decide_poll(None, client_id="demo", now=T0).error == "invalid_grant"
    assert decide_poll(grant, client_id="other", now=T0 + 10).error == "invalid_grant"


def test_illegal_transitions_name_the_state():
    _, grant = fresh()
    approved = grant.approve("alice", T0 + 1)
    with pytest.raises(DeviceGrantStateError, match="cannot approve in status APPROVED"):
        approved.approve("mallory", T0 + 2)
    with pytest.raises(DeviceGrantStateError, match="cannot redeem in status PENDING"):
        grant.fire(Event.REDEEM, T0 + 2)
    with pytest.raises(DeviceGrantStateError, match="EXPIRED"):
        grant.approve("alice", T0 + 5000)
    with pytest.raises(DeviceGrantStateError, match="DENIED"):
        grant.deny(T0).approve("alice", T0 + 1)


def test_every_change_bumps_the_version_for_compare_and_set():
    _, grant = fresh()
    assert grant.approve("a", T0).version == grant.version + 1
    assert decide_poll(grant, client_id="demo", now=T0 + 5).updated.version == grant.version + 1


def test_table_has_no_way_out_of_final_states():
    for final in (DeviceStatus.DENIED, DeviceStatus.CONSUMED, DeviceStatus.EXPIRED):
        assert TRANSITIONS[final] == {}
