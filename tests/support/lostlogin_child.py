"""The processes of the lost-login matrix (``tests/integration/test_lost_login_matrix.py``).

``python lostlogin_child.py FD`` starts a *zygote*: it imports keyturn and its dependencies once,
then forks one process per job that the test sends over the Unix socket ``FD`` (a datagram with
the job's JSON and two pipe ends: events to the test, control from it), and reports each job
process's pid and, once it ended, its exit status. Forking a ready interpreter takes milliseconds
where starting one takes half a second, which keeps the matrix inside its time budget.

Each job process is a fresh keyturn process: the zygote only imports, it never builds a source,
so no token, metadata document or key set is in memory. The job builds a real source on a real
store (a FileStore in a directory, a RedisStore on a real redis-server) against a real server
behind the test's fault proxy, asks for a token, and reports what happened as events. Faults are
injected only where the job says, by wrapping one function at an exact point (the store's load
or save, the rename inside a save, the send of a token request, the Redis lock's confirm, flock);
at a point it announces itself (an event) and waits for the test (a line on the control pipe)
— which meanwhile sends its SIGINT or SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
from typing import Any

# Imported here, once, so that forked jobs start ready (and identical).
import httpx  # noqa: F401
import joserfc.jws  # noqa: F401
import redis  # noqa: F401

import keyturn
import keyturn.transport
from keyturn.stores.file import FileStore
from keyturn.stores.redis import RedisLock, RedisStore
from keyturn.token import Token

#: Longest a job waits at a point for the test (it is killed or released long before).
PAUSE_MAX = 20.0
#: Longest a job lives: the kernel ends it (SIGALRM) if everything else failed.
JOB_MAX = 40


class Job:
    """One job process's side of the conversation with the test."""

    def __init__(self, spec: dict[str, Any], events: int, control: int) -> None:
        self.spec = spec
        self._events = events
        self._control = control
        self._buffer = b""

    def emit(self, name: str, **data: Any) -> None:
        # One os.write of one short line: atomic on a pipe, and safe from a signal handler.
        os.write(self._events, (json.dumps({"event": name, **data}) + "\n").encode())

    def pause(self, name: str, **data: Any) -> None:
        """Announce ``name`` and wait until the test says go (or closes the control pipe)."""
        self.emit(name, thread=threading.current_thread().name, **data)
        deadline = time.monotonic() + PAUSE_MAX
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                self.emit("pause-timeout", at=name)
                os._exit(97)
            ready, _, _ = select.select([self._control], [], [], left)
            if ready:
                chunk = os.read(self._control, 64)
                if not chunk:
                    return  # the test closed the pipe: go on
                self._buffer += chunk
        _, _, self._buffer = self._buffer.partition(b"\n")

    async def apause(self, name: str) -> None:
        """:meth:`pause` for a coroutine: the event loop keeps running meanwhile."""
        self.emit(name)
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(self._control, lambda: ready.done() or ready.set_result(None))
        try:
            await asyncio.wait_for(ready, PAUSE_MAX)
        finally:
            loop.remove_reader(self._control)
        os.read(self._control, 64)


# -- fault injection ----------------------------------------------------------------------------------


def stop_here(job: Job) -> None:
    """Stop the whole process (SIGSTOP) at this very point of this thread.

    Sent to this thread (pthread_kill), not to the process (os.kill): a process-directed signal
    is taken by whichever thread the kernel picks, and this one may run on for a moment — long
    enough to confirm its lock and be stopped *after* that, which is another point.
    """
    job.emit("stopping")
    signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)


