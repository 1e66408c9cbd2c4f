"""``keyturn token`` trusts only the token files FileStore trusts (issue 9, client-side security).

Another user plants a token where the fast path would look: in a directory or a file of theirs, in
a directory they can write, behind a symbolic link, or in the fast path's index. ``keyturn token``
must not print it: the fast path gives no answer, and the full command line says in one line what
is wrong, with a non-zero exit and no traceback. Files of another user are made with os.chown
(uid 65534, "nobody"), so these tests run as root. The profile is a device-code profile against the
real test provider: once the planted token is refused, the honest answer is "login required".
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from keyturn._fastindex import find, index_path, remember
from keyturn.cachekey import file_name
from keyturn.config import load_profile
from keyturn.stores.file import FileStore
from keyturn.token import Token
from tests.support.clihelper import Cli
from tests.support.providerfixture import Provider

pytestmark = pytest.mark.skipif(sys.platform == "win32" or os.geteuid() != 0,
                                reason="POSIX ownership: files of another user need root's chown")

NOBODY = 65534
PLANTED = "planted-by-another-user"
LEGIT = "the-users-own-token"
NESTED = b"[" * 100_000
PROBE = (
    "import sys\n"
    "from keyturn._fastpath import main\n"
    "rc = main(['token', '--profile', 'p'])\n"
    "heavy = [m for m in ('httpx', 'click', 'rich') if m in sys.modules]\n"
    "print('RESULT', rc, heavy, file=sys.stderr)\n"
)


class Setup:
    """A device-code profile ``p`` whose tokens live in ``store`` (the XDG cache by default)."""

    def __init__(self, cli: Cli, provider: Provider, monkeypatch: pytest.MonkeyPatch,
                 tmp_path: Path, cache_dir: Path | None = None) -> None:
        extra = f'cache_dir = "{cache_dir}"\n' if cache_dir else ""
        cli.write_config(f'[profiles.p]\ngrant = "device_code"\nissuer = "{provider.issuer}"\n'
                         f'client_id = "public"\n{extra}')
        # This process resolves the profile (cache key, index key) as the subprocess will.
        for name in ("KEYTURN_CONFIG", "KEYTURN_PROFILE"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("XDG_CONFIG_HOME", str(cli.config_home))
        monkeypatch.setenv("XDG_CACHE_HOME", str(cli.cache_home))
        profile = load_profile("p")
        self.cli, self.tmp_path = cli, tmp_path
        self.key = profile.cache_key()
        store_file = profile.store_file()
        assert store_file is not None
        self.token_file = Path(store_file)
        self.store = self.token_file.parent
        self.index = Path(index_path())
        # The index's directory (the XDG cache), as the first FileStore use makes it.
        self.index.parent.mkdir(mode=0o700, parents=True, exist_ok=True)

    def save(self, directory: Path, access_token: str) -> Path:
        """A valid token record, written by the real FileStore, as ``directory``'s token file."""
        now = time.time()
        FileStore(directory).save(self.key, Token(access_token=access_token,
                                                  expires_at=now + 3600, issued_at=now))
        return directory / f"{file_name(self.key)}.json"

    def remember(self, store_file: Path) -> None:
        """The index entry the full CLI writes for ``keyturn token --profile p``."""
        remember("p", {}, store_file=str(store_file), key=self.key, leeway=60.0, env=[], files=[])

    def token(self) -> subprocess.CompletedProcess[str]:
        return self.cli.run("token", "--profile", "p")

    def probe(self) -> tuple[str, str]:
        """``keyturn token`` in-process: (stdout, the RESULT line: exit code, heavy modules)."""
        done = subprocess.run([sys.executable, "-c", PROBE], env=self.cli.env, capture_output=True,
                              text=True, timeout=60)
        result = [line for line in done.stderr.splitlines() if line.startswith("RESULT")]
        assert result, done.stderr
        return done.stdout.strip(), result[0]


