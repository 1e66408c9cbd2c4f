"""docs/server.md "Redis for replicas": a primary with ``min-replicas-to-write 1`` refuses writes
with NOREPLICAS while no replica keeps up; the server answers 503 temporarily_unavailable with
Retry-After (an outage, as MISCONF and OOM), logs one line naming it, and serves again once
writes are taken. A real redis-server of the test's own, with no replica at all."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from keyturn.server.errors import OUTAGE_RETRY_AFTER
from keyturn.server.runner import ServerThread
from keyturn.server.storage.redis import RedisStorage
from tests.support.redisfixture import start_redis
from tests.support.serverkit import make_config


def test_too_few_replicas_is_503_then_served_again(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    redis_server = start_redis(tmp_path)
    try:
        storage = RedisStorage(redis_server.url, prefix=f"kt-{uuid.uuid4().hex[:8]}")
        with ServerThread(make_config(), storage=storage) as running:
            issuer = running.issuer
            assert redis_server.command("CONFIG SET min-replicas-to-write 1").startswith(b"+OK")
            try:
                refused = httpx.post(f"{issuer}/device_authorization", data={"client_id": "demo"})
            finally:
                redis_server.command("CONFIG SET min-replicas-to-write 0")
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"] == "temporarily_unavailable"
            assert refused.headers["retry-after"] == str(OUTAGE_RETRY_AFTER)
            assert "NOREPLICAS" not in refused.text and "replica" not in refused.text.lower()
            logged = [r.getMessage() for r in caplog.records
                      if r.getMessage().startswith("storage unavailable (NoReplicasError) on ")]
            assert len(logged) == 1
            assert httpx.post(f"{issuer}/device_authorization",
                              data={"client_id": "demo"}).status_code == 200
    finally:
        redis_server.stop()
