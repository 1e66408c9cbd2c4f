"""``keyturn serve``: run the RFC 8628 device authorization server (:mod:`keyturn.server`)."""

from __future__ import annotations

import click

from .common import require_server_extra

__all__ = ["command"]


@click.command("serve")
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
@click.option("--redis", "redis_url", metavar="URL",
              help="Keep all state in Redis, for several replicas (redis://host:6379/0).")
def command(config_file: str | None, host: str, port: int, data_dir: str | None, cert: str | None,
            key: str | None, forwarded_allow_ips: str | None, issuer_path: str,
            redis_url: str | None) -> None:
    """Run the RFC 8628 device authorization server (the first stdout line is its issuer URL)."""
    require_server_extra()
    from .server_commands import serve_command

    code = serve_command(
        config=config_file, host=host, port=port, data_dir=data_dir, cert=cert, key=key,
        forwarded_allow_ips=forwarded_allow_ips, path=issuer_path, redis=redis_url)
    raise click.exceptions.Exit(code)
