"""1. The cached path: ns per "give me a valid token" call, keyturn beside a floor and its peers."""

from __future__ import annotations

import asyncio
import gc
import time
import timeit
from collections.abc import Callable
from typing import Any

import peers
from _infra import Config, Timing, median

# The floor: the least a token cache can do per call, written plainly: one function call, one
# dict lookup (the cache entry: token and refresh deadline), one time.monotonic() and a compare.
_FLOOR_CACHE: dict[str, tuple[str, float]] = {}
_TOKEN = "x" * 43


def floor_get_token() -> str:
    entry = _FLOOR_CACHE["key"]
    if time.monotonic() < entry[1]:
        return entry[0]
    raise RuntimeError("unreachable: the floor's token never expires")


def empty_call() -> str:
    return _TOKEN


async def async_floor_get_token() -> str:
    """The floor of an async cache: the same lookup and clock read in one coroutine."""
    entry = _FLOOR_CACHE["key"]
    if time.monotonic() < entry[1]:
        return entry[0]
    raise RuntimeError("unreachable: the floor's token never expires")


def _row(group: str, library: str, call: str, fn: Callable[[], Any] | None = None, *,
         afn: Callable[[], Any] | None = None, client: str | None = None) -> dict[str, Any]:
    # Async calls compare with the async floor (one coroutine doing the floor's work), sync ones
    # with the sync floor.
    floor = "async floor" if afn is not None else "floor"
    return {"group": group, "library": library, "call": call, "fn": fn, "afn": afn, "client": client,
            "floor": floor}


def cached_rows(env: peers.Env) -> list[dict[str, Any]]:
    import httpx
    import requests

    url = env.fast_url
    rows: list[dict[str, Any]] = []
    _FLOOR_CACHE["key"] = (_TOKEN, time.monotonic() + 10**9)
    rows.append(_row("reference", "-", "empty function call: def f(): return TOKEN", empty_call))
    rows.append(_row("reference", "floor", "def f(): e = CACHE[key]; if time.monotonic() < e[1]: "
                     "return e[0]", floor_get_token))

    group = "get a valid token"
    kt_mem = peers.keyturn_cc(env, "memory")
    kt_mem.get_access_token()
    rows.append(_row(group, "keyturn", "ClientCredentials(store=MemoryStore()).get_access_token()",
                     kt_mem.get_access_token, client="basic"))
    kt_file = peers.keyturn_cc(env, "file")
    kt_file.get_access_token()
    rows.append(_row(group, "keyturn", "ClientCredentials(store=FileStore(dir)).get_access_token()",
                     kt_file.get_access_token, client="basic"))
    kt_rt = peers.keyturn_rt(env, env.provider.mint_refresh_token("post"))
    kt_rt.get_access_token()
    rows.append(_row(group, "keyturn", "RefreshToken(store=MemoryStore()).get_access_token()",
                     kt_rt.get_access_token, client="post"))
    al = peers.authlib_client(env)
    rows.append(_row(group, "authlib", "OAuth2Client: ensure_active_token(c.token); "
                     "c.token['access_token']", lambda: peers.authlib_get_token(al), client="basic"))
    app = peers.msal_app(env)
    peers.msal_get_token(app)
    rows.append(_row(group, "msal", "ConfidentialClientApplication.acquire_token_for_client"
                     "(scopes=[...]) (cache hit)", lambda: peers.msal_get_token(app), client="post"))
    creds, greq = peers.google_credentials(env, env.provider.mint_refresh_token("post"))
    peers.google_get_token(creds, greq)
    rows.append(_row(group, "google-auth", "Credentials: if not c.valid: c.refresh(req); c.token",
                     lambda: peers.google_get_token(creds, greq), client="post"))

    # The cached path of libraries that only offer an auth= object is their per-request step.
    group = "per-request hook, no I/O"
    hx_request = httpx.Request("GET", url)
    rows.append(_row(group, "keyturn", "httpx: next(source.sync_auth_flow(request))",
                     lambda: next(kt_mem.sync_auth_flow(hx_request)), client="basic"))
    hxa = peers.httpx_auth_cc(env)
    peers.httpx_auth_reset()
    peers.httpx_auth_get_token(hxa, hx_request)
    rows.append(_row(group, "httpx-auth", "httpx: next(OAuth2ClientCredentials.sync_auth_flow(request))",
                     lambda: next(hxa.sync_auth_flow(hx_request)), client="basic"))

    def authlib_per_request() -> Any:
        al.ensure_active_token(al.token)
        return next(al.token_auth.sync_auth_flow(hx_request))

    rows.append(_row(group, "authlib", "OAuth2Client.request's token step: ensure_active_token() + "
                     "next(token_auth.sync_auth_flow(request))", authlib_per_request, client="basic"))
    prepared = requests.Request("GET", url).prepare()

    def keyturn_requests_hook() -> Any:
        prepared.hooks["response"] = []  # keyturn registers its 401 hook on each call
        return kt_mem(prepared)

    rows.append(_row(group, "keyturn", "requests: source(prepared_request)", keyturn_requests_hook,
                     client="basic"))
    ro = peers.roauthlib_session(env)
    rows.append(_row(group, "requests-oauthlib", "OAuth2Session.request's token step: "
                     "session._client.add_token(url) (expiry check + header)",
                     lambda: peers.roauthlib_add_token(ro, url), client="basic"))
    rows.append(_row(group, "google-auth", "credentials.before_request(request, 'GET', url, headers) "
                     "(what AuthorizedSession calls)", lambda: peers.google_before_request(creds, greq, url),
                     client="post"))

    group = "get a valid token, async"
    rows.append(_row("reference", "async floor", "async def f(): e = CACHE[key]; if "
                     "time.monotonic() < e[1]: return e[0]", afn=async_floor_get_token))
    rows.append(_row(group, "keyturn", "await source.aget_access_token() (MemoryStore)",
                     afn=kt_mem.aget_access_token, client="basic"))
    return rows