def _points(job: Job) -> None:
    """Wrap the functions the job names (see the module's docstring)."""
    faults: dict[str, Any] = job.spec.get("faults", {})

    if faults.get("enolck"):
        # A file system without working flock (NFS without lockd).
        def no_flock(fd: int, operation: int) -> None:
            raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

        fcntl.flock = no_flock

    load_at = faults.get("pause_load")
    if load_at:
        original_load = FileStore.load
        loads = [0]

        def load(self: FileStore, key: str) -> Token | None:
            loads[0] += 1
            if loads[0] == load_at:
                job.pause("at-load", n=loads[0])
            return original_load(self, key)

        FileStore.load = load  # type: ignore[method-assign]

    if faults.get("pause_send") or faults.get("stop_at_send"):
        original_send = keyturn.transport._send

        def send(client: Any, request: Any) -> Any:
            if not request.idempotent and faults.get("stop_at_send"):
                stop_here(job)  # after the lock was confirmed, before the request goes out
            elif not request.idempotent:
                job.pause("at-send", url=request.url)
            return original_send(client, request)

        keyturn.transport._send = send

    save_at = faults.get("pause_save")  # {"n": 1, "at": "entry" | "before-rename" | "after-rename"}
    original_save = FileStore.save
    saves = [0]
    in_save = threading.local()

    def save(self: FileStore, key: str, token: Token) -> None:
        saves[0] += 1
        n = saves[0]
        if save_at and save_at["n"] == n and save_at["at"] == "entry":
            job.pause("at-save", n=n, at="entry")
        in_save.n = n
        try:
            original_save(self, key, token)
        finally:
            in_save.n = None
        job.emit("saved", n=n, refresh_token=token.refresh_token, access_token=token.access_token)

    FileStore.save = save  # type: ignore[method-assign]

    if save_at and save_at["at"] in ("before-rename", "after-rename"):
        original_replace = os.replace

        def replace(src: Any, dst: Any, **kwargs: Any) -> None:
            n = getattr(in_save, "n", None)
            hit = n == save_at["n"] and str(dst).endswith(".json")
            if hit and save_at["at"] == "before-rename":
                job.pause("at-save", n=n, at="before-rename")
            original_replace(src, dst, **kwargs)
            if hit and save_at["at"] == "after-rename":
                job.pause("at-save", n=n, at="after-rename")

        os.replace = replace  # type: ignore[assignment]

    redis_save = RedisStore.save
    redis_saves = [0]
    redis_at = faults.get("pause_redis_save")

    def rsave(self: RedisStore, key: str, token: Token) -> None:
        redis_saves[0] += 1
        if redis_at == redis_saves[0]:
            job.pause("at-redis-save", n=redis_saves[0])
        redis_save(self, key, token)
        job.emit("saved", n=redis_saves[0], refresh_token=token.refresh_token,
                 access_token=token.access_token)

    RedisStore.save = rsave  # type: ignore[method-assign]

    if faults.get("stop_at_confirm"):
        original_confirm = RedisLock.confirm
        stopped = [False]

        def confirm(self: RedisLock) -> None:
            if not stopped[0]:
                stopped[0] = True
                # A stall longer than the lease (a stopped process, a long GC pause), right before
                # the lock is confirmed and the refresh token sent.
                stop_here(job)
                job.emit("continued", fence=self.fence)
            try:
                original_confirm(self)
            except BaseException as exc:
                job.emit("confirm-raised", error=type(exc).__name__)
                raise
            job.emit("confirmed", fence=self.fence)

        RedisLock.confirm = confirm  # type: ignore[method-assign]

    # Observation only: tell the test when a cancellation reached the refresh that waits for its
    # critical step (keyturn awaits it with asyncio.wait), so that it releases the answer after.
    original_wait = asyncio.wait

    async def wait(*args: Any, **kwargs: Any) -> Any:
        try:
            return await original_wait(*args, **kwargs)
        except asyncio.CancelledError:
            job.emit("cancelled")
            raise

    asyncio.wait = wait  # type: ignore[assignment]


# -- the job ------------------------------------------------------------------------------------------


def _store(spec: dict[str, Any]) -> Any:
    if spec["kind"] == "file":
        return FileStore(spec["path"])
    return RedisStore(spec["url"], prefix=spec["prefix"], lease=spec.get("lease", 30.0))


def build_source(spec: dict[str, Any], store: Any, on_refresh: Any = None) -> Any:
    """The source a job (or the test, to seed a store) uses: RefreshToken or DeviceCode."""
    common: dict[str, Any] = {
        "issuer": spec["issuer"], "client_id": spec["client_id"], "store": store,
        "allow_insecure_http": True, "timeout": spec.get("timeout", 10.0),
        "on_refresh": on_refresh,
    }
    if spec["kind"] == "refresh":
        return keyturn.RefreshToken(refresh_token=spec["refresh_token"], **common)
    return keyturn.DeviceCode(interactive=False, **common)


