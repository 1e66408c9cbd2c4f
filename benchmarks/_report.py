"""The tables (printed and in RESULTS.md) and the notes that explain them."""

from __future__ import annotations

from typing import Any

from _infra import BENCH_DIR


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    """A GitHub-markdown table (also readable on a terminal)."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda values: "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                      *(line(r) for r in cells)])


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _errors_cell(r: dict[str, Any]) -> str:
    cell = f"{r['errors']}/{r['callers']}"
    if r["timed_out"]:
        cell += f" ({r['timed_out']} timed out)"
    if r["library_logged_errors"]:
        cell += f" (+{r['library_logged_errors']} logged)"
    return cell


def _signed(value: float | None, unit: str, none: str) -> str:
    return none if value is None else f"{value:+.1f}{unit}"


def render(results: dict[str, Any]) -> str:
    meta = results["meta"]
    v = meta["versions"]
    parts = []
    parts.append("## 1. Cached path (ns per call; median of interleaved repeats; ratio = median / "
                 "floor median; async calls are compared with the async floor)\n")
    rows = []
    for r in results["cached"]["rows"]:
        lib = r["library"]
        label = (f"{lib} {v.get(lib, '')}".strip() if lib not in ("-", "floor", "async floor")
                 else lib)
        rows.append([r["group"], label, r["call"], _fmt(r["ns_per_call_median"], 0),
                     _fmt(r["ns_per_call_min"], 0), r.get("floor", "floor"),
                     f"{r['ratio_to_floor']:.2f}x", f"{r['ratio_to_floor_of_mins']:.2f}x"])
    parts.append(_table(["group", "library", "call measured", "ns/call (median)", "min",
                         "compared with", "vs floor (medians)", "vs floor (mins)"], rows))
    parts.append(f"\nToken requests during the timing of table 1: "
                 f"{results['cached']['token_requests_during_timing']}")
    parts.append("\n## 2. Herds with nothing cached (token requests counted at the provider)\n")
    rows = []
    for section in ("threads", "asyncio", "processes"):
        for r in results["herds"][section]:
            rows.append([r["herd"], f"{r['library']}", r["setup"],
                         ", ".join(map(str, r["token_requests"])), _fmt(r["wall_ms_median"]),
                         _fmt(r["latency_ms_median"]), _fmt(r["latency_ms_p99"]),
                         _errors_cell(r),
                         ", ".join(map(str, r["distinct_tokens"])), _fmt(r["start_spread_ms_median"]),
                         _fmt(r.get("loop_stall_ms_max"))])
    parts.append(_table(["herd", "library", "shared object, call", "token requests (per repeat)",
                         "wall ms", "latency ms p50", "p99", "errors", "distinct tokens",
                         "start spread ms", "max loop stall ms"], rows))
    errors = [(r["library"], r["herd"], s) for section in ("threads", "asyncio", "processes")
              for r in results["herds"][section] for s in r["error_samples"]]
    logged = [(r["library"], r["herd"], s) for section in ("threads", "asyncio", "processes")
              for r in results["herds"][section] for s in r["library_logged_samples"]]
    if errors:
        parts.append("\nError samples: " + "; ".join(f"{lib} ({herd}): {s}" for lib, herd, s in errors))
    if logged:
        parts.append("\nErrors the library logged and went on: "
                     + "; ".join(f"{lib} ({herd}): {s}" for lib, herd, s in logged))
    parts.append("\n## 3. Auth-plugin overhead (µs per request to a local endpoint; requests interleaved "
                 "A B C ..., medians)\n")
    rows = []
    for stack in ("httpx", "requests"):
        for r in results["overhead"][stack]:
            rows.append([stack, r["variant"], r["call"], _fmt(r["us_per_request_median"]),
                         _signed(r["overhead_pct_vs_baseline"], "%", "baseline"),
                         _signed(r["overhead_us_vs_baseline"], "", "-"),
                         r["requests"]])
    parts.append(_table(["stack", "variant", "call", "µs/request (median)", "overhead vs baseline",
                         "overhead µs", "requests"], rows))
    parts.append(f"\nToken requests during the overhead runs: "
                 f"{results['overhead']['token_requests_during_timing']}")
    parts.append("\nVersions: " + ", ".join(f"{k} {val}" for k, val in v.items())
                 + f", oidc-provider {meta.get('oidc_provider', '?')}, node {meta['machine']['node']}")
    return "\n".join(parts)


def write_markdown(results: dict[str, Any], body: str) -> None:
    meta = results["meta"]
    m = meta["machine"]
    notes = "\n".join(f"- {n}" for n in results["notes"])
    text = f"""# keyturn benchmarks: results