async def _authlib_async_row(env: peers.Env) -> tuple[dict[str, Any], Any]:
    """authlib's AsyncOAuth2Client lives in the event loop that times it."""
    from authlib.integrations.httpx_client import AsyncOAuth2Client

    client = AsyncOAuth2Client(
        client_id="basic", client_secret=env.secret("basic"), scope=peers.SCOPE,
        token_endpoint=env.token_endpoint, grant_type="client_credentials", trust_env=False,
    )
    await client.fetch_token()

    async def get() -> str:
        await client.ensure_active_token(client.token)
        return str(client.token["access_token"])

    row = _row("get a valid token, async", "authlib", "AsyncOAuth2Client: await ensure_active_token"
               "(c.token); c.token['access_token'] (takes an anyio lock every call)", afn=get,
               client="basic")
    return row, client


async def _measure(row: dict[str, Any], number: int) -> float:
    """Seconds for ``number`` calls of the row, gc off (as timeit)."""
    if row["fn"] is not None:
        return timeit.Timer(row["fn"]).timeit(number)
    afn = row["afn"]
    gc_was = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(number):
            await afn()
        return time.perf_counter() - start
    finally:
        if gc_was:
            gc.enable()


async def _calibrate(row: dict[str, Any], target_s: float) -> int:
    """timeit.autorange's idea with our target: calls per repeat so a repeat lasts ~target_s."""
    number = 1
    while True:
        elapsed = await _measure(row, number)
        if elapsed >= target_s / 4 or number >= 10**8:
            break
        number *= 10 if elapsed < target_s / 40 else 2
    return max(1, int(number * target_s / max(elapsed, 1e-9)))


def bench_cached(env: peers.Env, cfg: Config) -> dict[str, Any]:
    """Every row's repeats are interleaved (row 1, row 2, ... row 1, row 2, ..., the order rotated
    each repeat), so a slow spell of the machine lands on every row alike; median per row."""
    rows = cached_rows(env)

    async def main() -> tuple[list[Timing], int]:
        row, client = await _authlib_async_row(env)
        rows.append(row)
        numbers = [await _calibrate(r, cfg.cached_target_s) for r in rows]
        env.provider.reset_stats()
        runs: list[list[float]] = [[] for _ in rows]
        for rep in range(cfg.cached_repeats):
            for k in range(len(rows)):
                i = (rep + k) % len(rows)
                runs[i].append(await _measure(rows[i], numbers[i]) / numbers[i] * 1e9)
        requests_made = int(env.provider.stats()["total"])
        await client.aclose()
        timings = [Timing(median(r), min(r), n, cfg.cached_repeats) for r, n in zip(runs, numbers)]
        return timings, requests_made

    timings, requests_made = asyncio.run(main())
    floors = {r["library"]: t for r, t in zip(rows, timings) if r["library"] in ("floor", "async floor")}
    out = []
    for row, timing in zip(rows, timings):
        floor, floor_min = floors[row["floor"]].ns_median, floors[row["floor"]].ns_min
        out.append({
            "group": row["group"], "library": row["library"], "call": row["call"],
            "ns_per_call_median": round(timing.ns_median, 1), "ns_per_call_min": round(timing.ns_min, 1),
            "floor": row["floor"],
            "ratio_to_floor": round(timing.ns_median / floor, 2),
            # min / floor min: timeit's advice for CPU-bound code on a noisy machine
            "ratio_to_floor_of_mins": round(timing.ns_min / floor_min, 2),
            "calls_per_repeat": timing.number, "repeats": timing.repeats,
        })
    return {"rows": out, "token_requests_during_timing": requests_made}
