"""3. Auth-plugin overhead: requests through httpx / requests with each library's auth object,
against the same client with a hard-coded Authorization header, interleaved."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import _infra
import peers
from _infra import Config, median


def _interleaved(variants: list[tuple[str, str, Callable[[], Any]]], cfg: Config) -> list[dict[str, Any]]:
    """One request per variant per round (A B C ... A B C ...), the order rotated each round, each
    request timed on its own; per variant the median request time; overhead = median / the
    baseline's median - 1 (the baseline is the first variant). Per-request medians are robust to
    this kind of VM's latency spikes, which swamp block averages."""
    rounds = cfg.overhead_requests
    for _, _, fn in variants:  # warm up: connections open, code paths hot
        for _ in range(50):
            fn()
    samples: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    clock = time.perf_counter
    n = len(variants)
    gc_was = gc.isenabled()
    try:
        for r in range(rounds):
            if r % cfg.overhead_gc_every == 0:
                gc.enable()
                gc.collect()  # untimed, between rounds; gc stays off while requests are timed
                gc.disable()
            for k in range(n):
                name, _, fn = variants[(r + k) % n]
                start = clock()
                fn()
                samples[name].append(clock() - start)
    finally:
        if gc_was:
            gc.enable()
    base_name = variants[0][0]
    base = median(samples[base_name]) * 1e6
    out = []
    for name, call, _ in variants:
        values = [x * 1e6 for x in samples[name]]
        med = median(values)
        out.append({
            "variant": name, "call": call, "us_per_request_median": round(med, 1),
            "us_per_request_p90": round(_infra.percentile(values, 90), 1),
            "overhead_pct_vs_baseline": None if name == base_name else round((med / base - 1) * 100, 1),
            "overhead_us_vs_baseline": None if name == base_name else round(med - base, 1),
            "requests": len(values),
        })
    return out


def bench_overhead(env: peers.Env, cfg: Config) -> dict[str, list[dict[str, Any]]]:
    import google.auth.transport.requests
    import httpx
    import requests
    from authlib.integrations.requests_client import OAuth2Session as AuthlibSession

    url = env.fast_url
    kt = peers.keyturn_cc(env, "memory")
    header = {"Authorization": f"Bearer {kt.get_access_token()}"}

    def check(response: Any) -> None:
        if response.status_code != 200:
            raise RuntimeError(f"fast endpoint answered {response.status_code}")

    # httpx. The baselines carry the header as a client default: the request differs from the
    # plugin's only by the auth step. The A/A control is a second identical baseline client: its
    # "overhead" is the noise of the measurement.
    plain = peers._httpx_client(headers=header)
    plain2 = peers._httpx_client(headers=header)
    with_kt = peers._httpx_client(auth=kt)
    hxa = peers.httpx_auth_cc(env)
    peers.httpx_auth_reset()
    peers.httpx_auth_get_token(hxa, httpx.Request("GET", url))
    with_hxa = peers._httpx_client(auth=hxa)
    al = peers.authlib_client(env)
    for client in (plain, plain2, with_kt, with_hxa):
        env.on_close(client.close)
    httpx_variants = [
        ("httpx, hard-coded header", "httpx.Client(headers={'Authorization': 'Bearer …'}).get(url)",
         lambda: check(plain.get(url))),
        ("A/A control", "a second client like the baseline (shows the noise)",
         lambda: check(plain2.get(url))),
        ("keyturn", "httpx.Client(auth=source).get(url)", lambda: check(with_kt.get(url))),
        ("httpx-auth", "httpx.Client(auth=OAuth2ClientCredentials(...)).get(url)",
         lambda: check(with_hxa.get(url))),
        ("authlib", "authlib OAuth2Client(...).get(url) (an httpx.Client subclass)",
         lambda: check(al.get(url))),
    ]
    # requests
    s_plain = peers._requests_session()
    s_plain.headers.update(header)
    s_plain2 = peers._requests_session()
    s_plain2.headers.update(header)
    s_kt = peers._requests_session()
    s_kt.auth = kt
    ro = peers.roauthlib_session(env)
    creds, greq = peers.google_credentials(env, env.provider.mint_refresh_token("post"))
    peers.google_get_token(creds, greq)
    gsession = google.auth.transport.requests.AuthorizedSession(creds)
    gsession.trust_env = False
    als = AuthlibSession(client_id="basic", client_secret=env.secret("basic"), scope=peers.SCOPE,
                         token_endpoint=env.token_endpoint, grant_type="client_credentials")
    als.trust_env = False
    als.fetch_token()
    for session in (s_plain, s_plain2, s_kt, gsession, als):
        env.on_close(session.close)
    assert isinstance(s_plain, requests.Session)
    requests_variants = [
        ("requests, hard-coded header", "session.headers['Authorization'] = 'Bearer …'; session.get(url)",
         lambda: check(s_plain.get(url))),
        ("A/A control", "a second session like the baseline (shows the noise)",
         lambda: check(s_plain2.get(url))),
        ("keyturn", "session.auth = source; session.get(url)", lambda: check(s_kt.get(url))),
        ("requests-oauthlib", "OAuth2Session(client=BackendApplicationClient(...)).get(url)",
         lambda: check(ro.get(url))),
        ("google-auth", "AuthorizedSession(credentials).get(url)", lambda: check(gsession.get(url))),
        ("authlib", "authlib requests_client.OAuth2Session(...).get(url)", lambda: check(als.get(url))),
    ]
    assert isinstance(httpx.Client, type)
    env.provider.reset_stats()
    result = {"httpx": _interleaved(httpx_variants, cfg), "requests": _interleaved(requests_variants, cfg)}
    result["token_requests_during_timing"] = env.provider.stats()["total"]  # type: ignore[assignment]
    env.close()
    return result
