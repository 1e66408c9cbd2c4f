"""Run django-oauth-toolkit on 127.0.0.1: ``python -m tests.support.dot_provider.serve DIR``.

Migrates a fresh sqlite database in DIR, registers a confidential client_credentials client,
serves on a free port (threaded wsgiref: a real HTTP server, no test client) and writes
``DIR/ready.json`` with the issuer, the client id and its secret. Exits when its parent dies."""

from __future__ import annotations

import json
import os
import secrets
import sys
import threading
import time
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        with open(Path(os.environ["DOT_DIR"]) / "requests.log", "a") as log:
            log.write((format % args) + "\n")


def _key(path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def _watch_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(0)
        time.sleep(0.5)


def main() -> None:
    directory = Path(sys.argv[1])
    os.environ["DOT_DIR"] = str(directory)
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.support.dot_provider.settings"
    _key(directory / "oidc.pem")
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    from oauth2_provider.models import Application

    secret = secrets.token_urlsafe(32)
    Application.objects.create(
        name="keyturn", client_id="keyturn-batch", client_secret=secret,  # hashed when saved
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
    )
    from django.core.wsgi import get_wsgi_application

    server = make_server("127.0.0.1", 0, get_wsgi_application(), server_class=_Server,
                         handler_class=_Quiet)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    ready = {"base": base, "issuer": base + "/o", "client_id": "keyturn-batch",
             "client_secret": secret}
    tmp = directory / "ready.json.tmp"
    tmp.write_text(json.dumps(ready))
    tmp.rename(directory / "ready.json")
    server.serve_forever()


if __name__ == "__main__":
    main()
