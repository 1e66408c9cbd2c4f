"""Expiry and refresh-ahead for real (the `short` client's tokens live 2 s), and herds of callers:
64 threads, 50 asyncio tasks, 8 processes sharing a FileStore — one token request each time."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from keyturn import ClientCredentials, FileStore, MemoryStore
from tests.support.processes import herd_context


def short_source(provider, **kwargs):
    client = provider.clients["short"]
    kwargs.setdefault("store", MemoryStore())
    return ClientCredentials(issuer=provider.issuer, client_id=client.client_id,
                             client_secret=client.client_secret, **kwargs)


def sleep_until_expired(token) -> None:
    time.sleep(max(0.0, token.expires_at - time.time()) + 0.05)


def test_expiry_makes_exactly_one_new_request(fresh_stats, mode):
    provider = fresh_stats
    source = short_source(provider)
    first = mode.token(source)
    assert first.lifetime == pytest.approx(2, abs=0.5)
    for _ in range(100):
        assert mode.access_token(source) == first.access_token
    assert provider.token_requests("short") == 1
    sleep_until_expired(first)
    second = mode.access_token(source)
    assert second != first.access_token
    for _ in range(100):
        assert mode.access_token(source) == second
    assert provider.token_requests("short") == 2


def test_refresh_ahead_inside_the_leeway(fresh_stats, mode):
    """With a 2 s token the 60 s default leeway is capped at half the lifetime: the token is used
    for about 1 s, then refreshed before it expires; never a refresh per call."""
    provider = fresh_stats
    source = short_source(provider, leeway=60)
    first = mode.token(source)
    time.sleep(1.1)
    assert time.time() < first.expires_at  # still valid, but inside the leeway
    second = mode.access_token(source)
    assert second != first.access_token
    for _ in range(1000):
        mode.access_token(source)
    assert provider.token_requests("short") == 2


def test_64_threads_at_expiry_make_one_request(fresh_stats):
    provider = fresh_stats
    source = short_source(provider)
    sleep_until_expired(source.get_token())
    provider.reset_stats()
    barrier = threading.Barrier(64)
    results: list[str] = []

    def call() -> None:
        barrier.wait()
        results.append(source.get_access_token())

    threads = [threading.Thread(target=call) for _ in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 64 and len(set(results)) == 1
    assert provider.token_requests("short") == 1


def test_50_tasks_at_expiry_make_one_request(fresh_stats):
    provider = fresh_stats
    source = short_source(provider)

    async def herd() -> set[str]:
        first = await source.aget_token()
        await asyncio.sleep(max(0.0, first.expires_at - time.time()) + 0.05)
        provider.reset_stats()
        return set(await asyncio.gather(*(source.aget_access_token() for _ in range(50))))

    tokens = asyncio.run(herd())
    assert len(tokens) == 1
    assert provider.token_requests("short") == 1


def _worker(issuer, client_id, secret, path, barrier, queue):
    source = ClientCredentials(issuer=issuer, client_id=client_id, client_secret=secret,
                               store=FileStore(path))
    barrier.wait()
    queue.put(source.get_access_token())


def _run_processes(provider, path, n=8) -> set[str]:
    client = provider.clients["short"]
    context = herd_context()
    barrier = context.Barrier(n)
    queue = context.Queue()
    processes = [
        context.Process(target=_worker, args=(provider.issuer, client.client_id,
                                              client.client_secret, str(path), barrier, queue))
        for _ in range(n)
    ]
    for process in processes:
        process.start()
    tokens = {queue.get(timeout=60) for _ in range(n)}
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    return tokens


def test_8_processes_sharing_a_file_store_make_one_request(fresh_stats, tmp_path):
    provider = fresh_stats
    tokens = _run_processes(provider, tmp_path)
    assert len(tokens) == 1
    assert provider.token_requests("short") == 1
    # Once it has expired, the herd again makes one request.
    time.sleep(2.1)
    provider.reset_stats()
    again = _run_processes(provider, tmp_path)
    assert len(again) == 1 and again != tokens
    assert provider.token_requests("short") == 1


def test_sync_call_on_an_event_loop_refreshes_in_the_background(fresh_stats):
    """pyFirecREST's async client calls the sync get_access_token() on its event loop: inside the
    leeway it gets the still-valid token at once while a task refreshes."""
    provider = fresh_stats
    source = short_source(provider)

    async def main() -> tuple[str, str, str]:
        first = await source.aget_access_token()
        await asyncio.sleep(1.15)  # inside the leeway (half of 2 s), still valid
        served = source.get_access_token()  # sync, on the loop
        while source.cache.current.access_token == first:
            await asyncio.sleep(0.01)  # the loop is free: the background refresh runs
        return first, served, source.get_access_token()

    first, served, after = asyncio.run(main())
    assert served == first
    assert after != first
    assert provider.token_requests("short") == 2