def _error(exc: BaseException) -> dict[str, Any]:
    names = [cls.__name__ for cls in type(exc).__mro__]
    return {"outcome": "error", "error": type(exc).__name__, "classes": names,
            "message": str(exc)[:400]}


def run_job(job: Job) -> None:
    spec = job.spec
    _points(job)
    source: Any = None

    def on_refresh(token: Token) -> None:
        job.emit("on_refresh", access_token=token.access_token,
                 refresh_token=token.refresh_token)
        mode = spec.get("on_refresh")
        if mode == "block":
            job.pause("in-on-refresh")
        elif mode == "reenter":
            inner = source.get_access_token()
            job.emit("reentered", same=inner == token.access_token, usable=bool(inner))

    source = build_source(spec["source"], _store(spec["store"]), on_refresh)
    if spec.get("barrier"):
        job.pause("ready")
    mode = spec.get("mode", "sync")
    tokens: list[str] = []
    if mode == "sync":
        tokens.append(source.get_access_token())
        for _ in range(spec.get("again", 0)):
            # The login is still alive: the next refresh works too.
            source.invalidate()
            tokens.append(source.get_access_token())
        job.emit("result", outcome="ok", tokens=tokens)
        return

    async def main() -> None:
        if mode == "wait_for":
            try:
                tokens.append(await asyncio.wait_for(source.aget_access_token(),
                                                     spec["wait_for"]))
            except TimeoutError:
                job.emit("timed-out")
                return
            return
        # A main coroutine that ends while a refresh task runs: asyncio.run cancels the task.
        task = asyncio.create_task(source.aget_access_token())
        await job.apause("main-waiting")
        job.emit("main-ends", how=mode, refresh_done=task.done())
        if mode == "main_raises":
            raise RuntimeError("the main coroutine failed")

    asyncio.run(main())
    job.emit("result", outcome="ok" if tokens else "ended", tokens=tokens)


def job_process(spec: dict[str, Any], events: int, control: int) -> None:
    """The body of a forked job process; never returns."""
    signal.alarm(JOB_MAX)
    with open(spec["stderr"], "ab", buffering=0) as err:
        os.dup2(err.fileno(), 2)
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s [{os.getpid()}] %(name)s %(levelname)s %(message)s")
    job = Job(spec, events, control)

    def interrupted(signum: int, frame: Any) -> None:
        job.emit("sigint")  # observation: the interrupt reached the process (then Ctrl-C as usual)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupted)
    code = 0
    try:
        run_job(job)
    except KeyboardInterrupt:
        job.emit("died", of="KeyboardInterrupt")
        # What CPython does with an uncaught KeyboardInterrupt: die of SIGINT, so the parent sees it.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    except BaseException as exc:  # the outcome is reported, whatever it is
        import traceback

        traceback.print_exc()
        job.emit("result", **_error(exc))
        code = 1
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    os._exit(code)


# -- the zygote ---------------------------------------------------------------------------------------


def zygote(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    signal.set_wakeup_fd(wake_w)
    children: set[int] = set()

    def send(message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            sock.send(json.dumps(message).encode())

    def reap() -> None:
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            children.discard(pid)
            send({"exit": pid, "code": os.waitstatus_to_exitcode(status)})

    send({"ready": os.getpid()})
    while True:
        try:
            ready, _, _ = select.select([sock, wake_r], [], [])
        except InterruptedError:
            continue
        if wake_r in ready:
            os.read(wake_r, 4096)
            reap()
        if sock not in ready:
            continue
        data, fds, _, _ = socket.recv_fds(sock, 1 << 20, 2)
        if not data:
            break
        spec = json.loads(data)
        pid = os.fork()
        if pid == 0:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            sock.close()
            os.close(wake_r)
            os.close(wake_w)
            job_process(spec, fds[0], fds[1])
        for passed in fds:
            os.close(passed)
        children.add(pid)
        send({"spawned": pid, "id": spec["id"]})
        reap()
    # The test is gone: so are its jobs (a stopped one too: SIGKILL ends stopped processes).
    for pid in list(children):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in list(children):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


if __name__ == "__main__":
    zygote(int(sys.argv[1]))
