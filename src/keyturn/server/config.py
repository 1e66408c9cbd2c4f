"""The server's configuration file (TOML), and the demo configuration.

::

    issuer = "https://login.example.org/realm"     # optional: else http://HOST:PORT
    audience = "https://api.example.org"           # optional: access tokens' "aud" (else the issuer)
    purge_interval = 600                           # seconds between purges of expired rows
    # Redis for several replicas (instead of --redis URL, which every local user sees in `ps`):
    # one of redis_url (this file must then be chmod 600), redis_url_env, redis_url_file.
    redis_url_env = "KEYTURN_REDIS_URL"
    signing_key_secret_env = "KEYTURN_SIGNING_KEK"  # encrypts the signing keys at rest
    rotate_keys_every = "30d"                       # optional: s, m, h or d
    signing_alg = "ES256"                           # or "RS256" (the default): tokens' signatures
    site_name = "Example Lab"                       # the /device page's name (else the issuer's host)
    user_code_type = "letters"                      # or "digits" (11, shown 1234-5678-901)

    log_format = "json"                            # logs as JSON lines (default "text")

    [metrics]                                      # GET /metrics (Prometheus); off by default
    enabled = true
    token_env = "KEYTURN_METRICS_TOKEN"            # or token_file: scrapes need this bearer token

    [lifetimes]                                    # seconds; these are the defaults
    device_code = 1800
    interval = 5
    access_token = 600
    id_token = 600
    refresh_token = 2592000
    retry_grace = 20                               # the identical refresh retried: same answer

    [rate_limits]                                  # per window of seconds; these are the defaults
    window = 300
    per_address = 10                               # wrong user codes on the /device page
    overall = 300
    secret_per_address = 20                        # wrong client secrets, per client and address
    secret_per_client = 200                        # wrong client secrets, per client
    pending_per_client = 5000                      # new device grants per device_code lifetime
    pending_per_address = 100                      # the same, per address (429 past either)
    name_free = 5                                  # wrong passwords per user name and name_window
    name_delay = 60                                # then a wait, doubling per failure
    name_delay_max = 3600                          # up to this
    name_window = 86400                            # seconds the name's failures are counted in

    [scope_descriptions]                           # what the approval page says a scope gives
    "api:read" = "read your data"                  # (openid, profile, email, offline_access: built in)

    [clients.cli]
    name = "Cluster command line"                 # shown on the approval page
    grants = ["device_code", "refresh_token"]     # short names or the URNs
    scopes = ["openid", "profile", "offline_access"]
    # secret_hash = "scrypt$..."                  # a confidential client; absent: a public one

    [users.alice]
    password_hash = "scrypt$..."                  # or "$argon2id$..."
    name = "Alice Example"                        # released by scope (OIDC Core §5.4: claims.py)
    email = "alice@example.org"

Hashes are made with ``keyturn.server.hash_password`` (scrypt). Secrets never appear in the file.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from ..errors import ConfigError
from ..protocol.grants import GRANT_CLIENT_CREDENTIALS, GRANT_DEVICE_CODE, GRANT_REFRESH_TOKEN
from ..protocol.rfc8628 import DEFAULT_INTERVAL, DEFAULT_LIFETIME
from .config_values import known_keys as _known_keys
from .config_values import private_file as _private_file
from .device_flow import USER_CODE_FORMATS, UserCodeFormat, UserCodeType
from .logformat import LogFormat
from .metrics import MetricsConfig, metrics_config
from .passwords import hash_password

if TYPE_CHECKING:
    from .upstreams.config import UpstreamConfig

__all__ = ["DEMO_SERVICE_CLIENT", "ClientConfig", "Lifetimes", "RateLimits", "ServerConfig",
           "demo_config", "load_config"]

_GRANT_NAMES = {
    "device_code": GRANT_DEVICE_CODE, GRANT_DEVICE_CODE: GRANT_DEVICE_CODE,
    "refresh_token": GRANT_REFRESH_TOKEN, "client_credentials": GRANT_CLIENT_CREDENTIALS,
}
#: The demo configuration's confidential client: the README's first ClientCredentials example
#: (client_id "batch-job", scope api:read and api:write) runs against ``keyturn serve`` as it stands.
DEMO_SERVICE_CLIENT = "batch-job"
DEMO_SERVICE_SCOPES = ("api:read", "api:write")
SUPPORTED_GRANTS = (GRANT_DEVICE_CODE, GRANT_REFRESH_TOKEN, GRANT_CLIENT_CREDENTIALS)
#: What ``signing_alg`` may name: RS256 (RSA 2048, the default) and ES256 (P-256).
SIGNING_ALGS = ("RS256", "ES256")
DEFAULT_SCOPES = ("openid", "profile", "email", "offline_access")


@dataclass(frozen=True)
class Lifetimes:
    device_code: int = DEFAULT_LIFETIME
    interval: int = DEFAULT_INTERVAL
    access_token: int = 600
    id_token: int = 600
    refresh_token: int = 30 * 24 * 3600
    #: A client that repeats the identical refresh this soon (its answer was lost) gets the same
    #: answer again instead of a revocation (docs/server.md).
    retry_grace: int = 20


@dataclass(frozen=True)
class RateLimits:
    """Per ``window`` seconds: wrong user codes allowed from one address and from everyone; wrong
    secrets of one confidential client allowed from one address and from everyone (past these,
    its secret is not even hashed). Per user name: ``name_free`` wrong passwords per
    ``name_window`` seconds, then one per delay of ``name_delay`` seconds doubling up to
    ``name_delay_max`` (:class:`~.ratelimit.NameAttempts`; past them the password is not even
    checked)."""

    window: int = 300
    per_address: int = 10
    overall: int = 300
    secret_per_address: int = 20
    secret_per_client: int = 200
    #: New device grants per client and per address in a window of ``lifetimes.device_code``
    #: seconds (:mod:`.grantlimit`).
    pending_per_client: int = 5000
    pending_per_address: int = 100
    name_free: int = 5
    name_delay: int = 60
    name_delay_max: int = 3600
    name_window: int = 86400
    #: Presses of "Sign in with NAME" per ``window`` for one user code and from one address
    #: (:mod:`.upstreams.presses`: each press stores a login and may call the upstream).
    upstream_presses_per_code: int = 5
    upstream_presses_per_address: int = 60


@dataclass(frozen=True)
class ClientConfig:
    client_id: str
    name: str
    grants: tuple[str, ...]
    scopes: tuple[str, ...]
    secret_hash: str | None = field(default=None, repr=False)

    @property
    def public(self) -> bool:
        return self.secret_hash is None

    @property
    def issues_refresh_tokens(self) -> bool:
        """A device code redeemed by this client gets a refresh token (whether or not the scope
        has ``offline_access``): the client was allowed the refresh grant. The approval page says
        so ("stay signed in on that device")."""
        return GRANT_REFRESH_TOKEN in self.grants


@dataclass(frozen=True)
class ServerConfig:
    clients: Mapping[str, ClientConfig]
    users: Mapping[str, tuple[str, Mapping[str, str]]] = field(default_factory=dict, repr=False)
    issuer: str | None = None
    audience: str | None = None
    lifetimes: Lifetimes = Lifetimes()
    rate_limits: RateLimits = RateLimits()
    data_dir: str | None = None
    #: Seconds between purges of expired rows (:mod:`.housekeeping`).
    purge_interval: int = 600
    #: ``[metrics]``: /metrics on or off (off by default: 404), and its bearer token.
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    #: The logs on stderr: "text" lines or "json" objects, one a line (``--log-format``).
    log_format: LogFormat = "text"
    #: Redis for the replicas' state, from redis_url / redis_url_env / redis_url_file (it may
    #: hold a password: never shown).
    redis_url: str | None = field(default=None, repr=False)
    #: The environment variable holding the key that encrypts the signing keys at rest.
    signing_key_secret_env: str | None = None
    #: Seconds between scheduled key rotations (``rotate_keys_every = "30d"``); None: only by hand.
    rotate_keys_every: int | None = None
    #: What signs access tokens and id_tokens (:data:`SIGNING_ALGS`; :mod:`.tokens` says why
    #: RS256 is the default).
    signing_alg: str = "RS256"
    #: The alphabet of user codes: "letters" (8 of RFC 8628 §6.1's base 20) or "digits" (11).
    user_code_type: UserCodeType = "letters"
    #: The name the /device page shows ("Sign in to SITE"); None: the issuer's host.
    site_name: str | None = None
    #: A site's own words for what a scope gives, shown on the approval page (they replace the
    #: built-in ones of page_html.py for the same scope).
    scope_descriptions: Mapping[str, str] = field(default_factory=dict)
    #: Set only by demo_config: the demo user's password, to print. Never read from a file.
    #: ``[upstreams.NAME]``: identity providers to sign in with (:mod:`.upstreams.config`).
    upstreams: Mapping[str, UpstreamConfig] = field(default_factory=dict)
    demo_password: str | None = field(default=None, repr=False)
    #: Set only by demo_config: the secret of its confidential client DEMO_SERVICE_CLIENT, to print.
    demo_client_secret: str | None = field(default=None, repr=False)

    @property
    def user_codes(self) -> UserCodeFormat:
        """The alphabet and length of the user codes (``user_code_type``)."""
        return USER_CODE_FORMATS[self.user_code_type]

    @property
    def scopes_supported(self) -> tuple[str, ...]:
        scopes: dict[str, None] = dict.fromkeys(DEFAULT_SCOPES)
        for client in self.clients.values():
            scopes.update(dict.fromkeys(client.scopes))
        return tuple(scopes)


def _positive_ints(table: Any, cls: type[Any], where: str) -> Any:
    if table is None:
        return cls()
    if not isinstance(table, Mapping):
        raise ConfigError(f"[{where}] must be a table")
    known = set(cls.__dataclass_fields__)
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"[{where}] has an unknown key {key!r} (known: {', '.join(sorted(known))})")
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"[{where}] {key} must be a positive whole number of seconds or counts")
    return cls(**table)


def _rate_limits(table: Any) -> RateLimits:
    limits: RateLimits = _positive_ints(table, RateLimits, "rate_limits")
    if limits.name_delay_max < limits.name_delay:
        raise ConfigError("[rate_limits] name_delay_max must be at least name_delay")
    return limits


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where} must be a list of strings")
    return tuple(value)


#: The keys a file may hold: any other is a ConfigError, since TOML puts a key written below a
#: table header into that table, where it would otherwise be ignored without a word (a
#: signing_key_secret_env under [clients.x] would leave the signing keys unencrypted).
_TOP_LEVEL_KEYS = frozenset({
    "upstreams",
    "issuer", "audience", "purge_interval", "data_dir", "redis_url", "redis_url_env", "metrics",
    "log_format",
    "redis_url_file", "signing_key_secret_env", "rotate_keys_every", "lifetimes", "rate_limits",
    "clients", "users", "signing_alg", "user_code_type", "site_name", "scope_descriptions"})
_CLIENT_KEYS = frozenset({"name", "grants", "scopes", "secret_hash"})


def _client(client_id: str, table: Any) -> ClientConfig:
    if not isinstance(table, Mapping):
        raise ConfigError(f"[clients.{client_id}] must be a table")
    _known_keys(table, _CLIENT_KEYS, f"[clients.{client_id}]")
    grants = []
    for name in _strings(table.get("grants", ["device_code", "refresh_token"]),
                         f"clients.{client_id}.grants"):
        if name not in _GRANT_NAMES and name not in SUPPORTED_GRANTS:
            raise ConfigError(f"clients.{client_id}.grants: unsupported grant {name!r}")
        grants.append(_GRANT_NAMES.get(name, name))
    secret_hash = table.get("secret_hash")
    if secret_hash is not None and not (isinstance(secret_hash, str)
                                        and secret_hash.startswith(("scrypt$", "$argon2"))):
        raise ConfigError(f"clients.{client_id}.secret_hash must be an scrypt$ or $argon2 hash")
    if GRANT_CLIENT_CREDENTIALS in grants and secret_hash is None:
        raise ConfigError(f"clients.{client_id}: client_credentials needs a confidential client "
                          "(a secret_hash)")
    name = table.get("name", client_id)
    return ClientConfig(
        client_id=client_id, name=str(name), grants=tuple(grants),
        scopes=_strings(table.get("scopes", list(DEFAULT_SCOPES)), f"clients.{client_id}.scopes"),
        secret_hash=secret_hash,
    )


def _user(name: str, table: Any) -> tuple[str, Mapping[str, str]]:
    if not isinstance(table, Mapping) or not isinstance(table.get("password_hash"), str):
        raise ConfigError(f"[users.{name}] needs a password_hash (scrypt$... or $argon2...)")
    claims = {k: str(v) for k, v in table.items() if k != "password_hash" and isinstance(v, str)}
    return str(table["password_hash"]), claims


def _purge_interval(data: Mapping[str, Any]) -> int:
    value = data.get("purge_interval", ServerConfig.purge_interval)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError("purge_interval must be a positive whole number of seconds")
    return value


_DURATION = re.compile(r"([1-9][0-9]*)([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any, where: str) -> int:
    """Seconds from ``3600`` or ``"3600s"``, ``"90m"``, ``"12h"``, ``"30d"``."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = _DURATION.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ConfigError(f'{where} must be a duration such as "30d", "12h" or 3600 (seconds)')
    return int(match.group(1)) * _UNITS[match.group(2)]


