"""The Redis replies that mean the server cannot serve just now, as exception classes.

redis-py raises a class of its own for ``OOM`` (:class:`~redis.exceptions.OutOfMemoryError`),
``READONLY`` and ``LOADING``, but a bare :class:`~redis.exceptions.ResponseError` for
``MISCONF`` (writes stopped after a failed snapshot) and ``NOREPLICAS`` (too few replicas keep
up), the same class as a script bug. The client here raises :class:`MisconfError` (and
:class:`NoReplicasError`) for them, so that an outage is told from a bug by its
class (:func:`~keyturn.server.errors.storage_outages`). Imported only with redis installed.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.client
from redis.exceptions import ResponseError

__all__ = ["MisconfError", "NoReplicasError", "OutageAwareRedis"]


class MisconfError(ResponseError):
    """Redis refuses writes: "MISCONF Redis is configured to save RDB snapshots, but it's
    currently unable to persist to disk" (stop-writes-on-bgsave-error)."""


class NoReplicasError(MisconfError):
    """Redis refuses writes: "NOREPLICAS Not enough good replicas to write" (the primary's
    ``min-replicas-to-write``, docs/server.md "Redis for replicas"). A kind of MisconfError, the
    other refusal of writes, so that it is an outage wherever that one is."""


def _refusal(exc: ResponseError) -> type[MisconfError] | None:
    # A pipeline's error is annotated: "Command # 1 (INCRBY ...) of pipeline caused error: MISCONF".
    text = str(exc)
    if type(exc) is ResponseError:
        for code, kind in (("MISCONF", MisconfError), ("NOREPLICAS", NoReplicasError)):
            if text.startswith(code) or f"of pipeline caused error: {code}" in text:
                return kind
    return None


class _OutageAwarePipeline(redis.client.Pipeline):
    def execute(self, raise_on_error: bool = True) -> Any:
        try:
            return super().execute(raise_on_error)
        except ResponseError as exc:
            kind = _refusal(exc)
            if kind is not None:
                raise kind(*exc.args) from None
            raise


class OutageAwareRedis(redis.Redis):
    """redis-py's client, with a MISCONF reply (of a command, a script's redis.call or a
    pipeline) raised as :class:`MisconfError`."""

    def parse_response(self, connection: Any, command_name: str | bytes, **options: Any) -> Any:
        try:
            return super().parse_response(connection, command_name, **options)  # type: ignore[no-untyped-call]
        except ResponseError as exc:
            kind = _refusal(exc)
            if kind is not None:
                raise kind(*exc.args) from None
            raise

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        return _OutageAwarePipeline(self.connection_pool, self.response_callbacks, transaction,
                                    shard_hint)
