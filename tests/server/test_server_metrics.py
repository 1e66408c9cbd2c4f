"""/metrics: scraped from the real server after real requests, parsed with prometheus_client's
own parser (the text exposition format 0.0.4); off by default, and behind its bearer token."""

from __future__ import annotations

import multiprocessing
import os
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from keyturn.protocol.grants import GRANT_REFRESH_TOKEN
from keyturn.server.config import RateLimits, parse_config
from keyturn.server.metrics import (
    LATENCY_BUCKETS,
    SHARED_DIR_ENV,
    Metrics,
    MetricsConfig,
    shared_directory,
)
from keyturn.server.runner import ServerThread
from tests.support.serverkit import CLI_SECRET, basic, make_config, page_approve, poll, start_device

TOKEN = "metrics-token-0123456789"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    config = make_config(metrics=MetricsConfig(enabled=True, token=TOKEN))
    with ServerThread(config, data_dir=tmp_path_factory.mktemp("metrics")) as server:
        yield server


def scrape(server: ServerThread) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample as {(sample name, labels): value}, through the real parser."""
    response = httpx.get(f"{server.issuer}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_off_by_default_is_404(tmp_path) -> None:
    assert parse_config({}).metrics == MetricsConfig(enabled=False, token=None)
    with ServerThread(make_config(), data_dir=tmp_path) as server:
        assert httpx.get(f"{server.issuer}/metrics").status_code == 404
        assert httpx.get(f"{server.issuer}/jwks").status_code == 200
        # Off: requests are not even counted (that costs every request).
        recorded = {name for name, _ in server.app.state.server.metrics.snapshot()}
        assert recorded.isdisjoint({"keyturn_requests_total", "keyturn_request_duration_seconds"})


def test_without_the_token_401(running: ServerThread) -> None:
    url = f"{running.issuer}/metrics"
    # RFC 6750 §3.1: no bearer token, the bare challenge; a wrong one, error="invalid_token".
    for headers, challenge in (({}, "Bearer"), ({"Authorization": f"Basic {TOKEN}"}, "Bearer"),
                               ({"Authorization": "Bearer wrong"}, 'Bearer error="invalid_token"'),
                               ({"Authorization": f"Bearer {TOKEN}x"},
                                'Bearer error="invalid_token"')):
        response = httpx.get(url, headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == challenge
        assert "keyturn_" not in response.text


def test_a_login_is_counted_by_route_status_and_grant_state(running: ServerThread) -> None:
    before = scrape(running)
    issuer = running.issuer
    device = start_device(issuer)
    assert poll(issuer, device["device_code"]).status_code == 400  # authorization_pending
    assert page_approve(issuer, device["user_code"]).status_code == 200
    token = poll(issuer, device["device_code"])
    assert token.status_code == 200, token.text
    refreshed = httpx.post(f"{issuer}/token", data={
        "grant_type": GRANT_REFRESH_TOKEN, "client_id": "demo",
        "refresh_token": token.json()["refresh_token"]})
    assert refreshed.status_code == 200
    denied = start_device(issuer)
    assert page_approve(issuer, denied["user_code"], decision="deny").status_code == 200
    # A path no route has, with a secret in its query: counted as "other", and shown nowhere.
    assert httpx.get(f"{issuer}/device/{device['user_code']}?code=s3cr3t-query").status_code == 404
    after = scrape(running)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "keyturn_requests_total"
    assert delta(requests, route="/device_authorization", method="POST", status="200") == 2
    assert delta(requests, route="/token", method="POST", status="400") == 1
    assert delta(requests, route="/token", method="POST", status="200") == 2
    assert delta(requests, route="/device", method="GET", status="200") == 2
    assert delta(requests, route="other", method="GET", status="404") == 1
    # The scrape before this one is counted too.
    assert delta(requests, route="/metrics", method="GET", status="200") == 1
    grants = "keyturn_device_grants_total"
    assert delta(grants, state="pending") == 2
    assert delta(grants, state="approved") == 1
    assert delta(grants, state="denied") == 1
    assert delta(grants, state="redeemed") == 1
    text = httpx.get(f"{issuer}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    for secret in (device["user_code"], device["device_code"], "s3cr3t-query",
                   token.json()["refresh_token"], token.json()["access_token"]):
        assert secret not in text


def test_a_retry_given_the_kept_answer_is_not_a_second_redemption(running: ServerThread) -> None:
    """The identical poll again within the retry grace gets the same answer (the first one was
    lost): one grant, redeemed once, counted once."""
    issuer = running.issuer
    device = start_device(issuer)
    assert page_approve(issuer, device["user_code"]).status_code == 200
    before = scrape(running)
    first = poll(issuer, device["device_code"])
    again = poll(issuer, device["device_code"])
    assert first.status_code == again.status_code == 200, again.text
    assert again.json() == first.json()  # the kept answer
    after = scrape(running)
    name = "keyturn_device_grants_total"
    assert value(after, name, state="redeemed") - value(before, name, state="redeemed") == 1


def test_latency_histogram_per_route(running: ServerThread) -> None:
    for _ in range(3):
        assert httpx.get(f"{running.issuer}/.well-known/openid-configuration").status_code == 200
    samples = scrape(running)
    name, route = "keyturn_request_duration_seconds", "/.well-known/openid-configuration"
    count = value(samples, f"{name}_count", route=route)
    assert count >= 3
    # The parser checks the format; these check the arithmetic: cumulative buckets ending at the
    # count, and a sum of real durations.
    buckets = [value(samples, f"{name}_bucket", route=route, le=str(bound))
               for bound in LATENCY_BUCKETS]
    assert buckets == sorted(buckets)
    assert value(samples, f"{name}_bucket", route=route, le="+Inf") == count
    assert 0 < value(samples, f"{name}_sum", route=route) < count * 10
    total = sum(v for (n, labels), v in samples.items()
                if n == "keyturn_requests_total" and ("route", route) in labels)
    assert total == count


def test_rate_limit_refusals_by_kind(tmp_path) -> None:
    limits = replace(make_config().rate_limits, pending_per_address=1, secret_per_address=1)
    assert isinstance(limits, RateLimits)
    config = make_config(rate_limits=limits, metrics=MetricsConfig(enabled=True, token=TOKEN))
    with ServerThread(config, data_dir=tmp_path) as server:
        start_device(server.issuer)
        assert httpx.post(f"{server.issuer}/device_authorization",
                          data={"client_id": "demo"}).status_code == 429
        for _ in range(2):  # the second wrong secret is refused without being checked
            assert httpx.post(f"{server.issuer}/device_authorization", data={"scope": "openid"},
                              headers=basic("cli", CLI_SECRET + "x")).status_code == 401
        samples = scrape(server)
    assert value(samples, "keyturn_rate_limited_total", kind="pending_grants") == 1
    assert value(samples, "keyturn_rate_limited_total", kind="client_secret") == 1
    assert value(samples, "keyturn_rate_limited_total", kind="user_code") == 0


def test_labels_are_escaped_for_the_real_parser() -> None:
    metrics = Metrics()
    odd = 'up"stream\\with\nnewline'
    metrics.upstream_sign_in(odd, "ok")
    metrics.upstream_sign_in(odd, "ok")
    metrics.upstream_sign_in("lab", "refused")
    families = {f.name: f for f in text_string_to_metric_families(metrics.render())}
    samples = {tuple(sorted(s.labels.items())): s.value
               for s in families["keyturn_upstream_sign_ins"].samples}
    assert samples == {(("outcome", "ok"), ("upstream", odd)): 2,
                       (("outcome", "refused"), ("upstream", "lab")): 1}


def test_threads_count_without_losing_any() -> None:
    """Recording takes no lock: each thread counts in its own shard, and none is lost."""
    metrics = Metrics()
    threads, each = 8, 5000
    start = threading.Barrier(threads)

    def work() -> None:
        start.wait()
        for _ in range(each):
            metrics.rate_limited("password")
            metrics.request(route="/token", method="POST", status=200, seconds=0.002)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    families = {f.name: f for f in text_string_to_metric_families(metrics.render())}
    limited = {s.labels["kind"]: s.value for s in families["keyturn_rate_limited"].samples}
    assert limited["password"] == threads * each
    count = [s.value for s in families["keyturn_request_duration_seconds"].samples
             if s.name.endswith("_count")]
    assert count == [threads * each]


def test_shards_of_ended_threads_are_folded_not_kept() -> None:
    """anyio ends idle threadpool threads and makes new ones for the next burst: the shards of
    ended threads are added into one at the next read, so their number stays bounded across
    bursts, and no count is lost or counted twice."""
    metrics = Metrics()
    rounds, threads, each = 4, 6, 10

    def work() -> None:
        for _ in range(each):
            metrics.rate_limited("password")

    for done in range(1, rounds + 1):
        burst = [threading.Thread(target=work) for _ in range(threads)]
        for thread in burst:
            thread.start()
        for thread in burst:
            thread.join(timeout=30)
        families = {f.name: f for f in text_string_to_metric_families(metrics.render())}
        limited = {s.labels["kind"]: s.value for s in families["keyturn_rate_limited"].samples}
        assert limited["password"] == done * threads * each
        assert repr(metrics) == "Metrics(shards=1)"  # this thread's; the ended ones folded
    assert metrics.snapshot() == metrics.snapshot()  # folded once: reading again adds nothing


def test_flushes_at_once_and_a_failing_one(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    """A scrape's flush (in the threadpool) and the periodic one (on the loop) at once: each
    writes a temporary file of its own, so neither finds its file replaced away; and a flush
    that fails (the directory gone) still answers the scrape, from memory."""
    metrics = Metrics()
    metrics.share(tmp_path)
    metrics.rate_limited("password")
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def flush() -> None:
        start.wait()
        try:
            for _ in range(300):
                metrics.flush()
                metrics.render()
        except BaseException as exc:  # collected, asserted empty below
            errors.append(exc)

    flushers = [threading.Thread(target=flush) for _ in range(4)]
    for thread in flushers:
        thread.start()
    for thread in flushers:
        thread.join(timeout=60)
    assert errors == []
    assert [p.name for p in tmp_path.iterdir()] == [f"{os.getpid()}.json"]  # no temporary left
    for path in tmp_path.iterdir():
        path.unlink()
    tmp_path.rmdir()
    with caplog.at_level("WARNING", logger="keyturn.server"):
        text = metrics.render()
    assert 'keyturn_rate_limited_total{kind="password"} 1' in text
    assert "keyturn_metrics_processes 1" in text
    assert "could not write the worker's metrics" in caplog.text


def test_processes_sharing_a_directory_add_up() -> None:
    """The workers' way (metrics.shared_directory): each process writes its totals to its own
    file, and the one that renders adds every file up."""
    with shared_directory() as directory:
        assert directory is not None
        assert os.environ[SHARED_DIR_ENV] == str(directory)
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700

        def worker() -> None:  # a forked process, as a worker is
            metrics = Metrics()
            metrics.share(os.environ[SHARED_DIR_ENV])
            for _ in range(3):
                metrics.rate_limited("password")
            metrics.flush()

        child = multiprocessing.get_context("fork").Process(target=worker)
        child.start()
        child.join(timeout=30)
        assert child.exitcode == 0
        mine = Metrics()
        mine.share(directory)
        mine.rate_limited("password")
        families = {f.name: f for f in text_string_to_metric_families(mine.render())}
        limited = {s.labels["kind"]: s.value for s in families["keyturn_rate_limited"].samples}
        assert limited["password"] == 4
        assert [s.value for s in families["keyturn_metrics_processes"].samples] == [2]
        assert sorted(p.name for p in directory.iterdir()) == sorted(
            [f"{child.pid}.json", f"{os.getpid()}.json"])
        assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in directory.iterdir())
    assert not directory.exists()
    assert SHARED_DIR_ENV not in os.environ
    with shared_directory(enabled=False) as nothing:  # /metrics off: no directory at all
        assert nothing is None and SHARED_DIR_ENV not in os.environ
    assert "keyturn_metrics_processes 1" in Metrics().render()  # one process, not shared


def test_workers_are_counted_together(tmp_path) -> None:
    """``--workers 2``: a scrape reaches one worker, and answers for both."""
    config = tmp_path / "server.toml"
    config.write_text('[metrics]\nenabled = true\ntoken_env = "TEST_METRICS_TOKEN"\n'
                      '[clients.demo]\ngrants = ["device_code"]\n')
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TEST_METRICS_TOKEN": TOKEN}
    process = subprocess.Popen(
        [sys.executable, "-m", "keyturn.server", "serve", "--config", str(config), "--data-dir",
         str(tmp_path / "data"), "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        assert process.stdout is not None
        issuer = process.stdout.readline().strip()
        requests = 40
        for _ in range(requests):  # a new connection each: the kernel gives them to either worker
            assert httpx.get(f"{issuer}/health").status_code == 200
        seen: dict = {}
        for _ in range(100):  # each worker writes its counts every FLUSH_SECONDS: up to 20 s
            response = httpx.get(f"{issuer}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
            assert response.status_code == 200
            seen = {(s.name, frozenset(s.labels.items())): s.value
                    for f in text_string_to_metric_families(response.text) for s in f.samples}
            health = value(seen, "keyturn_requests_total", route="/health", method="GET",
                           status="200")
            if value(seen, "keyturn_metrics_processes") == 2 and health == requests:
                break
            time.sleep(0.2)
        assert value(seen, "keyturn_metrics_processes") == 2
        assert value(seen, "keyturn_requests_total", route="/health", method="GET",
                     status="200") == requests
        # The workers' files, named by their pids, in a private directory.
        workers = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        assert len(workers) == 2
        directory = next(tmp for tmp in Path(tempfile.gettempdir()).glob("keyturn-metrics-*")
                         if {p.name for p in tmp.iterdir()} == {f"{w}.json" for w in workers})
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in directory.iterdir())
    finally:
        process.terminate()
        process.wait(timeout=15)
    assert not directory.exists()  # removed with the server