def has_password(url: str) -> bool:
    """Whether ``url`` holds a Redis credential: as userinfo, or as ``?password=`` /
    ``?username=``, which redis-py reads too."""
    try:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        return bool(parts.password or parts.username or "password" in query or "username" in query)
    except ValueError:
        return True  # unparsable: treat it as secret


def _redis_url(data: Mapping[str, Any]) -> str | None:
    given = [key for key in ("redis_url", "redis_url_env", "redis_url_file") if key in data]
    if len(given) > 1:
        raise ConfigError(f"give one of {', '.join(given)}, not several")
    if not given:
        return None
    key = given[0]
    value = data[key]
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key} must be a string")
    if key == "redis_url_env":
        url = os.environ.get(value)
        if not url:
            raise ConfigError(f"redis_url_env names {value}, which is not set")
    elif key == "redis_url_file":
        url = _private_file(value, "redis_url_file")
    else:
        url = value
    if not url.startswith(("redis://", "rediss://", "unix://")):
        # The URL itself is not shown: it may hold the password.
        raise ConfigError(f"{key}: the Redis URL must start with redis://, rediss:// or unix://")
    return url


def _user_code_type(data: Mapping[str, Any]) -> UserCodeType:
    value = data.get("user_code_type", "letters")
    for name in USER_CODE_FORMATS:  # the formats' own names: typed as UserCodeType
        if value == name:
            return name
    raise ConfigError(f"user_code_type must be one of {', '.join(map(repr, USER_CODE_FORMATS))}")


