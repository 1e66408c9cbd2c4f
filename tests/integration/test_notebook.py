"""DeviceCode and AuthorizationCode in real Jupyter kernels (ipykernel, driven by jupyter_client):
the login starts by default, the prompt is the cell's rich output, the person's approval is played
against the real provider from this process, and the messages the kernel sent are what is checked.
"""

from __future__ import annotations

import importlib.util
import os
import queue
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from html import unescape
from pathlib import Path
from typing import Any

import pytest

from tests.support.providerfixture import DEVICE_CODE_GRANT, Provider, approve_device_code

DOCS = Path(__file__).resolve().parents[2] / "docs" / "notebooks.md"
KERNEL_NAME = "keyturn-test"
KERNEL_START_TIMEOUT = 60.0
CELL_TIMEOUT = 60.0
HAVE_SEGNO = importlib.util.find_spec("segno") is not None

Message = dict[str, Any]


@pytest.fixture(scope="session")
def kernel_specs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kernel spec for this interpreter in a directory of its own (JUPYTER_PATH points there)."""
    prefix = tmp_path_factory.mktemp("jupyter")
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix),
                    "--name", KERNEL_NAME], check=True, capture_output=True, timeout=60)
    return prefix / "share" / "jupyter"


@pytest.fixture
def knobs(fresh_stats: Provider) -> Iterator[Provider]:
    """The session provider answering device requests with interval=1 (not the stock 5 s)."""
    fresh_stats.set_device_knobs(interval=1)
    yield fresh_stats
    fresh_stats.set_device_knobs(interval=None, slow_down_times=0)


class Kernel:
    """A running kernel and its client; :meth:`run` executes one cell."""

    def __init__(self, manager: Any, client: Any) -> None:
        self.manager = manager
        self.client = client

    def run(self, code: str, on_message: Callable[[Message], None] | None = None,
            timeout: float = CELL_TIMEOUT) -> tuple[list[Message], Message]:
        """Run ``code``; the cell's iopub messages (up to ``status: idle``) and its reply.
        ``on_message`` sees each message as it arrives (while the cell still runs)."""
        msg_id = self.client.execute(textwrap.dedent(code))
        deadline = time.monotonic() + timeout
        messages: list[Message] = []
        while True:
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise queue.Empty
                msg = self.client.get_iopub_msg(timeout=left)
            except queue.Empty:
                raise AssertionError(f"the cell did not finish within {timeout} s; it sent "
                                     f"{[m['msg_type'] for m in messages]}") from None
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            messages.append(msg)
            if on_message is not None:
                on_message(msg)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        while True:  # start_new_kernel's kernel_info_reply may still be ahead of ours
            reply: Message = self.client.get_shell_msg(timeout=timeout)
            if reply["parent_header"].get("msg_id") == msg_id:
                return messages, reply


@pytest.fixture
def start_kernel(kernel_specs: Path, tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Kernel]]:
    """Start kernels (``start_kernel(**environment)``); each is shut down at the end."""
    from jupyter_client.manager import start_new_kernel

    monkeypatch.setenv("JUPYTER_PATH", str(kernel_specs))
    started: list[Kernel] = []

    def start(**environment: str) -> Kernel:
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env.update(environment)
        manager, client = start_new_kernel(kernel_name=KERNEL_NAME, env=env, cwd=str(tmp_path),
                                           startup_timeout=KERNEL_START_TIMEOUT)
        kernel = Kernel(manager, client)
        started.append(kernel)
        return kernel

    yield start
    for kernel in started:
        kernel.client.stop_channels()
        kernel.manager.shutdown_kernel(now=True)


def html_of(msg: Message) -> str:
    return str(msg["content"]["data"].get("text/html", ""))


def displays(messages: list[Message], kind: str = "display_data") -> list[Message]:
    return [m for m in messages if m["msg_type"] == kind]


def errors(messages: list[Message]) -> list[str]:
    return [f"{m['content']['ename']}: {m['content']['evalue']}" for m in messages
            if m["msg_type"] == "error"]


def stdout(messages: list[Message]) -> str:
    return "".join(m["content"]["text"] for m in messages
                   if m["msg_type"] == "stream" and m["content"]["name"] == "stdout")


def result(messages: list[Message]) -> str:
    results = [m["content"]["data"]["text/plain"] for m in messages
               if m["msg_type"] == "execute_result"]
    assert len(results) == 1, [(m["msg_type"], m["content"]) for m in messages]
    return str(results[0])


class Person:
    """Watches the cell's output like the person at the notebook: reads the link from the device
    prompt and approves (or denies) it at the real provider, once ``ready()`` says so."""

    def __init__(self, provider: Provider, *, ready: Callable[[Message], bool] | None = None,
                 deny: bool = False) -> None:
        self.provider = provider
        self.ready = ready or (lambda msg: True)
        self.deny = deny
        self.link: str | None = None
        self.approval: threading.Thread | None = None
        self.failures: list[BaseException] = []

    def __call__(self, msg: Message) -> None:
        if msg["msg_type"] == "display_data" and self.link is None:
            found = re.search(r'<a href="([^"]+)"', html_of(msg))
            assert found, html_of(msg)
            self.link = unescape(found.group(1))
        if self.link is not None and self.approval is None and self.ready(msg):
            self.approval = threading.Thread(target=self._approve, daemon=True)
            self.approval.start()

    def _approve(self) -> None:
        try:
            assert self.link is not None
            approve_device_code(self.provider, self.link, abort=self.deny)
        except BaseException as exc:
            self.failures.append(exc)

    def done(self) -> None:
        assert self.approval is not None, "the person never got to approve"
        self.approval.join(timeout=30)
        assert not self.failures, self.failures


def device_cell(provider: Provider, store: Path, call: str) -> str:
    return f"""
    import keyturn.interactive.notebook_prompt as notebook_prompt
    notebook_prompt.UPDATE_EVERY = 0.3
    from keyturn import DeviceCode, FileStore
    source = DeviceCode(issuer={provider.issuer!r}, client_id="public",
                        store=FileStore({str(store)!r}))
    assert source.interactive, "a kernel is interactive by default"
    {call}
    """


def check_prompt(messages: list[Message], provider: Provider) -> str:
    """The first display is the device prompt, with its code and link; its display id."""
    shown = displays(messages)
    assert len(shown) == 1, [m["content"] for m in shown]
    prompt = html_of(shown[0])
    link = re.search(r'<a href="([^"]+)"', prompt)
    assert link and unescape(link.group(1)).startswith(f"{provider.issuer}/device?user_code=")
    code = re.search(r'class="keyturn-user-code"[^>]*>([^<]+)</code>', prompt)
    assert code and code.group(1) in unescape(link.group(1))
    assert "left." in prompt
    assert ('<img src="data:image/svg+xml' in prompt) is HAVE_SEGNO
    assert "text/plain" in shown[0]["content"]["data"]
    display_id: str = shown[0]["content"]["transient"]["display_id"]
    return display_id


def updates_of(messages: list[Message], display_id: str) -> list[str]:
    updates = displays(messages, "update_display_data")
    assert all(m["content"]["transient"]["display_id"] == display_id for m in updates)
    return [html_of(m) for m in updates]


def device_polls(provider: Provider) -> int:
    log = provider.stats(log=True)["log"]
    return sum(1 for e in log if e["grant_type"] == DEVICE_CODE_GRANT and e["client_id"] == "public")


def test_await_in_a_cell_shows_the_prompt_and_leaves_the_event_loop_free(
        start_kernel: Callable[..., Kernel], knobs: Provider, tmp_path: Path) -> None:
    kernel = start_kernel()
    flag = tmp_path / "prompt-seen"
    polls_by_then: list[int] = []

    def ready(msg: Message) -> bool:
        # A task of the kernel's loop counts 25 turns of 20 ms once the prompt is on screen. The
        # provider polls every second: a login that blocked the loop while it waits would let
        # the task run about once per poll, not 25 times before the second poll.
        if msg["msg_type"] == "display_data":
            flag.touch()
        if "the event loop ran" not in msg["content"].get("text", ""):
            return False
        polls_by_then.append(device_polls(knobs))
        return True

    person = Person(knobs, ready=ready)
    messages, reply = kernel.run(device_cell(knobs, tmp_path / "store", f"""
    import asyncio, pathlib
    async def watch():
        while not pathlib.Path({str(flag)!r}).exists():
            await asyncio.sleep(0.02)
        for _ in range(25):
            await asyncio.sleep(0.02)
        print("the event loop ran 25 times while the login waited", flush=True)
    watching = asyncio.ensure_future(watch())
    token = await source.aget_token()
    await asyncio.wait_for(watching, 30)
    token.claims["sub"]
    """), on_message=person)
    person.done()
    assert not errors(messages) and reply["content"]["status"] == "ok"
    assert result(messages) == "'alice'"
    assert polls_by_then and polls_by_then[0] <= 1, polls_by_then
    display_id = check_prompt(messages, knobs)
    updates = updates_of(messages, display_id)
    assert updates and "Signed in as <strong>alice</strong>" in updates[-1]
    assert f"at <strong>{knobs.issuer}</strong>" in updates[-1]


def test_the_example_cell_of_the_docs_runs(start_kernel: Callable[..., Kernel], knobs: Provider,
                                          tmp_path: Path) -> None:
    (cell,) = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.S)
    ours = cell.replace('"https://id.example.org/realms/hpc"', repr(knobs.issuer))
    ours = ours.replace('client_id="hpc-cli"', 'client_id="public"')
    assert knobs.issuer in ours and "public" in ours, cell
    kernel = start_kernel(XDG_CACHE_HOME=str(tmp_path / "cache"))  # where FileStore() keeps it
    person = Person(knobs)
    messages, reply = kernel.run(ours, on_message=person)
    person.done()
    assert not errors(messages) and reply["content"]["status"] == "ok"
    assert result(messages) == "'alice'"
    assert "Signed in as" in updates_of(messages, check_prompt(messages, knobs))[-1]
    assert list((tmp_path / "cache" / "keyturn").iterdir())  # the default FileStore kept it


def test_sync_call_in_a_cell_counts_down_while_it_waits(
        start_kernel: Callable[..., Kernel], knobs: Provider, tmp_path: Path) -> None:
    kernel = start_kernel()
    # The cell's thread sleeps between polls: the countdown comes from the prompt's own thread.
    person = Person(knobs, ready=lambda msg: msg["msg_type"] == "update_display_data")
    store = tmp_path / "store"
    messages, reply = kernel.run(device_cell(knobs, store, "source.get_access_token()"),
                                 on_message=person)
    person.done()
    assert not errors(messages) and reply["content"]["status"] == "ok"
    display_id = check_prompt(messages, knobs)
    updates = updates_of(messages, display_id)
    assert len(updates) >= 2
    assert "left." in updates[0] and "Signed in" not in updates[0]
    assert "Signed in as <strong>alice</strong>" in updates[-1]
    # Once signed in, the countdown is over: nothing replaces the outcome.
    messages, _ = kernel.run("import time; time.sleep(1); source.get_token().claims['sub']")
    assert result(messages) == "'alice'" and not displays(messages, "update_display_data")
    # The saved login serves another source of the same store, silent, without a prompt.
    messages, _ = kernel.run(f"""
    other = DeviceCode(issuer={knobs.issuer!r}, client_id="public", interactive=False,
                       store=FileStore({str(store)!r}))
    other.get_token().claims["sub"]
    """)
    assert result(messages) == "'alice'" and not displays(messages) and not errors(messages)


def test_a_denied_login_says_so_in_place(
        start_kernel: Callable[..., Kernel], knobs: Provider, tmp_path: Path) -> None:
    kernel = start_kernel()
    person = Person(knobs, deny=True)
    messages, reply = kernel.run(device_cell(knobs, tmp_path / "store",
                                             "await source.aget_access_token()"),
                                 on_message=person)
    person.done()
    assert reply["content"]["status"] == "error"
    assert [e.split(":")[0] for e in errors(messages)] == ["AccessDenied"]
    updates = updates_of(messages, check_prompt(messages, knobs))
    assert "Login at <strong>" in updates[-1] and "was denied." in updates[-1]


def test_an_interrupted_login_says_so_in_place(
        start_kernel: Callable[..., Kernel], knobs: Provider, tmp_path: Path) -> None:
    kernel = start_kernel()
    interrupted: list[Message] = []

    def interrupt(msg: Message) -> None:
        # The person gives up (Jupyter's "interrupt the kernel") while the cell waits.
        if msg["msg_type"] == "update_display_data" and not interrupted:
            interrupted.append(msg)
            kernel.manager.interrupt_kernel()

    messages, reply = kernel.run(device_cell(knobs, tmp_path / "store",
                                             "source.get_access_token()"), on_message=interrupt)
    assert interrupted and reply["content"]["status"] == "error"
    assert [e.split(":")[0] for e in errors(messages)] == ["KeyboardInterrupt"]
    updates = updates_of(messages, check_prompt(messages, knobs))
    assert "was interrupted." in updates[-1]
    # The store was left as it was: the next cell starts a new login (and is not stuck on a lock).
    person = Person(knobs)
    messages, reply = kernel.run("source.get_token().claims['sub']", on_message=person)
    person.done()
    assert result(messages) == "'alice'" and not errors(messages)


def test_authorization_code_in_a_remote_kernel_says_to_use_the_device_flow(
        start_kernel: Callable[..., Kernel], provider: Provider, tmp_path: Path) -> None:
    kernel = start_kernel(JUPYTERHUB_USER="ada", JUPYTERHUB_API_URL="http://127.0.0.1:1/hub/api")
    messages, reply = kernel.run(f"""
    from keyturn import AuthorizationCode, FileStore
    source = AuthorizationCode(issuer={provider.issuer!r}, client_id="public",
                               store=FileStore({str(tmp_path / "store")!r}))
    assert source.interactive
    source.get_access_token()
    """)
    assert reply["content"]["status"] == "error"
    (error,) = errors(messages)
    assert error.startswith("ConfigError: AuthorizationCode cannot sign in from this Jupyter kernel")
    assert "JupyterHub runs it" in error
    assert f"keyturn.DeviceCode(issuer={provider.issuer!r}, client_id='public')" in error
    assert not displays(messages)


def test_user_login_in_a_jupyterhub_kernel_uses_the_device_flow_in_the_cell(
        start_kernel: Callable[..., Kernel], knobs: Provider, tmp_path: Path) -> None:
    kernel = start_kernel(JUPYTERHUB_USER="ada", JUPYTERHUB_API_URL="http://127.0.0.1:1/hub/api",
                          DISPLAY=":0")
    person = Person(knobs)
    messages, reply = kernel.run(f"""
    from keyturn import FileStore, UserLogin
    source = UserLogin(issuer={knobs.issuer!r}, client_id="public",
                       store=FileStore({str(tmp_path / "store")!r}))
    print("chosen:", source.chosen)
    (await source.aget_token()).claims["sub"]
    """, on_message=person)
    person.done()
    assert not errors(messages) and reply["content"]["status"] == "ok"
    assert stdout(messages) == "chosen: device_code\n"
    assert result(messages) == "'alice'"
    assert "Signed in as" in updates_of(messages, check_prompt(messages, knobs))[-1]
    assert knobs.token_requests("public", "authorization_code") == 0


def test_outside_a_kernel_a_program_without_a_terminal_is_still_not_interactive(
        provider: Provider, tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
    import sys
    from keyturn import AuthorizationCode, DeviceCode, FileStore, LoginRequired
    for kind in (DeviceCode, AuthorizationCode):
        source = kind(issuer={provider.issuer!r}, client_id="public",
                      store=FileStore({str(tmp_path / "store")!r}))
        assert source.interactive is False, kind
        try:
            source.get_access_token()
        except LoginRequired as exc:
            print(kind.__name__, "LoginRequired", "not interactive" in str(exc))
    print("IPython imported:", "IPython" in sys.modules)
    """)
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    done = subprocess.run([sys.executable, "-c", code], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "DeviceCode LoginRequired True",
        "AuthorizationCode LoginRequired True",
        "IPython imported: False",
    ]
