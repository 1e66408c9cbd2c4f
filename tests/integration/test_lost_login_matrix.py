"""The lost-login matrix (issue 9): a login survives every interruption of a refresh that a client
can survive, against real servers that end the whole login when a refresh token comes back.

Servers: the npm oidc-provider (a public client: the refresh token rotates at every use, reuse
revokes the grant) and keyturn's own server (it rotates, and revokes the family on reuse), each
with its issuer at a loopback fault proxy in front of it, so the token endpoint and the JWKS both
go through the proxy. Stores: a FileStore in a temporary directory (a small real tmpfs for the full
disk), a RedisStore on a real redis-server (with a TCP fault proxy for dropped connections).

Each scenario (tests/support/lostlogin.py) logs in anew, refreshes in a job process and interrupts it at
its point — SIGINT, SIGKILL, wait_for's cancellation, asyncio.run's shutdown, JWKS 503s and
timeouts, a tampered id_token, a SIGSTOP past a Redis lease, a full disk, 8 processes without
flock — then a fresh process must get a token with no login, refresh once more, and the server
must never have refused a refresh token (invalid_grant). The scenarios marked KNOWN_LIMIT are the
points no client can survive (a SIGKILL after the server rotated the refresh token and before the
answer was stored): they assert that the login is lost exactly there, and how.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.faultproxy import TcpFaultProxy
from tests.support.lostlogin import (
    SCENARIOS,
    Env,
    MountRefused,
    Report,
    Scenario,
    Server,
    Zygote,
    expected_at,
    keyturn_server,
    npm_server,
)

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zygote]:
    started = Zygote(tmp_path_factory.mktemp("lostlogin-jobs"))
    try:
        yield started
    finally:
        started.close()


@pytest.fixture(scope="module", params=["oidc-provider", "keyturn"])
def matrix_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[Server]:
    work = tmp_path_factory.mktemp(f"server-{request.param}")
    start = npm_server if request.param == "oidc-provider" else keyturn_server
    with start(work) as server:
        yield server


@pytest.fixture(scope="module")
def redis_proxy(redis_server: object) -> Iterator[TcpFaultProxy]:
    import redis

    from keyturn.stores.redis import scripts as lua

    # Loaded ahead, so that the job's first save is one EVALSHA (not NOSCRIPT, then a load) and
    # a fault armed on it meets the save itself.
    with contextlib.closing(redis.Redis.from_url(redis_server.url)) as client:  # type: ignore[attr-defined]
        client.script_load(lua.WRITE)
    with TcpFaultProxy("127.0.0.1", redis_server.port) as proxy:  # type: ignore[attr-defined]
        yield proxy


@pytest.mark.parametrize("item", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_a_login_survives(item: Scenario, matrix_server: Server, zygote: Zygote, tmp_path: Path,
                          request: pytest.FixtureRequest, record_property: object) -> None:
    env = Env(zygote, matrix_server, tmp_path)
    if "redis" in item.needs:
        env.redis_url = request.getfixturevalue("redis_server").url
        env.redis_proxy = request.getfixturevalue("redis_proxy")
    report = Report(item.name, matrix_server.name, item.means, item.point,
                    expected_at(item, matrix_server))
    try:
        item.run(env, report)
    except MountRefused as exc:
        report.notes.append(f"not run: {exc}")
        pytest.skip(f"mount -t tmpfs is not permitted here ({exc}): the full-disk case needs it")
    finally:
        for name, value in report.properties():
            record_property(name, value)  # type: ignore[operator]
    assert report.lost is not None, "no verdict"
    assert not report.failures, "\n\n".join(report.failures)
