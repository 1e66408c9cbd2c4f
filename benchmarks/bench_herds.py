"""2. Herds with nothing cached: threads, asyncio tasks and processes that all want a token at once;
token requests counted at the provider, wall time, per-caller latency."""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Callable
from typing import Any

import _infra
import peers
from _infra import Config

THREADS = 64
TASKS = 50
PROCESSES = 8




def _herd_entry(kind: str, library: str, setup: str, runs: list[_infra.HerdRun],
                **extra: Any) -> dict[str, Any]:
    entry = {"herd": kind, "library": library, "setup": setup, **_infra.summarize_runs(runs), **extra}
    for key in ("wall_ms_median", "latency_ms_median", "latency_ms_p99", "loop_stall_ms_max",
                "start_spread_ms_median"):
        if key in entry:
            entry[key] = round(entry[key], 2)
    return entry


def _repeat_thread_herd(env: peers.Env, cfg: Config,
                        build: Callable[[], Callable[[], Any]]) -> list[_infra.HerdRun]:
    runs = []
    for _ in range(cfg.herd_repeats):
        call = build()  # a fresh shared object: nothing cached
        env.provider.reset_stats()
        run = _infra.thread_herd(THREADS, call)
        run.token_requests = env.provider.stats()["total"]
        runs.append(run)
        env.close()
    return runs


def bench_thread_herds(env: peers.Env, cfg: Config) -> list[dict[str, Any]]:
    out = []
    n = THREADS

    def kt(store: str, via_proxy: bool = False) -> Callable[[], Any]:
        return peers.keyturn_cc(env, store, via_proxy=via_proxy).get_access_token

    out.append(_herd_entry(f"{n} threads", "keyturn", "one ClientCredentials(MemoryStore), "
                           "get_access_token()", _repeat_thread_herd(env, cfg, lambda: kt("memory"))))
    out.append(_herd_entry(f"{n} threads", "keyturn", "one ClientCredentials(FileStore), "
                           "get_access_token()", _repeat_thread_herd(env, cfg, lambda: kt("file"))))

    def kt_rt() -> Callable[[], Any]:
        return peers.keyturn_rt(env, env.provider.mint_refresh_token("post")).get_access_token

    out.append(_herd_entry(f"{n} threads", "keyturn", "one RefreshToken(MemoryStore), "
                           "get_access_token()", _repeat_thread_herd(env, cfg, kt_rt)))
    peers.shared_ssl_context()
    out.append(_herd_entry(f"{n} threads", "keyturn", "one ClientCredentials(MemoryStore, verify=<an "
                           "ssl.SSLContext built beforehand>) (diagnostic)",
                           _repeat_thread_herd(env, cfg, lambda: peers.keyturn_cc(
                               env, "memory", prebuilt_ssl=True).get_access_token)))
    out.append(_herd_entry(f"{n} threads", "keyturn", "one ClientCredentials via the TLS proxy "
                           "(control for MSAL's path)",
                           _repeat_thread_herd(env, cfg, lambda: kt("memory", True))))

    def authlib() -> Callable[[], Any]:
        client = peers.authlib_client(env, fetch=False)
        return lambda: peers.authlib_get_token(client)

    out.append(_herd_entry(f"{n} threads", "authlib", "one OAuth2Client holding an expired token, "
                           "ensure_active_token()", _repeat_thread_herd(env, cfg, authlib)))

    def roauthlib() -> Callable[[], Any]:
        session = peers.roauthlib_session(env, fetch=False)
        return lambda: peers.roauthlib_get_token(env, session, env.fast_url)

    out.append(_herd_entry(f"{n} threads", "requests-oauthlib", "one OAuth2Session holding an expired "
                           "token; add_token(), on TokenExpiredError fetch_token() (its docs)",
                           _repeat_thread_herd(env, cfg, roauthlib)))

    def msal() -> Callable[[], Any]:
        app = peers.msal_app(env)
        return lambda: peers.msal_get_token(app)

    out.append(_herd_entry(f"{n} threads", "msal", "one ConfidentialClientApplication (empty cache), "
                           "acquire_token_for_client() via the TLS proxy",
                           _repeat_thread_herd(env, cfg, msal)))

    def google() -> Callable[[], Any]:
        creds, req = peers.google_credentials(env, env.provider.mint_refresh_token("post"))
        return lambda: peers.google_before_request(creds, req, env.fast_url)[7:]

    out.append(_herd_entry(f"{n} threads", "google-auth", "one Credentials(refresh_token=...), "
                           "before_request()", _repeat_thread_herd(env, cfg, google)))

    def hxa() -> Callable[[], Any]:
        import httpx

        peers.httpx_auth_reset()
        auth = peers.httpx_auth_cc(env)
        request = httpx.Request("GET", env.fast_url)
        return lambda: peers.httpx_auth_get_token(auth, request)[7:]

    out.append(_herd_entry(f"{n} threads", "httpx-auth", "one OAuth2ClientCredentials (process-wide "
                           "TokenMemoryCache), its auth flow", _repeat_thread_herd(env, cfg, hxa)))
    return out