def _scope_descriptions(table: Any) -> dict[str, str]:
    if table is None:
        return {}
    if not isinstance(table, Mapping) or not all(
            isinstance(scope, str) and isinstance(text, str) and text.strip()
            for scope, text in table.items()):
        raise ConfigError('[scope_descriptions] must map scopes to words, e.g. "api:read" = '
                          '"read your data"')
    return {scope: text.strip() for scope, text in table.items()}


def _log_format(data: Mapping[str, Any]) -> LogFormat:
    value = data.get("log_format", "text")
    if value == "json":
        return "json"
    if value == "text":
        return "text"
    raise ConfigError('log_format must be "text" or "json"')


def _signing_alg(data: Mapping[str, Any]) -> str:
    value = data.get("signing_alg", "RS256")
    if value not in SIGNING_ALGS:
        raise ConfigError(f"signing_alg must be one of {', '.join(SIGNING_ALGS)}")
    return str(value)


def parse_config(data: Mapping[str, Any]) -> ServerConfig:
    _known_keys(data, _TOP_LEVEL_KEYS, "the configuration's top level")
    clients = data.get("clients", {})
    users = data.get("users", {})
    if not isinstance(clients, Mapping) or not isinstance(users, Mapping):
        raise ConfigError("[clients] and [users] must be tables of tables")
    for key in ("issuer", "audience", "data_dir", "signing_key_secret_env", "site_name"):
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"{key} must be a string")
    issuer = data.get("issuer")
    if issuer is not None and not issuer.startswith(("https://", "http://")):
        raise ConfigError("issuer must be an http(s) URL")
    # Here, not at the top: upstreams.config reuses this module's helpers.
    from .upstreams.config import parse_upstreams

    return ServerConfig(
        upstreams=parse_upstreams(data.get("upstreams"), local_users=users),
        clients={cid: _client(cid, table) for cid, table in clients.items()},
        users={name: _user(name, table) for name, table in users.items()},
        issuer=issuer.rstrip("/") if issuer else None, audience=data.get("audience"),
        lifetimes=_positive_ints(data.get("lifetimes"), Lifetimes, "lifetimes"),
        purge_interval=_purge_interval(data),
        metrics=metrics_config(data.get("metrics"), read_secret_file=_private_file),
        log_format=_log_format(data),
        rate_limits=_rate_limits(data.get("rate_limits")),
        data_dir=data.get("data_dir"), redis_url=_redis_url(data),
        signing_key_secret_env=data.get("signing_key_secret_env"),
        rotate_keys_every=(parse_duration(data["rotate_keys_every"], "rotate_keys_every")
                           if "rotate_keys_every" in data else None),
        signing_alg=_signing_alg(data),
        user_code_type=_user_code_type(data), site_name=data.get("site_name") or None,
        scope_descriptions=_scope_descriptions(data.get("scope_descriptions")),
    )


