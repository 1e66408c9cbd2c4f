"""A lock file with a lease, for the file systems on which ``flock`` fails (NFS without lockd).

Theory of operation
-------------------
The lock on one key is the file ``<digest>.lease`` in the private token directory. It exists
while somebody holds the lock, and holds that holder's record, one line of JSON (written and read
by :mod:`._leasefile`)::

    {"id": "<128 random bits>", "host": "<host name>", "node": "<host, boot, pid namespace>",
     "pid": 4242, "expires_ms": 1700000040000, "check": "<digest of the other fields>"}

* **Taking.** ``open(O_CREAT | O_EXCL)``, write the record, fsync. Exclusive creation is atomic
  at the file server (NFSv3 and later implement it with an exclusive CREATE; local file systems
  always did): of any number of contenders, on any hosts of one mount, exactly one creates the
  file. Threads of one process queue on a thread lock before they come here (FileStore).
* **Holding.** The holder keeps the file open and rewrites its expiry in place through that
  descriptor (``pwrite`` of a record of unchanged length, then fsync — which is also what makes
  the new expiry visible to other NFS clients): every third of the lease from a daemon thread,
  and in :meth:`LeaseLock.confirm`. Writing through the descriptor, never by name, means that a
  holder whose file was taken over writes into its own, by then nameless, file, never into the
  next holder's. The ``check`` digest makes a record read halfway through a rewrite unreadable
  rather than wrong.
* **Lapsing.** The holder counts its lease on the monotonic clock from its last rewrite: once a
  whole lease has passed without one (the process was stopped, the machine paused), it never
  renews again, and :meth:`~LeaseLock.confirm` raises :class:`~keyturn.stores.base.LockLost`.
* **Stale.** A contender may take the lock over when the record's expiry lies more than ``skew``
  seconds in the past by the contender's own wall clock (so the clocks of the hosts of one mount
  must agree within ``skew``), or at once when the holder is a process of this node that no
  longer exists (``kill(pid, 0)``: ESRCH). A file whose record cannot be read (being written, or
  torn), or whose expiry lies further ahead than ``lease + skew`` (no holder whose clock agrees
  with ours writes that: a host whose clock ran a day ahead did, and would block everybody for a
  day after its death), counts as held until its modification time is ``lease + skew`` old; a
  live holder's renewals keep touching it.
* **Releasing.** The holder removes the file if it still holds the holder's record (below).

Taking over, and why two contenders never both hold the lock
------------------------------------------------------------
Looking at what a name holds and removing it are two steps. Had contenders simply removed a
stale file and then created their own, two of them that both found owner X's file stale could
each remove "the lock file" — the slower one removing the fresh file that the faster one had
just created — and both would then hold the lock. Instead, a lock file holding X's record is
removed only by the one process that created the *claim* ``<digest>.lease.<X>.claim`` (``O_EXCL``
again: one creator). The claimer reads the lock file again; only if it still holds X's record,
and that is still stale, does it remove the file; then it removes its claim, and the contenders
try the exclusive create again, which one of them wins. X itself releases the same way: it
claims its own id first, and leaves the file alone when that claim exists (a contender is then
taking over a lock that X let lapse).

1. A file holding X's record is removed only by the holder of claim X (a contender, or X).
2. At most one process holds claim X at a time: the claim is created exclusively and removed
   only by its creator (or, when that creator died or stalled, under the claim on the claim,
   below). A claimer counts its claim's lease on the monotonic clock from before it created the
   claim, and acts under the claim (removes X's file) only while less than ``lease`` has passed:
   later, a contender may have judged the claim stale, taken it over and removed X's file, and
   the name may hold the next holder's file. A claimer that finds it stalled that long gives up,
   and removes its claim only if the claim file still holds its own record.
3. So once the claimer has read X's record in the lock file, the file holds X's record until the
   claimer removes it: nobody else may remove it, and nobody can create that name while it
   exists. The claimer removes X's file, never the file of a holder that came after X.
4. Ids are random and new at every acquisition: a claim on X never concerns a later lock file,
   and a claim left over from the past concerns nobody's lock.

A claim is a record too (an id of its own, the node, the pid, an expiry one lease ahead, never
renewed: a claim is held for a few system calls). If its creator died holding it, the claim is
stale by the same rules and is removed the same way, under a claim on the claim's id: a chain
that gives up after ``_DEPTH`` links (as many claimers in a row would have had to die within
those few system calls) with a StoreError that says which files to remove.

Saves are fenced too: while a process holds a key's lease lock, FileStore calls
:meth:`LeaseLock.check` (what ``confirm`` checks, without renewing) immediately before a save
renames its file over the token file and before a delete removes it, and raises ``LockLost``
instead of writing. A holder that stalled past its lease after it kept a refresh token would
otherwise write that token back over the newer one its successor saved, and the next refresh
would send a refresh token the server had already retired.

What a lease cannot rule out, here as with any lease (RedisStore's too): a process that stops
(SIGSTOP, a paused VM) for longer than ``lease + skew`` between a check and the one system call
that acts on it — a holder between :meth:`~LeaseLock.confirm` and the sending of its request, or
between :meth:`~LeaseLock.check` and its rename; a claimer between its monotonic check and its
``unlink`` — or clocks further apart than ``skew``. The checks sit immediately before those calls,
which shrinks the moment to the call itself.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ..errors import StoreError
from . import _leasefile, _owner
from .base import LockLost

__all__ = ["LeaseLock"]

log = logging.getLogger("keyturn.stores.file")

#: How long a blocking :meth:`LeaseLock.take` waits between attempts: from, to (seconds).
POLL: Final = (0.005, 0.25)
#: Claims on claims before giving up (see the module's docstring).
_DEPTH: Final = 4
_NOT_SENT: Final = "nothing was sent, try again"


@dataclass(frozen=True)
class _Claim:
    """A claim this process created."""

    path: Path
    ident: str  # the id in its record
    began: float  # monotonic time before it was created


class LeaseLock:
    """The lease lock file ``path`` of one key, for one holder at a time (threads queue before).

    ``lease``: seconds a record stays valid without renewal (the holder renews it every third of
    that while it holds the lock), so the longest a holder that died on another host blocks the
    others is ``lease + skew``. ``skew``: how far apart the clocks of the hosts may be.
    """

    def __init__(self, path: Path, *, lease: float, skew: float) -> None:
        self.path = path
        self.lease = lease
        self.skew = skew
        self._io = threading.Lock()  # the descriptor and its rewrites, from any thread
        self._fd: int | None = None
        self._id = ""
        self._pid = 0
        self._size = 0
        self._renewed = 0.0  # monotonic time at which the last rewrite began
        self._stop: threading.Event | None = None

    def __repr__(self) -> str:
        return f"LeaseLock({str(self.path)!r}, held={self._fd is not None})"

    # -- taking ----------------------------------------------------------------------------------------

    def try_take(self) -> bool:
        """One attempt (never waits for the holder): True when this object holds the lock."""
        for _ in range(3):  # a file removed meanwhile, or taken over here, gets another try
            if self._create():
                return True
            seen = _leasefile.read(self.path)
            if seen is None:
                continue
            if not self._stale(seen) or not self._remove(self.path, seen, 0):
                return False
        return False

    def take(self) -> None:
        delay = POLL[0]
        while not self.try_take():
            # Jittered, so that waiters of several hosts do not try in lockstep.
            time.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - not a secret
            delay = min(delay * 2, POLL[1])

    def _create(self) -> bool:
        ident = secrets.token_hex(16)
        began = time.monotonic()
        record = _leasefile.encode(ident, time.time() + self.lease)
        fd = _leasefile.create(self.path, record, durable=True)
        if fd is None:
            return False
        stop = threading.Event()
        with self._io:
            self._fd, self._id, self._pid, self._size = fd, ident, os.getpid(), len(record)
            self._renewed, self._stop = began, stop
        threading.Thread(target=self._keep, args=(stop,), daemon=True,
                         name="keyturn-lease").start()
        return True

    def _stale(self, seen: _leasefile.Seen) -> bool:
        now = time.time()
        if seen.node == _owner.node() and seen.pid is not None and not _owner.alive(seen.pid):
            return True
        if seen.expires is None or seen.expires > now + self.lease + self.skew:
            # Unreadable, or an expiry from a clock that ran ahead: the modification time
            # (renewals rewrite the file) says whether its writer still renews it.
            return now - seen.mtime > self.lease + self.skew
        return now > seen.expires + self.skew

    def _claim_path(self, ident: str) -> Path:
        return self.path.with_name(f"{self.path.name}.{ident}.claim")

    def _claim(self, path: Path) -> _Claim | None:
        """The claim ``path``, created exclusively; None when somebody else holds it."""
        ident = secrets.token_hex(16)
        began = time.monotonic()  # before the create: the claim's lease cannot have begun earlier
        # Not fsynced: a claim lives for a few system calls; closing it makes it visible (NFS).
        fd = _leasefile.create(path, _leasefile.encode(ident, time.time() + self.lease), durable=False)
        if fd is None:
            return None
        os.close(fd)
        return _Claim(path, ident, began)

    def _young(self, claim: _Claim) -> bool:
        """Whether nobody can have judged ``claim`` stale yet: less than a lease since it was made
        (by the monotonic clock, which a stopped process cannot fool)."""
        return time.monotonic() - claim.began < self.lease

    def _unclaim(self, claim: _Claim) -> None:
        if not self._young(claim):
            # Stalled since the claim was made: a contender may have taken it over, and the
            # file may be its claim now, which is not ours to remove.
            seen = _leasefile.read(claim.path)
            if seen is None or seen.ident != claim.ident:
                return
        _leasefile.unlink(claim.path)

    def _remove(self, target: Path, seen: _leasefile.Seen, depth: int) -> bool:
        """Remove ``target`` (the lock file, or a claim), found stale holding ``seen``, under the
        claim on ``seen``'s id. True when ``target`` no longer holds ``seen``'s record."""
        path = self._claim_path(seen.ident)
        claim = self._claim(path)
        if claim is None:
            held = _leasefile.read(path)
            if held is None or not self._stale(held):
                return False  # another contender is at it: its outcome is seen at the next try
            if depth + 1 >= _DEPTH:
                raise StoreError(
                    f"cannot take over the lock file {self.path}: claims on it were left by "
                    f"{_DEPTH} processes that died in a row; remove {self.path.name}* by hand"
                )
            if not self._remove(path, held, depth + 1):
                return False
            claim = self._claim(path)
            if claim is None:
                return False
        try:
            now = _leasefile.read(target)
            if now is None:
                return True
            if now.ident != seen.ident or not self._stale(now):
                return False  # renewed, or released and taken anew: not ours to remove
            if not self._young(claim):
                # This process stalled since it claimed (rule 2 of the module's docstring):
                # ``target`` may hold the next holder's record by now. Give up; try again.
                return False
            _leasefile.unlink(target)
            return True
        finally:
            self._unclaim(claim)

    # -- holding ---------------------------------------------------------------------------------------

    def _rewrite(self, fd: int) -> None:
        """Renew the lease through the descriptor (called with ``_io`` held)."""
        began = time.monotonic()
        record = _leasefile.encode(self._id, time.time() + self.lease)
        _leasefile.pwrite_all(fd, record)
        if len(record) != self._size:  # never, while expires_ms has 13 digits
            os.ftruncate(fd, len(record))
            self._size = len(record)
        os.fsync(fd)
        self._renewed = began

    def _lapsed(self) -> bool:
        return time.monotonic() - self._renewed >= self.lease

    def _keep(self, stop: threading.Event) -> None:
        """Renew the lease every third of it while the lock is held."""
        while not stop.wait(self.lease / 3):
            with self._io:
                if stop.is_set() or self._fd is None:
                    return
                if self._lapsed():
                    log.warning("the keyturn lock file %s was not renewed within its %.0f s lease "
                                "(was the process stopped?); others may take it over now",
                                self.path, self.lease)
                    return
                try:
                    self._rewrite(self._fd)
                except OSError as exc:  # the lease ends on its own; confirm() reports the loss
                    log.debug("cannot renew the keyturn lock file %s (%s)", self.path,
                              exc.strerror)

    @property
    def held_here(self) -> bool:
        """Whether this process took the lock and has not released it (it may have lost it)."""
        return self._fd is not None and self._pid == os.getpid()

    def confirm(self) -> None:
        """Raise :class:`LockLost` unless the lock file still holds this holder's record and its
        lease has not run out; then renew the lease."""
        with self._io:
            fd = self._still_mine(_NOT_SENT)
            try:
                self._rewrite(fd)
            except OSError as exc:
                if exc.errno == errno.ESTALE:  # NFS: the file was removed on the server
                    raise LockLost(self._lost("its file was removed", _NOT_SENT)) from None
                raise _leasefile.error("cannot renew the lock file", self.path, exc) from None
            # A takeover between the reading and the rewrite would have removed the file first.
            self._check_mine(_NOT_SENT)

    def check(self, outcome: str, *, quick: bool = False) -> None:
        """Raise :class:`LockLost` (its message ending with ``outcome``) unless the lock is still
        this holder's, as :meth:`confirm` does, but without renewing it: called immediately before
        a save replaces the token file, so that nothing but the rename comes after the check.
        ``quick``: only what needs no file system call (the lease on the monotonic clock)."""
        with self._io:
            if quick:
                if self._fd is None or self._pid != os.getpid() or self._lapsed():
                    raise LockLost(self._lost("its lease ran out before it was renewed", outcome))
                return
            self._still_mine(outcome)
            self._check_mine(outcome)

    def _still_mine(self, outcome: str) -> int:
        """The descriptor, unless the lock is not held here or its lease ran out (``_io`` held)."""
        fd = self._fd
        if fd is None or self._pid != os.getpid():
            raise LockLost(f"the lock file {self.path} is not held here; {outcome}")
        if self._lapsed():
            raise LockLost(self._lost("its lease ran out before it was renewed", outcome))
        return fd

    def _check_mine(self, outcome: str) -> None:
        seen = _leasefile.read(self.path)
        if seen is None or seen.ident != self._id:
            raise LockLost(self._lost("another process took it over", outcome))
        if seen.expires is not None and seen.expires <= time.time():
            raise LockLost(self._lost("its lease had expired", outcome))

    def _lost(self, why: str, outcome: str) -> str:
        return (f"keyturn no longer holds the lock file {self.path}: {why} (a process stopped "
                f"for longer than the {self.lease:.0f} s lease?); {outcome}")

    # -- releasing -------------------------------------------------------------------------------------

    def release(self) -> None:
        with self._io:
            fd, self._fd = self._fd, None
            stop, self._stop = self._stop, None
            mine = self._pid == os.getpid()
        if stop is not None:
            stop.set()
        if fd is None:
            return
        os.close(fd)
        if not mine:
            return  # a forked child's copy of its parent's lock: the parent releases it
        try:
            claim = self._claim(self._claim_path(self._id))
            if claim is None:
                return  # a contender is taking over this lapsed lock: the file is its to remove
            try:
                seen = _leasefile.read(self.path)
                # Not young: stopped since the claim, so the file may be the next holder's by now
                # (rule 2); left as it is, an own file is taken over once stale.
                if seen is not None and seen.ident == self._id and self._young(claim):
                    _leasefile.unlink(self.path)
            finally:
                self._unclaim(claim)
        except (OSError, StoreError) as exc:
            # Not raised: a `with` block's own error matters more, and the lease ends by itself.
            log.warning("could not release the keyturn lock file %s (%s); others take it over "
                        "within %.0f s", self.path, exc, self.lease + self.skew)
