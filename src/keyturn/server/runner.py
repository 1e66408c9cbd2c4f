"""Running the server: ``serve()`` in the foreground, :class:`ServerThread` in-process.

The listening socket is bound first (port 0 takes a free port), so the issuer URL is known before
the app is built, and clients may connect at once: the kernel queues them until uvicorn accepts.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import stat
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from ..errors import ConfigError, KeyturnError
from .app import TRUSTED_PEER_KEY, AccessLog, create_app
from .config import DEMO_SERVICE_CLIENT, DEMO_SERVICE_SCOPES, ServerConfig, demo_config, load_config
from .keys import KeyStore, SigningKey, policy_for, unreadable
from .logformat import LogFormat, logging_config
from .metrics import shared_directory
from .passwords import Authenticator
from .storage.base import ServerStorage
from .storage.sqlite import SQLiteStorage
from .workers import run_workers

__all__ = ["REDIS_URL_ENV", "ServerThread", "default_data_dir", "open_server_storage",
           "open_storage", "redis_url_for", "require_server_data", "rotate_keys", "serve"]

log = logging.getLogger("keyturn.server")

DATABASE_NAME = "keyturn-server.sqlite3"
#: The Redis URL from the environment: unlike ``--redis URL``, not shown to every local user by
#: ``ps`` (a process's argv is public; its environment is readable by its owner only).
REDIS_URL_ENV = "KEYTURN_REDIS_URL"


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "keyturn" / "server"


def open_storage(data_dir: str | os.PathLike[str], redis_url: str | None = None) -> ServerStorage:
    """Redis when a URL is given (replicas share it), else SQLite in ``data_dir`` (created 0700;
    the database 0600)."""
    if redis_url:
        from .storage.redis import RedisStorage

        return RedisStorage(redis_url)
    return SQLiteStorage(Path(data_dir) / DATABASE_NAME)


def redis_url_for(settings: ServerConfig, given: str | None = None) -> str | None:
    """The Redis URL: ``--redis`` if given, else :data:`REDIS_URL_ENV`, else the configuration's
    ``redis_url`` / ``redis_url_env`` / ``redis_url_file``; None: SQLite."""
    return given or os.environ.get(REDIS_URL_ENV) or settings.redis_url


#: How an operator's command finds the server's storage (in its "no storage there" errors).
_POINT_AT = ("point it at the server's: --config (its configuration file, with data_dir or "
             f"redis_url), --data-dir, or --redis / {REDIS_URL_ENV} (the Redis URL of the "
             "server's EnvironmentFile=, which sudo does not pass on)")


def open_server_storage(config_path: str | os.PathLike[str] | None, *,
                        data_dir: str | os.PathLike[str] | None, redis_url: str | None,
                        command: str, existing: bool = False) -> tuple[ServerConfig, ServerStorage]:
    """The configuration and the storage of the server that runs with them, for a ``command``
    run beside it (``rotate-keys``, ``admin``); the caller closes the storage. ``existing``: a
    SQLite file that is not there is an error (a mistyped ``--data-dir`` would otherwise make
    an empty storage, where ``admin`` finds no login and revokes nothing); see also
    :func:`require_server_data`."""
    given_redis = redis_url or os.environ.get(REDIS_URL_ENV)
    if config_path is None and data_dir is None and not given_redis:
        # The demo `serve` keeps its keys in a temporary directory: a default here would make
        # (or read) a storage that no server uses.
        raise ConfigError(f"{command} needs the server's storage: give --config (the server's "
                          "configuration file), --data-dir or --redis")
    settings = load_config(config_path) if config_path is not None else demo_config()
    if data_dir is None:
        data_dir = settings.data_dir or default_data_dir()
    url = redis_url_for(settings, redis_url)
    database = Path(data_dir) / DATABASE_NAME
    if existing and not url and not database.is_file():
        raise ConfigError(f"no server's storage at {str(database)!r} (the file does "
                          f"not exist, nothing was made); {_POINT_AT}")
    return settings, open_storage(data_dir, url)


def require_server_data(storage: ServerStorage) -> None:
    """ConfigError unless ``storage`` holds a signing keyring, which every server makes at its
    start: an empty Redis database (or a SQLite file no server ran on) is no server's storage.
    Nothing is written (storage errors, such as Redis being down, propagate)."""
    from .keys import SETTING

    class _Absent(Exception):
        pass

    def absent() -> str:
        raise _Absent  # setting() calls make() before it stores anything

    try:
        storage.setting(SETTING, absent)
    except _Absent:
        raise ConfigError(f"{storage!r} holds no keyturn server's data (no signing "
                          f"keyring: no server has run on it); {_POINT_AT}") from None


def hashes_readable_by_all(config_path: str | os.PathLike[str], settings: ServerConfig) -> str | None:
    """A warning when the configuration file holds password or client-secret hashes and every
    local user may read it: with the hashes, guessing goes on offline, past every limit /device
    and /token put on it. Group-readable is the documented ``0640 root:keyturn``; the secrets
    themselves in a readable file are refused by :func:`.config.load_config`."""
    hashes = bool(settings.users) or any(not c.public for c in settings.clients.values())
    try:
        readable = bool(os.stat(config_path).st_mode & stat.S_IROTH)
    except OSError:
        return None
    if not (hashes and readable):
        return None
    return (f"the server configuration {config_path} holds password or client secret hashes and "
            f"every local user may read it (they could guess at them offline): run chown "
            f"root:keyturn {config_path} && chmod 640 {config_path} (the server's group)")


def rotate_keys(config_path: str | os.PathLike[str] | None = None, *,
                data_dir: str | os.PathLike[str] | None = None,
                redis_url: str | None = None) -> list[SigningKey]:
    """``keyturn serve rotate-keys``: a new key signs from now on, in the storage the server with
    this configuration uses; the old ones stay published until their tokens have expired.
    Running servers pick the new key up at their next read of the keyring. Returns the ring,
    newest first."""
    # existing: a mistyped --data-dir would get a keyring of its own, which no server reads.
    settings, storage = open_server_storage(config_path, data_dir=data_dir, redis_url=redis_url,
                                            command="rotate-keys", existing=True)
    try:
        store = KeyStore(storage, policy_for(settings))
        try:
            return store.rotate()
        except KeyturnError:
            raise
        except Exception as exc:  # Redis down, SQLite locked: one line and exit 3, as serve
            raise unreadable(store, exc) from None
    finally:
        storage.close()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets whose proto says TCP,
    # and with Nagle on, every keep-alive answer waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _issuer(config: ServerConfig, sock: socket.socket, host: str, tls: bool, path: str = "") -> str:
    if config.issuer:
        return config.issuer
    port = sock.getsockname()[1]
    shown = host.strip("[]")
    if shown in ("", "0.0.0.0", "::"):  # noqa: S104 - naming the wildcard, not binding to it
        shown = socket.gethostname()
    if ":" in shown:
        shown = f"[{shown}]"
    path = "/" + path.strip("/") if path.strip("/") else ""
    return f"{'https' if tls else 'http'}://{shown}:{port}{path}"


def http_implementations() -> tuple[str, str]:
    """(HTTP parser, event loop) uvicorn runs with: httptools and uvloop when installed (the
    ``server`` extra brings them; about twice the requests per core of h11 on asyncio), else
    uvicorn's pure-Python h11 and the standard asyncio loop."""
    http = "httptools" if importlib.util.find_spec("httptools") is not None else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    return http, loop