def load_config(path: str | os.PathLike[str]) -> ServerConfig:
    """Read and check a configuration file; :class:`~keyturn.errors.ConfigError` says what is wrong."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
    try:
        with open(path, "rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            data = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"cannot read the server configuration {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the server configuration {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        # TOML v1.0.0: "A TOML file must be a valid UTF-8 encoded Unicode document."
        raise ConfigError(f"the server configuration {path} is not UTF-8 text") from None
    except RecursionError:
        # tomllib parses nested arrays and inline tables by recursion.
        raise ConfigError(f"the server configuration {path} nests arrays or inline tables too "
                          "deeply") from None
    from .upstreams.config import holds_inline_secret

    if holds_inline_secret(data) and stat.S_IMODE(mode) & 0o077:
        raise ConfigError(f"the server configuration {path} holds an upstream's client_secret but "
                          f"is readable by others: run chmod 600 {path}, or use client_secret_env "
                          "/ client_secret_file")
    url = data.get("redis_url")
    if isinstance(url, str) and has_password(url) and stat.S_IMODE(mode) & 0o077:
        # A secret in a file others can read is a secret no longer.
        raise ConfigError(f"the server configuration {path} holds redis_url with a password but "
                          f"is readable by others: run chmod 600 {path}, or use redis_url_env / "
                          "redis_url_file")
    return parse_config(data)


def demo_config(password: str | None = None, client_secret: str | None = None) -> ServerConfig:
    """design.md §3: a public client ``demo`` allowed the device and refresh grants, and a user
    ``demo`` whose password is made up now (and printed by the caller); and a confidential client
    :data:`DEMO_SERVICE_CLIENT` allowed only client_credentials, whose secret is made up now too
    (printed by the caller) and kept only as a hash, as a configuration file's ``secret_hash``."""
    password = password or secrets.token_urlsafe(9)
    client_secret = client_secret or secrets.token_urlsafe(24)
    config = ServerConfig(
        clients={
            "demo": ClientConfig(
                client_id="demo", name="keyturn demo",
                grants=(GRANT_DEVICE_CODE, GRANT_REFRESH_TOKEN), scopes=DEFAULT_SCOPES,
            ),
            DEMO_SERVICE_CLIENT: ClientConfig(
                client_id=DEMO_SERVICE_CLIENT, name="keyturn demo service",
                grants=(GRANT_CLIENT_CREDENTIALS,), scopes=DEMO_SERVICE_SCOPES,
                secret_hash=hash_password(client_secret),
            ),
        },
        users={"demo": (hash_password(password, n=2**14), {"name": "Demo User",
                                                           "email": "demo@example.invalid"})},
    )
    return replace(config, demo_password=password, demo_client_secret=client_secret)
