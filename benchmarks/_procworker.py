"""One process of a process herd (started by run.py with multiprocessing's "spawn").

The worker imports its library and builds its object first, then waits at the barrier, then makes
one "get me a token" call and reports (start, end, error, token) on the queue. perf_counter is
CLOCK_MONOTONIC on Linux, one clock for every process, so the parent can compute the herd's wall time.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

SCOPE = "api:read"


def _build(kind: str, cfg: dict[str, Any]) -> Any:
    if kind == "keyturn-cc-file":
        import keyturn

        source = keyturn.ClientCredentials(
            token_endpoint=cfg["token_endpoint"], client_id=cfg["client_id"],
            client_secret=cfg["client_secret"], scope=SCOPE, store=keyturn.FileStore(cfg["path"]),
        )
        return source.get_access_token

    if kind == "keyturn-rt-file":
        import keyturn

        source = keyturn.RefreshToken(
            token_endpoint=cfg["token_endpoint"], client_id=cfg["client_id"],
            client_secret=cfg["client_secret"], auth_method="client_secret_post",
            refresh_token=cfg["refresh_token"], store=keyturn.FileStore(cfg["path"]),
        )
        return source.get_access_token

    if kind == "msal-extensions":
        import msal
        import requests
        from msal_extensions import FilePersistence, PersistedTokenCache

        session = requests.Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
        session.verify = cfg["ca_pem"]
        app = msal.ConfidentialClientApplication(
            cfg["client_id"], client_credential=cfg["client_secret"],
            oidc_authority=cfg["authority"], http_client=session,
            token_cache=PersistedTokenCache(FilePersistence(cfg["path"])),
        )

        def msal_call() -> str:
            result = app.acquire_token_for_client(scopes=[SCOPE])
            if "access_token" not in result:
                raise RuntimeError(f"{result.get('error')}: {result.get('error_description')}")
            return str(result["access_token"])

        return msal_call

    if kind == "httpx-auth-json":
        import httpx
        import httpx_auth

        httpx_auth.OAuth2.token_cache = httpx_auth.JsonTokenFileCache(cfg["path"])
        auth = httpx_auth.OAuth2ClientCredentials(
            cfg["token_endpoint"], client_id=cfg["client_id"], client_secret=cfg["client_secret"],
            scope=SCOPE, client=httpx.Client(trust_env=False),
        )
        request = httpx.Request("GET", "http://127.0.0.1:9/api")

        def httpx_auth_call() -> str:
            return str(next(auth.auth_flow(request)).headers["Authorization"])[7:]

        return httpx_auth_call

    if kind == "google-authorized-user-file":
        # google-auth has no shared token cache: a program loads the authorized-user file, uses
        # the credentials, and writes them back (to_json) to keep a rotated refresh token.
        import google.auth.transport.requests
        import google.oauth2.credentials
        import requests

        session = requests.Session()
        session.trust_env = False
        request = google.auth.transport.requests.Request(session=session)
        path = Path(cfg["path"])
        info = json.loads(path.read_text())
        # (from_authorized_user_info would force Google's token_uri: build the object directly.)
        credentials = google.oauth2.credentials.Credentials(
            token=None, refresh_token=info["refresh_token"], token_uri=info["token_uri"],
            client_id=info["client_id"], client_secret=info["client_secret"])

        def google_call() -> str:
            headers: dict[str, str] = {}
            credentials.before_request(request, "GET", "http://127.0.0.1:9/api", headers)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            tmp.write_text(credentials.to_json())
            os.replace(tmp, path)
            return headers["authorization"][7:]

        return google_call

    raise ValueError(f"unknown herd kind {kind!r}")


class _CountErrors(logging.Handler):
    """Counts the errors a library logs (httpx-auth logs a torn read of its token file and goes
    on), instead of printing them over the benchmark's output."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.name}: {record.getMessage()[:80]}")


def main(kind: str, cfg: dict[str, Any], barrier: Any, queue: Any) -> None:
    counter = _CountErrors()
    logging.basicConfig(handlers=[counter], level=logging.ERROR, force=True)
    try:
        call = _build(kind, cfg)
    except Exception as exc:
        queue.put((0.0, 0.0, f"setup {type(exc).__name__}: {str(exc)[:160]}", None, []))
        barrier.abort()
        return
    try:
        barrier.wait(timeout=120)
    except Exception:
        queue.put((0.0, 0.0, "barrier broken", None, []))
        return
    start = time.perf_counter()
    token = error = None
    try:
        token = call()
    except Exception as exc:
        error = f"{type(exc).__name__}: {str(exc)[:160]}"
    queue.put((start, time.perf_counter(), error, token, counter.messages))