def _behind_proxies(app: Any, forwarded_allow_ips: str) -> Any:
    """uvicorn's ProxyHeadersMiddleware (X-Forwarded-For and -Proto believed from these peers
    only), which also marks in the scope whether the peer is one of them, before it replaces the
    client address: AccessLog believes X-Request-ID from those peers only."""
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    class MarkingTrustedPeer(ProxyHeadersMiddleware):
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "lifespan":
                client = scope.get("client")
                scope[TRUSTED_PEER_KEY] = (client[0] if client else None) in self.trusted_hosts
            await super().__call__(scope, receive, send)

    return MarkingTrustedPeer(app, trusted_hosts=forwarded_allow_ips)


def _uvicorn_server(app: Any, *, cert: str | None, key: str | None,
                    forwarded_allow_ips: str | None, configure_logging: bool,
                    log_format: LogFormat = "text") -> Any:
    import uvicorn

    http, loop = http_implementations()
    config = uvicorn.Config(
        # lifespan "on": the app's lifespan runs the periodic purge (housekeeping.py).
        AccessLog(app) if forwarded_allow_ips is None else
        _behind_proxies(AccessLog(app), forwarded_allow_ips),
        lifespan="on", access_log=False, server_header=False, http=http, loop=loop,
        # Forwarded headers are believed only from the proxies named (issue 4: "honoured only
        # when configured"), by _behind_proxies, not by uvicorn's own step.
        proxy_headers=False,
        ssl_certfile=cert, ssl_keyfile=key,
        log_config=logging_config(log_format) if configure_logging else None,
        # On stop, idle keep-alive connections (a TLS client that never closes) must not hold
        # the shutdown: requests in flight get this long.
        timeout_graceful_shutdown=5,
    )
    # uvicorn's own access log writes the query string (a user code on /device?user_code=):
    # AccessLog replaces it.
    logging.getLogger("uvicorn.access").disabled = True
    return uvicorn.Server(config)