def _repeat_async_herd(env: peers.Env, cfg: Config, make_call: Callable[[], Any]) -> list[_infra.HerdRun]:
    runs = []
    for _ in range(cfg.herd_repeats):
        env.provider.reset_stats()
        run = _infra.async_herd(TASKS, make_call)
        run.token_requests = env.provider.stats()["total"]
        runs.append(run)
        env.close()
    return runs


def bench_async_herds(env: peers.Env, cfg: Config) -> list[dict[str, Any]]:
    import httpx

    out = []
    n = TASKS
    kind = f"{n} asyncio tasks"
    for store in ("memory", "file"):
        label = "MemoryStore" if store == "memory" else "FileStore"
        out.append(_herd_entry(kind, "keyturn", f"one ClientCredentials({label}), await "
                               "aget_access_token()", _repeat_async_herd(
                                   env, cfg,
                                   lambda store=store: peers.keyturn_cc(env, store).aget_access_token)))

    peers.shared_ssl_context()
    out.append(_herd_entry(kind, "keyturn", "one ClientCredentials(MemoryStore, verify=<an ssl.SSLContext "
                           "built beforehand>), await aget_access_token() (diagnostic)", _repeat_async_herd(
                               env, cfg,
                               lambda: peers.keyturn_cc(env, "memory", prebuilt_ssl=True).aget_access_token)))

    def authlib() -> Any:
        client = peers.authlib_async_client(env)

        async def get() -> str:
            await client.ensure_active_token(client.token)
            return str(client.token["access_token"])

        return get, client.aclose

    out.append(_herd_entry(kind, "authlib", "one AsyncOAuth2Client holding an expired token, await "
                           "ensure_active_token()", _repeat_async_herd(env, cfg, authlib)))

    def hxa() -> Any:
        peers.httpx_auth_reset()
        auth = peers.httpx_auth_cc(env)
        request = httpx.Request("GET", env.fast_url)

        async def get() -> str:
            return (await peers.httpx_auth_aget_token(auth, request))[7:]

        return get

    out.append(_herd_entry(kind, "httpx-auth", "one OAuth2ClientCredentials used by an AsyncClient "
                           "(Auth.async_auth_flow runs its sync flow)", _repeat_async_herd(env, cfg, hxa)))
    return out