Command: `{meta['command']}` (from the repository root){' — quick run' if meta['quick'] else ''},
keyturn at commit {meta['keyturn_revision']}.
Needs Node (for the provider) and the peers: `pip install -e '.[bench,test]' trustme msal-extensions`.

Machine: {m['nproc']} cores ({m['cpu'] or 'unknown CPU'}), {m['implementation']} {m['python']},
{m['platform']}, Node {m['node']}; clock source {m['clocksource'] or '?'}, one `time.monotonic()` call
{m['time_monotonic_ns']} ns. Date: {meta['date']}. Run time: {meta['runtime_s']:.0f} s.

Everything ran in one process (plus the worker processes of the process herds) against one local
oidc-provider, so the figures compare as ratios; absolute numbers depend on the machine.

{body}

## Notes

{notes}
"""
    (BENCH_DIR / "RESULTS.md").write_text(text)


NOTES = [
    "Floor: `def f(): e = CACHE[key]; if time.monotonic() < e[1]: return e[0]` — a function call, "
    "one dict lookup, one monotonic clock read and a compare: the least a token cache can do per call. "
    "Every row is timed as `fn()` in a timeit loop (gc off), so all include one Python call; rows "
    "whose call is two statements use a small def around them. Repeats are interleaved across rows "
    "(the order rotated each repeat) so a slow spell of the machine lands on every row alike; on a "
    "shared VM the speed drifts (compare the median and min columns), hence both ratios.",
    "Herds start with nothing valid cached. keyturn, MSAL, google-auth and httpx-auth start empty; "
    "authlib and requests-oauthlib cannot make an authorized call without a token (MissingTokenError), "
    "so they start from an expired token (their state at every expiry). Each repeat uses a new "
    "shared object. The herd call is the library's 'get a token' step only, no API request. A latency "
    "p50 of 0.0 means most callers started after a token was already cached: threads leave the barrier "
    "one by one while the GIL is busy ('start spread'). keyturn builds its httpx client on its first "
    "refresh (and a new AsyncClient on every async refresh); building one loads the CA bundle, which "
    "is most of keyturn's cold latency here: the 'verify=<an ssl.SSLContext built beforehand>' "
    "diagnostic rows show the herd without that cost.",
    "MSAL needs https and an issuer with a path: it reaches the provider through benchmarks/tls_proxy.mjs "
    "(https://127.0.0.1:P/realm, trustme CA, a requests session with trust_env=False). The 'keyturn via "
    "the TLS proxy' row is the control for MSAL's latency.",
    "MSAL and google-auth always send the client secret in the body, so they use client 'post' "
    "(client_secret_post); the others use 'basic'. Same provider, same token endpoint.",
    "requests-oauthlib runs with OAUTHLIB_INSECURE_TRANSPORT=1 (loopback http).",
    "No asyncio API: MSAL, google-auth (google.oauth2 async credentials are experimental and need "
    "aiohttp), requests-oauthlib. httpx-auth has no async token request: with an AsyncClient its sync "
    "flow runs on the event loop (see 'max loop stall').",
    "Process herds: msal-extensions (PersistedTokenCache + FilePersistence) is MSAL's documented shared "
    "cache; httpx-auth's JsonTokenFileCache is a file without a cross-process lock; google-auth has no "
    "shared cache (a program loads and writes back an authorized-user file). The rotating-refresh-token "
    "rows use client 'rotating' (confidential, rotates on every use; reuse revokes the grant).",
    "Plugin overhead: each variant has its own client/session with keep-alive to one local Node endpoint "
    "(benchmarks/fast_endpoint.mjs); the baseline carries the Authorization header as a client/session "
    "default. Requests are interleaved one per variant per round (A B C ... A B C ...), the order rotated "
    "each round, each request timed on its own, gc off while timing (collected every 50 rounds, untimed); "
    "overhead % = variant median / baseline median - 1. The A/A control is a second baseline client: its "
    "figure is the noise of this measurement. The auth step's own cost without I/O is in table 1 "
    "('per-request hook').",
]