@pytest.fixture
def setup(cli: Cli, provider: Provider, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Setup:
    return Setup(cli, provider, monkeypatch, tmp_path)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _refused(done: subprocess.CompletedProcess[str], code: int, *says: str,
             also: Callable[[str], bool] = lambda line: False) -> None:
    """Not the planted token; the exit code; one ``keyturn:`` line saying ``says``; no traceback.
    ``also``: other stderr lines that may come first (a warning about a damaged file)."""
    assert PLANTED not in done.stdout and PLANTED not in done.stderr
    assert done.stdout == ""
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == code, done.stderr
    lines = [line for line in done.stderr.strip().splitlines() if not also(line)]
    assert len(lines) == 1 and lines[0].startswith("keyturn: "), done.stderr
    for text in says:
        assert text in lines[0], done.stderr


# -- token directory and file ----------------------------------------------------------------------


def test_a_cache_dir_of_another_user_is_refused(cli: Cli, provider: Provider,
                                                monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    # As reported: the profile's cache_dir was created by another user, who planted a token
    # there and left it readable for the victim.
    shared = tmp_path / "shared" / "tokens"
    shared.mkdir(parents=True, mode=0o700)
    s = Setup(cli, provider, monkeypatch, tmp_path, cache_dir=shared)
    planted = s.save(shared, PLANTED)
    for path in (shared, planted):
        os.chown(path, NOBODY, NOBODY)
    os.chmod(shared, 0o755)
    os.chmod(planted, 0o644)
    _refused(s.token(), 1, f"{shared} belongs to another user", "cache_dir")


@pytest.mark.parametrize("mode", [0o770, 0o777, 0o1777], ids=["group", "world", "world-sticky"])
def test_a_token_planted_in_a_directory_others_can_write_is_refused(setup: Setup,
                                                                    mode: int) -> None:
    planted = setup.save(setup.store, PLANTED)
    os.chown(planted, NOBODY, NOBODY)  # what a member of the group (or anyone) leaves there
    os.chmod(setup.store, mode)
    _refused(setup.token(), 1, f"{planted} belongs to another user", "remove it")
    # The full command line (FileStore) tightened the directory it owns; the file stays refused.
    assert _mode(setup.store) == 0o700
    _refused(setup.token(), 1, f"{planted} belongs to another user")


def test_a_token_file_of_another_user_is_refused(setup: Setup) -> None:
    planted = setup.save(setup.store, PLANTED)
    os.chown(planted, NOBODY, NOBODY)
    assert _mode(setup.store) == 0o700 and _mode(planted) == 0o600
    _refused(setup.token(), 1, f"{planted} belongs to another user")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620], ids=lambda m: f"{m:04o}")
def test_a_token_file_open_to_others_is_refused(setup: Setup, mode: int) -> None:
    exposed = setup.save(setup.store, PLANTED)
    os.chmod(exposed, mode)
    _refused(setup.token(), 1, str(exposed), f"mode {mode:04o}", "log in again")


def test_a_symlinked_token_file_is_refused(setup: Setup) -> None:
    # The link points at a private file of the user's own: only the link itself is wrong.
    elsewhere = setup.tmp_path / "elsewhere"
    target = setup.save(elsewhere, PLANTED)
    setup.store.mkdir(mode=0o700, parents=True, exist_ok=True)
    setup.token_file.symlink_to(target)
    _refused(setup.token(), 1, f"{setup.token_file} is a symbolic link", "remove it")


def test_a_fifo_as_the_token_file_is_refused_without_blocking(setup: Setup) -> None:
    # Opening a FIFO for reading blocks until a writer comes: the fast path and FileStore must not
    # wait (cli.run's timeout would fail this test).
    setup.store.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.mkfifo(setup.token_file, 0o600)
    _refused(setup.token(), 1, f"{setup.token_file} is not a regular file")


