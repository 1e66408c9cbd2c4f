"""Retries as a flow: :func:`retrying` wraps a protocol flow and sends each of its requests again
while an immutable :class:`RetryPolicy` (after urllib3's ``Retry``) allows it, pausing between
tries. Standard library only, and no I/O: the drivers (:mod:`keyturn._drivers`) carry out what it
yields like any other effect, and know nothing of retries.

A connection error, a timeout, 429 or a 5xx is retried with exponential backoff and jitter,
honouring ``Retry-After``; an OAuth error (4xx) never is, because asking again cannot change the
answer. A non-idempotent request (a rotating refresh token, a code) is sent again only when it
surely was not acted on: a connection error, 429 or 503. When the policy is spent, the last answer
is sent to the flow, or the last error thrown into it.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime
from typing import TypeVar

from .errors import TransportError, safe_url
from .protocol.http import Answer, Flow, HttpRequest, HttpResponse, pause, send

__all__ = ["NOT_PROCESSED_STATUS", "RETRY_STATUS", "RetryPolicy", "retry_after", "retrying"]

T = TypeVar("T")
# The transport's logger, as before retries moved here: a "retrying" line is about a request.
log = logging.getLogger("keyturn.transport")

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


def _may_send_again(request: HttpRequest, error: TransportError) -> bool:
    # A request that surely never reached the server can always be sent again; one that may have
    # (a read timeout) only when doing it twice is harmless. An answer that could not be read
    # (a broken encoding) would come back the same.
    return not error.reached_server or (request.idempotent and not error.answered)


def _exchange(request: HttpRequest, policy: RetryPolicy) -> Flow[HttpResponse]:
    """``request`` sent, and sent again after a pause while ``policy`` allows: the final answer,
    or the last :class:`TransportError` raised."""
    # RFC 6585 §4 and RFC 9110 §15.6.4: a 429 or 503 says the request was not processed; after a
    # 500, 502 or 504 the server (or the one behind the gateway) may already have acted on it.
    retryable = RETRY_STATUS if request.idempotent else NOT_PROCESSED_STATUS
    while True:
        try:
            response = yield from send(request)
        except TransportError as exc:
            if policy.exhausted or not _may_send_again(request, exc):
                raise
            delay = policy.delay()
        else:
            if response.status not in retryable or policy.exhausted:
                return response
            log.info("%s %s answered %s; retrying", request.purpose, safe_url(request.url),
                     response.status)
            delay = policy.delay(retry_after(response))
        policy = policy.increment()
        yield from pause(delay)


def retrying(flow: Flow[T], policy: RetryPolicy) -> Flow[T]:
    """``flow`` with each of its requests retried by ``policy``: every other effect, and every
    error thrown in while carrying one out, passes through as it is."""
    try:
        step = next(flow)
        while True:
            try:
                if isinstance(step, HttpRequest):
                    answer: Answer = yield from _exchange(step, policy)
                else:
                    answer = yield step
            except GeneratorExit:
                raise
            except BaseException as exc:  # an effect failed: the flow's to handle (or not)
                step = flow.throw(exc)
            else:
                step = flow.send(answer)
    except StopIteration as stop:
        result: T = stop.value
        return result
    finally:
        flow.close()  # the driver closed this wrapper (a no-op once the flow has ended)
