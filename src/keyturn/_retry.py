"""How often and how long keyturn retries a request: an immutable :class:`RetryPolicy` (after
urllib3's ``Retry``), the answers worth retrying, and ``Retry-After``. Standard library only; the
drivers in :mod:`keyturn.transport` apply it.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime

from .protocol.http import HttpResponse

__all__ = ["NOT_PROCESSED_STATUS", "RETRY_STATUS", "RetryPolicy", "retry_after"]

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
#: Answers that say the request was not processed (RFC 6585 §4, RFC 9110 §15.6.4): the only ones after
#: which a non-idempotent request (a rotating refresh token) may be sent again. After a 500, 502 or
#: 504 the server, or the one behind the gateway, may already have acted on it.
NOT_PROCESSED_STATUS = frozenset({429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry. Immutable: :meth:`increment` returns the next policy."""

    total: int = 2
    backoff: float = 0.5
    backoff_max: float = 8.0
    retry_after_max: float = 30.0
    attempt: int = 0

    def increment(self) -> RetryPolicy:
        return replace(self, attempt=self.attempt + 1)

    @property
    def exhausted(self) -> bool:
        return self.attempt >= self.total

    def delay(self, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_max)
        # "Full jitter": a fleet that failed together does not retry together.
        ceiling = min(self.backoff_max, self.backoff * (2**self.attempt))
        return random.uniform(0, ceiling)  # noqa: S311 - jitter, not security


def retry_after(response: HttpResponse) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return None if math.isnan(seconds) else seconds
    try:
        return parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError):
        return None
