"""keyturn in one minute, on this machine, with nothing to configure.

A real OpenID-certified identity provider (the npm package oidc-provider, from tests/provider) is
started on 127.0.0.1 to stand in for yours. Then keyturn gets a client-credentials token, serves it
from the cache, and refreshes it once it is due.

    pip install -e . && python examples/quickstart.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

# A script puts its own directory on sys.path, not the repository root, where the ``tests`` package
# with the test provider's fixture is.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.providerfixture import start_provider

import keyturn


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        print("starting a local identity provider (oidc-provider under Node) ...")
        provider = start_provider(tmp_dir=tmp)
        try:
            client = provider.clients["short"]  # its tokens live 2 seconds
            print(f"issuer: {provider.issuer}")
            source = keyturn.ClientCredentials(
                issuer=provider.issuer,
                client_id=client.client_id,
                client_secret=client.client_secret,
                store=keyturn.FileStore(Path(tmp) / "tokens"),
            )
            print(f"source: {source!r}")
            token = source.get_token()
            print(f"token:  {token!r}")
            started = time.perf_counter()
            for _ in range(100_000):
                source.get_access_token()
            per_call = (time.perf_counter() - started) / 100_000 * 1e9
            print(f"100,000 cached calls: {per_call:.0f} ns each, "
                  f"{provider.token_requests('short')} token request so far")
            time.sleep(max(0.0, token.expires_at - time.time()) + 0.1)
            fresh = source.get_token()
            print(f"after expiry: {fresh!r}")
            print(f"token requests made: {provider.token_requests('short')}")
        finally:
            provider.stop()


if __name__ == "__main__":
    main()
