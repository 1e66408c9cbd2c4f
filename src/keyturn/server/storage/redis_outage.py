"""The Redis replies that mean the server cannot serve just now, as exception classes.

redis-py raises a class of its own for ``OOM`` (:class:`~redis.exceptions.OutOfMemoryError`),
``READONLY`` and ``LOADING``, but a bare :class:`~redis.exceptions.ResponseError` for
``MISCONF`` (writes stopped after a failed snapshot), the same class as a script bug. The
client here raises :class:`MisconfError` for it, so that an outage is told from a bug by its
class (:func:`~keyturn.server.errors.storage_outages`). Imported only with redis installed.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.client
from redis.exceptions import ResponseError

__all__ = ["MisconfError", "OutageAwareRedis"]


class MisconfError(ResponseError):
    """Redis refuses writes: "MISCONF Redis is configured to save RDB snapshots, but it's
    currently unable to persist to disk" (stop-writes-on-bgsave-error)."""


def _misconf(exc: ResponseError) -> bool:
    # A pipeline's error is annotated: "Command # 1 (INCRBY ...) of pipeline caused error: MISCONF".
    text = str(exc)
    return type(exc) is ResponseError and (text.startswith("MISCONF")
                                            or "of pipeline caused error: MISCONF" in text)


class _OutageAwarePipeline(redis.client.Pipeline):
    def execute(self, raise_on_error: bool = True) -> Any:
        try:
            return super().execute(raise_on_error)
        except ResponseError as exc:
            if _misconf(exc):
                raise MisconfError(*exc.args) from None
            raise


class OutageAwareRedis(redis.Redis):
    """redis-py's client, with a MISCONF reply (of a command, a script's redis.call or a
    pipeline) raised as :class:`MisconfError`."""

    def parse_response(self, connection: Any, command_name: str | bytes, **options: Any) -> Any:
        try:
            return super().parse_response(connection, command_name, **options)  # type: ignore[no-untyped-call]
        except ResponseError as exc:
            if _misconf(exc):
                raise MisconfError(*exc.args) from None
            raise

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        return _OutageAwarePipeline(self.connection_pool, self.response_callbacks, transaction,
                                    shard_hint)