def _process_herd(env: peers.Env, kind: str, cfg_for: Callable[[], dict[str, Any]],
                  repeats: int) -> list[_infra.HerdRun]:
    import _procworker

    ctx = multiprocessing.get_context("spawn")
    runs = []
    for _ in range(repeats):
        worker_cfg = cfg_for()
        barrier = ctx.Barrier(PROCESSES + 1)
        queue = ctx.Queue()
        procs = [ctx.Process(target=_procworker.main, args=(kind, worker_cfg, barrier, queue), daemon=True)
                 for _ in range(PROCESSES)]
        # Workers make no token request before the barrier (MSAL's discovery is not one).
        env.provider.reset_stats()
        for proc in procs:
            proc.start()
        run = _infra.HerdRun()
        try:
            barrier.wait(timeout=120)  # every worker has imported and built its object
        except Exception:
            run.errors.append("a worker failed before the barrier")
        results = []
        deadline = time.monotonic() + 120
        while len(results) < PROCESSES and time.monotonic() < deadline:
            try:
                results.append(queue.get(timeout=max(0.1, deadline - time.monotonic())))
            except Exception:
                break
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
        run.timed_out = PROCESSES - len(results)
        for start, end, error, token, logged in results:
            run.logged_errors.extend(logged)
            if start:
                run.starts.append(start)
                run.ends.append(end)
            if error:
                run.errors.append(error)
            elif token:
                run.tokens.append(token)
        run.token_requests = env.provider.stats()["total"]
        runs.append(run)
    return runs


def bench_process_herds(env: peers.Env, cfg: Config) -> list[dict[str, Any]]:
    out = []
    kind = f"{PROCESSES} processes"
    reps = cfg.proc_repeats

    def kt_cfg() -> dict[str, Any]:
        return {"token_endpoint": env.token_endpoint, "client_id": "basic",
                "client_secret": env.secret("basic"), "path": str(env.tmpdir("kt-proc-"))}

    out.append(_herd_entry(kind, "keyturn", "ClientCredentials(FileStore(shared dir)) in each process",
                           _process_herd(env, "keyturn-cc-file", kt_cfg, reps)))

    def msal_cfg() -> dict[str, Any]:
        return {"authority": env.proxy_url, "client_id": "post", "client_secret": env.secret("post"),
                "ca_pem": str(env.tls.ca_pem), "path": str(env.tmpdir("msal-proc-") / "cache.json")}

    out.append(_herd_entry(kind, "msal + msal-extensions", "ConfidentialClientApplication with "
                           "PersistedTokenCache(FilePersistence(shared file)), via the TLS proxy",
                           _process_herd(env, "msal-extensions", msal_cfg, reps)))

    def hxa_cfg() -> dict[str, Any]:
        return {"token_endpoint": env.token_endpoint, "client_id": "basic",
                "client_secret": env.secret("basic"), "path": str(env.tmpdir("hxa-proc-") / "tokens.json")}

    out.append(_herd_entry(kind, "httpx-auth", "OAuth2ClientCredentials with "
                           "JsonTokenFileCache(shared file)",
                           _process_herd(env, "httpx-auth-json", hxa_cfg, reps)))

    def kt_rt_cfg() -> dict[str, Any]:
        return {"token_endpoint": env.token_endpoint, "client_id": "rotating",
                "client_secret": env.secret("rotating"), "path": str(env.tmpdir("kt-rt-proc-")),
                "refresh_token": env.provider.mint_refresh_token("rotating")}

    out.append(_herd_entry(kind, "keyturn", "RefreshToken(FileStore(shared dir)), ROTATING refresh "
                           "token (client 'rotating')",
                           _process_herd(env, "keyturn-rt-file", kt_rt_cfg, reps)))

    def google_cfg() -> dict[str, Any]:
        path = env.tmpdir("google-proc-") / "authorized_user.json"
        path.write_text(json.dumps({
            "type": "authorized_user", "client_id": "rotating", "client_secret": env.secret("rotating"),
            "refresh_token": env.provider.mint_refresh_token("rotating"), "token_uri": env.token_endpoint,
        }))
        return {"path": str(path)}

    out.append(_herd_entry(kind, "google-auth", "Credentials(refresh token from a shared authorized-user "
                           "file), before_request(), to_json() written back; ROTATING refresh token",
                           _process_herd(env, "google-authorized-user-file", google_cfg, reps)))
    return out