def serve(
    config_path: str | os.PathLike[str] | None = None, host: str = "127.0.0.1", port: int = 0, *,
    data_dir: str | os.PathLike[str] | None = None, cert: str | None = None, key: str | None = None,
    forwarded_allow_ips: str | None = None, ready: Callable[[str], None] | None = None,
    authenticator: Authenticator | None = None, path: str = "",
    config: str | os.PathLike[str] | None = None, redis_url: str | None = None,
    log_format: LogFormat | None = None, workers: int = 1,
) -> None:
    """Run the authorization server until interrupted (``keyturn serve``).

    The first line on stdout is the issuer URL. Without ``config_path`` the demo configuration is
    used (design.md §3): its user's password is printed on the next line, its confidential
    client's id and secret on the one after, and its data lives in a temporary directory unless
    ``data_dir`` is given. ``path`` gives the issuer a path
    (``http://host:port/realm``) when the configuration names no issuer. ``forwarded_allow_ips``
    (comma-separated addresses, or ``*``) names the reverse proxies whose X-Forwarded-For/-Proto
    are believed; without it forwarded headers are ignored. ``redis_url`` keeps all state in
    Redis instead of SQLite, for several replicas (see :func:`redis_url_for` for the ways to give
    it that ``ps`` does not show). ``log_format`` ("text" or "json" lines on stderr) overrides
    the configuration's ``log_format``. ``workers`` > 1 forks that many server processes, which
    accept on the one listening socket and share the storage (SQLite in WAL mode, or Redis):
    the signing keys and the page secret are made before the fork, so all sign alike.
    """
    if workers < 1:
        raise ConfigError("workers must be at least 1")
    config_path = config_path if config_path is not None else config  # ``config=``: an alias
    settings = load_config(config_path) if config_path is not None else demo_config()
    if (cert is None) != (key is None):
        raise ConfigError("give both cert= and key= to serve TLS, or neither")
    temporary: tempfile.TemporaryDirectory[str] | None = None
    if data_dir is None and settings.data_dir is not None:
        data_dir = settings.data_dir
    if data_dir is None:
        if config_path is None:
            temporary = tempfile.TemporaryDirectory(prefix="keyturn-demo-")
            data_dir = temporary.name
        else:
            data_dir = default_data_dir()
    redis = redis_url_for(settings, redis_url)
    storage = open_storage(data_dir, redis)
    sock = _bind(host, port)
    try:
        issuer = _issuer(settings, sock, host, tls=cert is not None, path=path)
        # Built here even with workers: the keyring and the page secret are made now, once (on
        # a first start), and a wrong key-encryption key fails before anything listens.
        app = create_app(settings, storage, issuer, authenticator=authenticator)

        def uvicorn_for(app: Any) -> Any:
            return _uvicorn_server(app, cert=cert, key=key, forwarded_allow_ips=forwarded_allow_ips,
                                   configure_logging=True,
                                   log_format=log_format or settings.log_format)

        server = uvicorn_for(app)
        if not logging.getLogger("keyturn").handlers:
            logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                                format="%(asctime)s %(name)s %(levelname)s %(message)s")
        loose = hashes_readable_by_all(config_path, settings) if config_path is not None else None
        if loose:
            log.warning("%s", loose)  # after logging is set up: a JSON line with --log-format json
        print(issuer, flush=True)
        if settings.demo_password is not None:
            print(f"demo configuration: public client 'demo'; sign in at {issuer}/device as user "
                  f"'demo' with password {settings.demo_password}", flush=True)
        if settings.demo_client_secret is not None:
            print(f"demo configuration: confidential client '{DEMO_SERVICE_CLIENT}' "
                  f"(client_credentials, scope {' '.join(DEMO_SERVICE_SCOPES)}) with secret "
                  f"{settings.demo_client_secret}", flush=True)
        if ready is not None:
            ready(issuer)
        http, loop = http_implementations()
        log.info("HTTP parser %s, event loop %s, %d worker%s", http, loop, workers,
                 "" if workers == 1 else "s")
        if workers == 1:
            server.run(sockets=[sock])
        else:
            del app, server
            storage.close()  # no connection crosses a fork: each worker opens its own

            def worker() -> None:
                own = open_storage(data_dir, redis)
                try:
                    uvicorn_for(create_app(settings, own, issuer, authenticator=authenticator)
                                ).run(sockets=[sock])
                finally:
                    own.close()

            # /metrics answers for every worker: they add their counts up in one directory.
            with shared_directory(settings.metrics.enabled):
                run_workers(workers, worker)
    finally:
        sock.close()
        storage.close()
        if temporary is not None:
            temporary.cleanup()


