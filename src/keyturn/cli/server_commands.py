"""The server's commands as plain functions: ``serve``, ``serve rotate-keys``, ``demo``,
``hash-password``; and
``python -m keyturn.server``, the same commands parsed with argparse.

Each function returns a process exit code and prints one clear line on stderr on failure, so the
click commands (:mod:`.serve`, :mod:`.demo`, :mod:`.hash_password`) only map their options onto
these keyword arguments. Nothing here imports click: ``python -m keyturn.server`` serves sites
that installed the server extra without the CLI extra (and the tests).
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import KeyturnError
from .exitcodes import CONFIG, FAILED, INTERRUPTED, SUCCESS

if TYPE_CHECKING:
    from ..server.logformat import LogFormat

__all__ = ["demo_command", "hash_password_command", "main", "rotate_keys_command", "serve_command"]


def serve_command(
    *, config: str | None = None, host: str = "127.0.0.1", port: int = 0, data_dir: str | None = None,
    cert: str | None = None, key: str | None = None, forwarded_allow_ips: str | None = None,
    path: str = "", redis: str | None = None, log_format: LogFormat | None = None,
    workers: int = 1,
) -> int:
    """``keyturn serve``: runs until interrupted; the first stdout line is the issuer URL."""
    from ..server.runner import serve

    try:
        serve(config, host, port, data_dir=data_dir, cert=cert, key=key,
              forwarded_allow_ips=forwarded_allow_ips, path=path, redis_url=redis,
              log_format=log_format, workers=workers)
    except KeyturnError as exc:
        print(f"keyturn serve: {' '.join(str(exc).split())}", file=sys.stderr)
        return CONFIG
    except KeyboardInterrupt:
        return INTERRUPTED
    return SUCCESS


def rotate_keys_command(*, config: str | None = None, data_dir: str | None = None,
                        redis: str | None = None) -> int:
    """``keyturn serve rotate-keys``: prints the new key's kid, then each retired one with the
    time it leaves the JWKS."""
    import datetime

    from ..server.runner import rotate_keys

    try:
        keys = rotate_keys(config, data_dir=data_dir, redis_url=redis)
    except KeyturnError as exc:
        print(f"keyturn serve rotate-keys: {' '.join(str(exc).split())}", file=sys.stderr)
        return CONFIG
    print(f"signing with the new key {keys[0].kid}")
    for old in keys[1:]:
        until = datetime.datetime.fromtimestamp(old.drop_at or 0, datetime.timezone.utc)
        print(f"retired key {old.kid} stays in the JWKS until {until:%Y-%m-%d %H:%M:%S} UTC")
    return SUCCESS


def demo_command(auto_approve: bool | None = None) -> int:
    """``keyturn demo``: the walk-through (server in-process, device login, refresh)."""
    from .walkthrough import demo

    try:
        demo(auto_approve=auto_approve)
    except KeyturnError as exc:
        print(f"keyturn demo: {' '.join(str(exc).split())}", file=sys.stderr)
        return FAILED
    except KeyboardInterrupt:
        print("keyturn demo: interrupted", file=sys.stderr)
        return INTERRUPTED
    return SUCCESS


def hash_password_command() -> int:
    """Read a password (twice on a terminal, once from a pipe) and print its scrypt hash, for the
    configuration file's ``password_hash`` / ``secret_hash``."""
    from ..server.passwords import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("keyturn: the passwords differ", file=sys.stderr)
            return FAILED
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("keyturn: empty password", file=sys.stderr)
        return FAILED
    print(hash_password(password))
    return SUCCESS


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m keyturn.server serve|rotate-keys|admin|demo|hash-password``."""
    import argparse

    from . import server_admin

    parser = argparse.ArgumentParser(prog="python -m keyturn.server")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the device authorization server")
    serve.add_argument("--config", help="configuration file (default: the demo configuration)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0, help="0 takes a free port")
    serve.add_argument("--data-dir")
    serve.add_argument("--cert", help="serve TLS with this certificate (PEM)")
    serve.add_argument("--key", help="... and this private key (PEM)")
    serve.add_argument("--forwarded-allow-ips", help="proxies whose X-Forwarded-* are believed")
    serve.add_argument("--path", default="", help="issuer path, e.g. /realm")
    redis_help = ("keep all state in Redis (several replicas); argv is public in `ps`: prefer "
                  "KEYTURN_REDIS_URL or the configuration's redis_url_env / redis_url_file")
    serve.add_argument("--redis", metavar="URL", help=redis_help)
    serve.add_argument("--workers", type=int, default=1,
                       help="server processes sharing the socket and the storage (default 1)")
    serve.add_argument("--log-format", choices=["text", "json"],
                       help="logs on stderr as text or JSON lines (default: the configuration's)")
    rotate = commands.add_parser("rotate-keys", help="a new signing key signs from now on")
    rotate.add_argument("--config", help="the server's configuration file")
    rotate.add_argument("--data-dir")
    rotate.add_argument("--redis", metavar="URL", help=redis_help)
    demo = commands.add_parser("demo", help="walk through a device login against a demo server")
    demo.add_argument("--auto-approve", action="store_true", default=None,
                      help="keyturn approves in the verification page itself")
    commands.add_parser("hash-password", help="print the scrypt hash of a password read on stdin")
    server_admin.add_parser(commands, redis_help)
    args = parser.parse_args(argv)
    if args.command == "admin":
        return server_admin.run(args)
    if args.command == "serve":
        return serve_command(config=args.config, host=args.host, port=args.port,
                             data_dir=args.data_dir, cert=args.cert, key=args.key,
                             forwarded_allow_ips=args.forwarded_allow_ips, path=args.path,
                             redis=args.redis, log_format=args.log_format,
                             workers=args.workers)
    if args.command == "rotate-keys":
        return rotate_keys_command(config=args.config, data_dir=args.data_dir, redis=args.redis)
    if args.command == "demo":
        return demo_command(args.auto_approve)
    return hash_password_command()
