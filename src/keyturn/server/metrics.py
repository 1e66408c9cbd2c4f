"""``/metrics``: the server's counters and latency histograms, in the Prometheus text exposition
format 0.0.4 (https://prometheus.io/docs/instrumenting/exposition_formats/).

What is counted (every label takes a bounded set of values: a route template, never the raw path
or query; a status code; a name from the configuration; a word from a fixed vocabulary)::

    keyturn_requests_total{route, method, status}          counter
    keyturn_request_duration_seconds{route}                histogram
    keyturn_device_grants_total{state}                     counter of transitions: pending (a new
                                                           grant), approved, denied, redeemed
    keyturn_rate_limited_total{kind}                       counter: user_code, password,
                                                           client_secret, pending_grants
    keyturn_upstream_sign_ins_total{upstream, outcome}     counter

Recording is O(1) and takes no lock: each thread counts in a shard of its own (a plain dict that
only it writes: the request counters are recorded on the event loop's thread, the rest mostly in
the threadpool's), and a scrape adds the shards up. Under the GIL, copying a dict or a list whose
keys are tuples of strings runs no Python code and so cannot interleave with a writer.

Why not ``prometheus_client``: every ``inc()`` there takes a ``threading.Lock``, its multiprocess
mode must be set up through an environment variable before it is imported and writes an mmap
file per observation, and it would be one more runtime dependency of the server. The text format
is small (:meth:`Metrics.render`); the tests parse it with ``prometheus_client``'s own parser.

Several worker processes (``--workers N``): one scrape reaches one worker, so the workers of one
server share a private directory (:func:`shared_directory`, made by the parent before it forks
and named to the workers in :data:`SHARED_DIR_ENV`). Each worker writes its totals to a file of
its own there every :data:`FLUSH_SECONDS` (and before each scrape it answers), and a scrape
answers with the sum over every file: at most that old for the other workers. A worker that died
and was replaced leaves its file, so the totals never go down (docs/server.md, "Metrics").
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hmac
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["CONTENT_TYPE", "LATENCY_BUCKETS", "SHARED_DIR_ENV", "GrantState", "Metrics",
           "MetricsConfig", "RateLimitKind", "flush_periodically", "metrics_config",
           "shared_directory", "token_matches"]

log = logging.getLogger("keyturn.server")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Seconds; the upper bounds of the latency histogram's buckets (+Inf is added).
LATENCY_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                      1.0, 2.5, 5.0, 10.0)

GrantState = Literal["pending", "approved", "denied", "redeemed"]
RateLimitKind = Literal["user_code", "password", "client_secret", "pending_grants"]
GRANT_STATES: tuple[GrantState, ...] = ("pending", "approved", "denied", "redeemed")
RATE_LIMIT_KINDS: tuple[RateLimitKind, ...] = ("user_code", "password", "client_secret",
                                               "pending_grants")

_REQUESTS = "keyturn_requests_total"
_LATENCY = "keyturn_request_duration_seconds"
_GRANTS = "keyturn_device_grants_total"
_LIMITED = "keyturn_rate_limited_total"
_UPSTREAM = "keyturn_upstream_sign_ins_total"
_PROCESSES = "keyturn_metrics_processes"
#: Names the directory the workers of one ``keyturn serve --workers N`` share.
SHARED_DIR_ENV = "KEYTURN_METRICS_DIR"
#: Seconds between two writes of a worker's totals to the shared directory.
FLUSH_SECONDS = 1.0

#: (name, type, help, label names), in the order they are shown.
_FAMILIES: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    (_REQUESTS, "counter", "HTTP requests answered, by route template, method and status.",
     ("route", "method", "status")),
    (_LATENCY, "histogram", "Time from a request's arrival to the end of its answer, by route.",
     ("route",)),
    (_GRANTS, "counter", "Device grants entering a state (pending: a new grant).", ("state",)),
    (_LIMITED, "counter", "Requests refused by a rate limit, by limit.", ("kind",)),
    (_UPSTREAM, "counter", "Sign-ins through an upstream identity provider, by outcome.",
     ("upstream", "outcome")),
    (_PROCESSES, "gauge", "Server processes (workers) whose counts these are.", ()),
)

#: A sample's key in a shard: (metric name, label values in the family's order).
Key = tuple[str, tuple[str, ...]]
#: A histogram's value: a count per bucket (not cumulative; the last is +Inf), then the sum.
Shard = dict[Key, "int | list[float]"]


@dataclass(frozen=True)
class MetricsConfig:
    """``[metrics]``: ``enabled`` (off by default: /metrics answers 404), and an optional bearer
    token (``token_env`` names an environment variable, ``token_file`` a file only the server's
    user may read) without which a scrape gets 401."""

    enabled: bool = False
    token: str | None = field(default=None, repr=False)
    #: The variable ``token_env`` names (None: no token_env); its absence is an error only when
    #: the server starts (:meth:`check_token`), so that ``keyturn serve admin``, which reads the
    #: same file and serves no /metrics, runs without the server's environment.
    token_env: str | None = None

    def check_token(self) -> None:
        """ConfigError if ``token_env`` names a variable that is not set: /metrics would be open
        to anyone with no token (create_app calls it before anything listens)."""
        from ..errors import ConfigError

        if self.token_env is not None and self.token is None:
            raise ConfigError(f"[metrics] token_env names {self.token_env}, which is not set")


def metrics_config(table: Any, *, read_secret_file: Callable[[str, str], str]) -> MetricsConfig:
    """``[metrics]`` of the configuration file: ``enabled``, and one of ``token_env`` /
    ``token_file`` (its text, read with ``read_secret_file(path, what)``, which refuses a file
    others may read: :mod:`.config` passes its own, so this module does not import it back)."""
    from ..errors import ConfigError

    if table is None:
        return MetricsConfig()
    if not isinstance(table, Mapping):
        raise ConfigError("[metrics] must be a table")
    unknown = set(table) - {"enabled", "token_env", "token_file"}
    if unknown:
        raise ConfigError(f"[metrics] has an unknown key {sorted(unknown)[0]!r} "
                          "(known: enabled, token_env, token_file)")
    enabled = table.get("enabled", False)
    if not isinstance(enabled, bool):
        raise ConfigError("[metrics] enabled must be true or false")
    if "token_env" in table and "token_file" in table:
        raise ConfigError("[metrics] give token_env or token_file, not both")
    token: str | None = None
    for key in ("token_env", "token_file"):
        value = table.get(key)
        if key in table and (not isinstance(value, str) or not value):
            raise ConfigError(f"[metrics] {key} must be a string")
    if isinstance(table.get("token_env"), str):
        token = os.environ.get(table["token_env"]) or None  # unset: MetricsConfig.check_token
        return MetricsConfig(enabled=enabled, token=token, token_env=table["token_env"])
    if isinstance(table.get("token_file"), str):
        token = read_secret_file(table["token_file"], "[metrics] token_file") or None
        if token is None:
            raise ConfigError(f"[metrics] token_file {table['token_file']} is empty")
    return MetricsConfig(enabled=enabled, token=token)


def token_matches(expected: str, authorization: str | None) -> bool:
    """Whether ``authorization`` is ``Bearer <expected>``, compared in constant time (a
    byte-by-byte comparison that stops early would tell a prober how much of a guess is right)."""
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), expected.encode())


class Metrics:
    """One server's counters (create_app makes one; ``AuthorizationServer.metrics`` holds it)."""

    def __init__(self) -> None:
        self._local = threading.local()
        #: Every live thread's shard, with its thread; list.append is atomic, and a thread
        #: registers once. anyio ends idle threadpool threads and makes new ones for the next
        #: burst, so a scrape folds the shards of ended threads into ``_retired`` and drops them.
        self._shards: list[tuple[threading.Thread, Shard]] = []
        #: The counts of ended threads; touched only under ``_reading``.
        self._retired: Shard = {}
        #: Readers (a scrape in the threadpool, the periodic flush on the loop) one at a time,
        #: so that an ended thread's shard is folded in once; never taken by a recorder.
        self._reading = threading.Lock()
        #: This worker's file in the workers' shared directory (None: one process).
        self._file: Path | None = None
        base = self._shard()
        for state in GRANT_STATES:  # the known series exist from the start, at 0
            base[(_GRANTS, (state,))] = 0
        for kind in RATE_LIMIT_KINDS:
            base[(_LIMITED, (kind,))] = 0

    def __repr__(self) -> str:
        return f"Metrics(shards={len(self._shards)})"

    def _shard(self) -> Shard:
        try:
            shard: Shard = self._local.shard
        except AttributeError:
            shard = {}
            self._local.shard = shard
            self._shards.append((threading.current_thread(), shard))
        return shard

    def _count(self, key: Key) -> None:
        shard = self._shard()
        shard[key] = int(shard.get(key, 0)) + 1  # type: ignore[arg-type]

    # -- recording (O(1), no lock) -----------------------------------------------------------------

    def request(self, *, route: str, method: str, status: int, seconds: float) -> None:
        """One answered request: ``route`` is the template it matched (``"other"`` when none)."""
        shard = self._shard()
        key: Key = (_REQUESTS, (route, method, str(status)))
        shard[key] = int(shard.get(key, 0)) + 1  # type: ignore[arg-type]
        hist_key: Key = (_LATENCY, (route,))
        hist = shard.get(hist_key)
        if not isinstance(hist, list):
            hist = [0.0] * (len(LATENCY_BUCKETS) + 2)
            shard[hist_key] = hist
        hist[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        hist[-1] += seconds

    def device_grant(self, state: GrantState) -> None:
        """A device grant entered ``state`` (``pending``: it was created)."""
        self._count((_GRANTS, (state,)))

    def rate_limited(self, kind: RateLimitKind) -> None:
        """A request was refused by the rate limit ``kind``."""
        self._count((_LIMITED, (kind,)))

    def upstream_sign_in(self, upstream: str, outcome: str) -> None:
        """A sign-in through the upstream named ``upstream`` (its configuration name) ended in
        ``outcome`` (a word from the caller's fixed vocabulary, e.g. ``ok``, ``refused``,
        ``error``: never a message, which could make the series unbounded)."""
        self._count((_UPSTREAM, (upstream, outcome)))

    # -- reading -----------------------------------------------------------------------------------

    def snapshot(self) -> Shard:
        """Every shard added up (copies: the shards go on counting)."""
        with self._reading:
            for entry in list(self._shards):
                thread, shard = entry
                if not thread.is_alive():  # it records no more: its shard is final
                    _add(self._retired, list(shard.items()))
                    self._shards.remove(entry)  # in place: an append meanwhile is kept
            total: Shard = {}
            _add(total, list(self._retired.items()))
            for _, shard in list(self._shards):
                _add(total, list(shard.items()))
        return total

    def render(self) -> str:
        """The text exposition format 0.0.4 of :meth:`snapshot`, or of every worker's sum when
        :meth:`share` was called (it reads files: call it off the event loop)."""
        if self._file is None:
            return render({**self.snapshot(), (_PROCESSES, ()): 1})
        total: Shard = {}
        files = 0
        try:
            self.flush()
            skipped = None
        except OSError as exc:  # a full disk: this worker's counts from memory, not its file
            log.warning("could not write the worker's metrics (%s)", exc.strerror)
            _add(total, list(self.snapshot().items()))
            files, skipped = 1, self._file
        for path in self._file.parent.glob("*.json"):
            if path == skipped:
                continue
            with contextlib.suppress(FileNotFoundError, ValueError):
                _add(total, _from_json(path.read_text(encoding="utf-8")))
                files += 1
        total[(_PROCESSES, ())] = files
        return render(total)

    # -- several workers ---------------------------------------------------------------------------

    @property
    def shared(self) -> bool:
        return self._file is not None

    def share(self, directory: str | os.PathLike[str]) -> None:
        """Count with the other workers writing to ``directory`` (see the module's docstring)."""
        self._file = Path(directory) / f"{os.getpid()}.json"
        self.flush()

    def flush(self) -> None:
        """Write this worker's totals to its file (replaced whole: a reader sees the old file or
        the new one, never half of one)."""
        if self._file is None:
            return
        text = json.dumps([[name, list(labels), value]
                           for (name, labels), value in self.snapshot().items()])
        # A temporary file of this write's own (0600): a scrape's flush and the periodic one
        # may run at once, and one shared name would be replaced away under the other.
        fd, temporary = tempfile.mkstemp(dir=self._file.parent, prefix=f"{self._file.stem}.",
                                         suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(text)
            os.replace(temporary, self._file)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise


async def flush_periodically(metrics: Metrics, interval: float = FLUSH_SECONDS) -> None:
    """While the app runs (its lifespan): write a shared worker's totals every ``interval``
    seconds, and once more when cancelled; nothing for a single process."""
    if not metrics.shared:
        return
    try:
        while True:
            await asyncio.sleep(interval)
            try:
                metrics.flush()
            except OSError as exc:  # a full disk: the counts go on, the next write may succeed
                log.warning("could not write the worker's metrics (%s)", exc.strerror)
    finally:
        with contextlib.suppress(OSError):
            metrics.flush()


def _from_json(text: str) -> list[tuple[Key, int | list[float]]]:
    return [((str(name), tuple(labels)), value) for name, labels, value in json.loads(text)]


@contextlib.contextmanager
def shared_directory(enabled: bool = True) -> Iterator[Path | None]:
    """A private directory (0700) for the workers about to be forked, named to them in
    :data:`SHARED_DIR_ENV`; removed, with the workers' files, when the server stops. Nothing
    when not ``enabled`` (/metrics is off)."""
    if not enabled:
        yield None
        return
    directory = Path(tempfile.mkdtemp(prefix="keyturn-metrics-"))
    os.environ[SHARED_DIR_ENV] = str(directory)
    try:
        yield directory
    finally:
        os.environ.pop(SHARED_DIR_ENV, None)
        shutil.rmtree(directory, ignore_errors=True)


def _add(total: Shard, items: Iterable[tuple[Key, int | list[float]]]) -> None:
    for key, value in items:
        if isinstance(value, list):
            mine = total.get(key)
            if not isinstance(mine, list):
                total[key] = list(value)
            else:
                for i, v in enumerate(value):
                    mine[i] += v
        else:
            total[key] = int(total.get(key, 0)) + value  # type: ignore[arg-type]


def _escape(value: str) -> str:
    # The format: "label_value can be any sequence of UTF-8 characters, but the backslash (\),
    # double-quote ("), and line feed (\n) characters have to be escaped as \\, \", and \n".
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    pairs = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        pairs.append(extra)
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def render(samples: Shard) -> str:
    lines: list[str] = []
    for name, kind, text, label_names in _FAMILIES:
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        for (metric, values), value in sorted(samples.items(), key=lambda item: item[0]):
            if metric != name:
                continue
            if not isinstance(value, list):
                lines.append(f"{name}{_labels(label_names, values)} {value}")
                continue
            cumulative = 0.0
            for bound, count in zip((*LATENCY_BUCKETS, float("inf")), value[:-1], strict=True):
                cumulative += count
                le = 'le="+Inf"' if bound == float("inf") else f'le="{bound!r}"'
                lines.append(f"{name}_bucket{_labels(label_names, values, le)} "
                             f"{_number(cumulative)}")
            lines.append(f"{name}_sum{_labels(label_names, values)} {_number(value[-1])}")
            lines.append(f"{name}_count{_labels(label_names, values)} {_number(cumulative)}")
    return "\n".join(lines) + "\n"
