"""Every ```python block of the README runs as it stands against a real provider.

The README names its clients as a user would (batch-job, signed-job, cli); this test starts a
provider with exactly those clients and fills in the environment variables the examples read."""

from __future__ import annotations

import asyncio
import contextlib
import re
import webbrowser
from pathlib import Path

import pytest
from joserfc.jwk import ECKey

from tests.support.browserfixture import JOB_TIMEOUT, chromium_thread, provider_sign_in
from tests.support.providerfixture import DEVICE_CODE_GRANT, approve_device_code, make_client, start_provider
from tests.support.resource_server import ResourceServer

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.fixture(scope="module")
def readme_provider(tmp_path_factory):
    clients = [
        make_client("batch-job", "client_secret_basic", grant_types=["client_credentials"]),
        make_client("signed-job", "private_key_jwt", grant_types=["client_credentials"],
                    signing_alg="ES256"),
        make_client("cli", "none", grant_types=["refresh_token", "authorization_code",
                                                DEVICE_CODE_GRANT]),
    ]
    provider = start_provider(clients, tmp_path_factory.mktemp("readme-provider"))
    yield provider
    provider.stop()


def test_the_readme_has_examples():
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, readme_provider, redis_url, tmp_path, monkeypatch):
    provider = readme_provider
    pem = tmp_path / "signed-job.pem"
    pem.write_bytes(ECKey.import_key(provider.clients["signed-job"].private_key).as_pem(private=True))
    basic = provider.clients["batch-job"]
    api = ResourceServer(provider.introspection_endpoint, "batch-job", basic.client_secret)
    env = {
        "KEYTURN_ISSUER": provider.issuer,
        "BATCH_JOB_SECRET": basic.client_secret,
        "SIGNED_JOB_KEY_PEM": str(pem),
        "CLI_REFRESH_TOKEN": provider.mint_refresh_token("cli"),
        "TOKEN_DIR": str(tmp_path / "tokens"),
        "API_URL": api.url,
        "REDIS_URL": redis_url,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    provider.reset_stats()
    provider.set_device_knobs(interval=1)
    namespace: dict = {"__name__": "readme_example",
                       "approve": lambda uri: approve_device_code(provider, uri)}
    with contextlib.ExitStack() as stack:
        visits = []
        if "AuthorizationCode(" in BLOCKS[index]:
            # The person's browser is a real Chromium: what webbrowser.open() would start, it
            # signs in on the provider's pages while keyturn waits on its loopback listener.
            browser = stack.enter_context(chromium_thread())

            def open_in_chromium(url, *args, **kwargs):
                visits.append(browser.submit(lambda b: provider_sign_in(b, url)))
                return True

            monkeypatch.setattr(webbrowser, "open", open_in_chromium)
            # A person runs the example at a terminal (pytest's stdin is not one).
            monkeypatch.setattr("keyturn.sources.authorization_code.person_is_watching", lambda: True)
            monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        stack.enter_context(api.running())
        exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), namespace)
        if "main" in namespace and asyncio.iscoroutinefunction(namespace["main"]):
            asyncio.run(namespace["main"]())
        for visit in visits:
            assert "Signed in as alice" in visit.result(JOB_TIMEOUT).text
        if "AuthorizationCode(" in BLOCKS[index]:
            assert len(visits) == 1 and provider.token_requests("cli", "authorization_code") == 1
    if "KEYTURN_ISSUER" in BLOCKS[index]:
        assert provider.stats()["total"] >= 1  # the example really talked to the provider