def test_a_nested_json_token_file_is_no_answer(setup: Setup) -> None:
    # json.loads raises RecursionError on this: the fast path gives no answer, FileStore moves
    # the file aside as damaged (its warning is the one other stderr line), login is required.
    setup.save(setup.store, PLANTED)
    setup.token_file.write_bytes(NESTED)
    _refused(setup.token(), 4, "login required", "keyturn login --profile p",
             also=lambda line: "was damaged" in line)
    assert not setup.token_file.exists()


# -- the fast path's index -------------------------------------------------------------------------


def test_an_index_entry_pointing_at_a_hostile_store_is_refused(setup: Setup) -> None:
    hostile = setup.tmp_path / "hostile"
    planted = setup.save(hostile, PLANTED)
    for path in (hostile, planted):
        os.chown(path, NOBODY, NOBODY)
    setup.remember(planted)
    # The index (the user's own, 0600) does lead the fast path there ...
    assert find("p", {}) == (str(planted), setup.key, 60.0)
    # ... and what it finds there is refused; the profile's own store has no login.
    _refused(setup.token(), 4, "login required for profile p")


@pytest.mark.parametrize("hostile", ["another user's", "group-writable", "world-writable"])
def test_an_index_another_user_could_write_is_ignored(setup: Setup, hostile: str) -> None:
    # The entry names a token file that passes every check (private, in a private directory of
    # the user's): only the index itself is untrusted.
    target = setup.save(setup.tmp_path / "mine", PLANTED)
    setup.remember(target)
    answered = setup.token()
    assert answered.stdout.strip() == PLANTED, answered.stderr  # the control: the index is read
    if hostile == "another user's":
        os.chown(setup.index, NOBODY, NOBODY)
    else:
        os.chmod(setup.index, 0o620 if hostile == "group-writable" else 0o602)
    _refused(setup.token(), 4, "login required for profile p")


def test_a_nested_json_index_is_ignored(setup: Setup) -> None:
    setup.index.write_bytes(NESTED)
    os.chmod(setup.index, 0o600)
    _refused(setup.token(), 4, "login required for profile p")
    # keyturn status reads the index too (the ad-hoc logins it lists).
    status = setup.cli.run("status")
    assert status.returncode == 0 and "Traceback" not in status.stderr, status.stderr


# -- what still answers ----------------------------------------------------------------------------


def test_the_private_layout_answers_from_the_fast_path(setup: Setup) -> None:
    setup.save(setup.store, LEGIT)
    assert _mode(setup.store) == 0o700 and _mode(setup.token_file) == 0o600
    first = setup.token()  # from the config; it writes the index entry
    assert first.returncode == 0 and first.stdout.strip() == LEGIT, first.stderr
    assert _mode(setup.index) == 0o600 and os.stat(setup.index).st_uid == os.getuid()
    assert find("p", {}) == (str(setup.token_file), setup.key, 60.0)
    # From the index, without the HTTP stack or the CLI framework; then from the config again.
    assert setup.probe() == (LEGIT, "RESULT 0 []")
    setup.index.unlink()
    assert setup.probe() == (LEGIT, "RESULT 0 []")


def test_a_directory_of_the_users_open_to_others_goes_to_the_full_cli(setup: Setup) -> None:
    # The user's own token in the user's own directory that the group may write: the fast path
    # does not answer; FileStore (the full command line) tightens the directory and answers. The
    # index is nested JSON: rewriting it after the answer must not fail either.
    setup.save(setup.store, LEGIT)
    os.chmod(setup.store, 0o770)
    setup.index.write_bytes(NESTED)
    os.chmod(setup.index, 0o600)
    stdout, result = setup.probe()
    assert stdout == LEGIT and result.startswith("RESULT 0 [") and "httpx" in result, result
    assert _mode(setup.store) == 0o700
    index: Any = json.loads(setup.index.read_bytes())
    assert [entry["store"] for entry in index.values()] == [str(setup.token_file)]
    assert setup.probe() == (LEGIT, "RESULT 0 []")
