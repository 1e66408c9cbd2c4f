"""Rotating refresh tokens (the `public` client rotates on every use, and the provider revokes the
whole grant when a rotated token is used again): never a spurious invalid_grant."""

from __future__ import annotations

import threading
import time

import pytest

from keyturn import FileStore, InvalidGrant, LoginRequired, MemoryStore, RefreshToken
from tests.support.processes import herd_context


def refresh_source(provider, refresh_token, **kwargs):
    kwargs.setdefault("store", MemoryStore())
    return RefreshToken(issuer=provider.issuer, client_id="public", refresh_token=refresh_token,
                        **kwargs)


def test_rotation_replaces_the_refresh_token(fresh_stats, mode):
    provider = fresh_stats
    initial = provider.mint_refresh_token("public")
    seen: list[str] = []
    source = refresh_source(provider, initial, on_refresh=lambda t: seen.append(t.refresh_token))
    first = mode.token(source)
    assert first.refresh_token and first.refresh_token != initial
    assert seen == [first.refresh_token]
    assert source.cache.store.load(source.cache.key).refresh_token == first.refresh_token
    # The old one is spent: the provider refuses it (and would revoke the grant).
    time.sleep(max(0.0, first.expires_at - time.time()) + 0.05)
    second = mode.token(source)
    assert second.refresh_token not in (initial, first.refresh_token)
    assert provider.token_requests("public", "refresh_token") == 2


def test_8_threads_refreshing_one_rotating_token(fresh_stats):
    provider = fresh_stats
    source = refresh_source(provider, provider.mint_refresh_token("public"))
    barrier = threading.Barrier(8)
    results: list[object] = []

    def call() -> None:
        barrier.wait()
        try:
            results.append(source.get_access_token())
        except Exception as exc:  # collected and asserted below
            results.append(exc)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not [r for r in results if isinstance(r, Exception)]
    assert len(set(results)) == 1
    assert provider.token_requests("public", "refresh_token") == 1


def _refresh_worker(issuer, client_id, refresh_token, path, barrier, queue):
    source = RefreshToken(issuer=issuer, client_id=client_id, refresh_token=refresh_token,
                          store=FileStore(path))
    barrier.wait()
    try:
        queue.put(("ok", source.get_access_token()))
    except Exception as exc:
        queue.put(("error", repr(exc)))


def test_8_processes_share_one_rotating_token(fresh_stats, tmp_path):
    provider = fresh_stats
    # "public-hour" rotates on every use, as "public" does, but its access token lasts an hour:
    # "public"'s 3 s one is due for refresh 1.5 s after it was issued, so on a loaded machine the
    # last of the 8 processes, or the late one below, refreshed again (two requests, two tokens).
    client_id = "public-hour"
    initial = provider.mint_refresh_token(client_id)
    context = herd_context()
    barrier, queue = context.Barrier(8), context.Queue()
    processes = [context.Process(target=_refresh_worker,
                                 args=(provider.issuer, client_id, initial, str(tmp_path), barrier,
                                       queue))
                 for _ in range(8)]
    for process in processes:
        process.start()
    results = [queue.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    assert [r for r in results if r[0] == "error"] == []
    assert len({r[1] for r in results}) == 1
    assert provider.token_requests(client_id, "refresh_token") == 1
    # A process started later with the same (now spent) initial token finds its successor.
    late = RefreshToken(issuer=provider.issuer, client_id=client_id, refresh_token=initial,
                        store=FileStore(tmp_path))
    assert late.get_access_token() == results[0][1]
    # The provider rotated it: the store holds the successor of the spent initial token.
    saved = late.saved_token()
    assert saved is not None and saved.refresh_token not in (None, initial)


def test_a_refused_refresh_token_is_invalid_grant(fresh_stats, mode):
    provider = fresh_stats
    source = refresh_source(provider, "not-a-real-refresh-token")
    with pytest.raises(InvalidGrant) as info:
        mode.access_token(source)
    assert "not-a-real-refresh-token" not in str(info.value)
    assert "log in again" in str(info.value)


def test_refresh_only_source_without_refresh_token_needs_login(fresh_stats, mode):
    provider = fresh_stats
    source = refresh_source(provider, provider.mint_refresh_token("public"))
    mode.logout(source)
    with pytest.raises(LoginRequired):
        mode.access_token(source)


def introspect(provider, token: str) -> bool:
    import httpx

    client = provider.clients["basic"]
    response = httpx.post(provider.introspection_endpoint, data={"token": token},
                          auth=client.basic_auth, trust_env=False)
    return bool(response.json()["active"])


def test_logout_forgets_and_revokes(fresh_stats, tmp_path, mode):
    provider = fresh_stats
    store = FileStore(tmp_path)
    source = refresh_source(provider, provider.mint_refresh_token("public"), store=store)
    token = mode.token(source)
    assert introspect(provider, token.access_token)
    saved = source.saved_token()  # what the store holds, read as it is
    assert saved is not None and saved.access_token == token.access_token
    assert source.cache_key == source.cache.key
    mode.invalidate(source, token.access_token)
    assert source.saved_token().expires_at == 0.0  # kept, refresh token and all, but stale
    refreshed = mode.token(source)
    assert refreshed.access_token != token.access_token
    mode.logout(source)
    assert source.saved_token() is None
    assert store.load(source.cache.key) is None
    assert list(tmp_path.glob("*.json")) == []
    # Revoking the refresh token ends the whole grant: every access token of it.
    assert not introspect(provider, refreshed.access_token)
    assert not introspect(provider, token.access_token)
    with pytest.raises(InvalidGrant):
        RefreshToken(issuer=provider.issuer, client_id="public",
                     refresh_token=refreshed.refresh_token, store=None).get_access_token()


def test_invalid_grant_drops_the_refresh_token(fresh_stats, tmp_path, mode):
    import httpx

    provider = fresh_stats
    store = FileStore(tmp_path)
    source = refresh_source(provider, provider.mint_refresh_token("public"), store=store)
    token = mode.token(source)
    response = httpx.post(provider.revocation_endpoint, trust_env=False, data={
        "token": token.refresh_token, "token_type_hint": "refresh_token", "client_id": "public"})
    assert response.status_code == 200
    time.sleep(max(0.0, token.expires_at - time.time()) + 0.05)
    with pytest.raises(InvalidGrant):
        mode.access_token(source)
    stored = store.load(source.cache.key)
    assert stored is not None and stored.refresh_token is None  # dropped, never sent again
    provider.reset_stats()
    with pytest.raises(LoginRequired):
        mode.access_token(source)
    assert provider.token_requests("public") == 0