class ServerThread:
    """The server on a free loopback port in a background thread (``keyturn demo``, tests)::

        with ServerThread(demo_config(), data_dir=tmp) as running:
            print(running.issuer)
    """

    def __init__(
        self, config: ServerConfig, *, data_dir: str | os.PathLike[str] | None = None,
        storage: ServerStorage | None = None, host: str = "127.0.0.1", port: int = 0,
        authenticator: Authenticator | None = None, cert: str | None = None,
        key: str | None = None, path: str = "", forwarded_allow_ips: str | None = None,
    ) -> None:
        self._temporary: tempfile.TemporaryDirectory[str] | None = None
        if storage is None:
            if data_dir is None:
                self._temporary = tempfile.TemporaryDirectory(prefix="keyturn-server-")
                data_dir = self._temporary.name
            storage = open_storage(data_dir, config.redis_url)
        self.storage = storage
        self.config = config
        self._sock = _bind(host, port)
        #: The port it listens on (the issuer may name another: a configured issuer, a proxy).
        self.port: int = self._sock.getsockname()[1]
        self.issuer = _issuer(config, self._sock, host, tls=cert is not None, path=path)
        self.app = create_app(config, storage, self.issuer, authenticator=authenticator)
        self._server = _uvicorn_server(self.app, cert=cert, key=key,
                                       forwarded_allow_ips=forwarded_allow_ips,
                                       configure_logging=False)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name="keyturn-server", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"ServerThread(issuer={self.issuer!r})"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()
        self.storage.close()
        if self._temporary is not None:
            self._temporary.cleanup()

    def __enter__(self) -> ServerThread:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
