"""``keyturn serve``: run the RFC 8628 device authorization server (:mod:`keyturn.server`);
``keyturn serve rotate-keys``: make a new signing key."""

from __future__ import annotations

from typing import Literal

import click

from .common import require_server_extra
from .serve_admin import admin

__all__ = ["command"]

_REDIS_HELP = ("Keep all state in Redis, for several replicas (redis://host:6379/0). The command "
               "line is visible to every local user in `ps`: give a URL with a password in "
               "KEYTURN_REDIS_URL or the configuration (redis_url_env, redis_url_file) instead.")


@click.group("serve", invoke_without_command=True)
@click.option("--config", "config_file", metavar="FILE",
              help="Server configuration (TOML; default: the demo configuration).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=0, type=int, show_default=True, help="0 takes a free port.")
@click.option("--data-dir", metavar="DIR", help="Where SQLite and the signing keys live.")
@click.option("--cert", metavar="PEM", help="Serve TLS with this certificate chain.")
@click.option("--key", metavar="PEM", help="... and this private key.")
@click.option("--forwarded-allow-ips", metavar="IPS",
              help="Reverse proxies whose X-Forwarded-* headers are believed (comma-separated).")
@click.option("--path", "issuer_path", default="", metavar="/REALM",
              help="Serve under this path: the issuer becomes http://HOST:PORT/REALM (https with "
                   "--cert); ignored when the configuration names an issuer.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 256),
              help="Server processes sharing the socket and the storage (about one per core).")
@click.option("--redis", "redis_url", metavar="URL", help=_REDIS_HELP)
@click.option("--log-format", type=click.Choice(["text", "json"]),
              help="Logs on stderr as text or JSON lines (default: the configuration's, else text).")
@click.pass_context
def command(ctx: click.Context, config_file: str | None, host: str, port: int, data_dir: str | None,
            cert: str | None, key: str | None, forwarded_allow_ips: str | None, issuer_path: str,
            workers: int,
            redis_url: str | None, log_format: Literal["text", "json"] | None) -> None:
    """Run the RFC 8628 device authorization server (the first stdout line is its issuer URL)."""
    if ctx.invoked_subcommand is not None:
        return
    require_server_extra()
    from .server_commands import serve_command

    code = serve_command(
        config=config_file, host=host, port=port, data_dir=data_dir, cert=cert, key=key,
        forwarded_allow_ips=forwarded_allow_ips, path=issuer_path, redis=redis_url, workers=workers,
        log_format=log_format)
    raise click.exceptions.Exit(code)


@command.command("rotate-keys")
@click.option("--config", "config_file", metavar="FILE",
              help="The configuration of the server whose keys to rotate.")
@click.option("--data-dir", metavar="DIR", help="Its data directory (if not in the configuration).")
@click.option("--redis", "redis_url", metavar="URL", help=_REDIS_HELP)
def rotate_keys(config_file: str | None, data_dir: str | None, redis_url: str | None) -> None:
    """A new signing key signs from now on; the old one stays in the JWKS until its tokens expire."""
    require_server_extra()
    from .server_commands import rotate_keys_command

    raise click.exceptions.Exit(
        rotate_keys_command(config=config_file, data_dir=data_dir, redis=redis_url))


command.add_command(admin)  # keyturn serve admin logins|revoke|clients (.serve_admin)
