"""The grants and the stores keyturn knows: one row each, read by the sources, the profiles and
``keyturn token``'s fast path.

A row says what the rest of keyturn needs to know about a grant without importing it: the name a
profile gives it (``grant = "device_code"``), the module and class of its source, the wire grant
type (what the token request sends and what the cache key holds; its RFC's value is in
:mod:`keyturn.protocol.wire`), the scope asked for when
``scope=`` is not given, whether it may start a login a person has to finish, whether a profile
may name it, and the settings of its own that a profile may hold. A source class names its row
(``grant_name = "device_code"``) and takes its ``grant_type`` and ``default_scope`` from it
(:meth:`keyturn.sources.base.Source.__init_subclass__`).

Adding a grant: write its source in ``src/keyturn/sources/`` (a :class:`~keyturn.sources.base.Source`
subclass with ``grant_name`` set, its request in ``_grant`` or ``_flow``, its constructor typed
``**options: Unpack[SourceOptions]`` plus its own keywords), and add its :class:`GrantRow` to
:data:`GRANT_ROWS`. With ``profile=True`` it is a ``grant =`` of the config file and of
``--flow``, and ``settings`` names its own keywords a config file may set. With
``interactive=True`` the command line treats it as a login: it is given ``interactive=`` (and
``keyturn login``'s prompt, when its source takes one: cli/login.py), so its source takes
``interactive=`` and raises ``LoginRequired`` to a silent caller; only the two logins of
:data:`LOGIN_PAIR` stand in for each other. tests/unit/test_registry.py
checks each row against its source: module, class, grant type, default scope, keywords.

Adding a store: write it in ``src/keyturn/stores/`` (a :class:`~keyturn.stores.base.Store`), and add
its :class:`StoreRow` to :data:`STORE_ROWS`: the ``store =`` names or URL schemes a profile uses
for it, and which one argument its constructor takes from the profile (the ``cache_dir``, the URL
itself, or nothing).

Standard library only, and not even that: the fast path imports this module (see
``python -X importtime -c "import keyturn.config"``), so no typing or dataclasses at run time.
"""

from __future__ import annotations

# The wire grant types (with their RFCs' words): protocol/ holds every RFC fact.
from .protocol.wire import (
    GRANT_AUTHORIZATION_CODE,
    GRANT_CLIENT_CREDENTIALS,
    GRANT_DEVICE_CODE,
    GRANT_JWT_BEARER,
    GRANT_REFRESH_TOKEN,
    GRANT_TOKEN_EXCHANGE,
)

# Not ``typing``: importing it costs the fast path milliseconds; mypy reads this name too.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Final

__all__ = [
    "FILE_STORE",
    "FLOW_ALIASES",
    "GRANT_ROWS",
    "LOGIN_PAIR",
    "SHARED_SETTINGS",
    "STORE_ROWS",
    "USER_LOGIN",
    "GrantRow",
    "StoreRow",
    "grant",
    "grants",
    "paired_login",
    "store_choices",
    "store_for",
]

#: An identity (``openid``) and a refresh token that outlives the session (``offline_access``):
#: the point of a person logging in once.
LOGIN_SCOPE: Final = ("openid", "offline_access")
#: What the OpenID Connect sources (the logins) take besides the shared settings.
_OPENID_SETTINGS = ("id_token_algorithms", "clock_skew")

#: The settings of :class:`~keyturn.sources.base.Source` (its ``SourceOptions``) that a profile
#: may hold; the others (``store``, ``on_refresh``, ``subject``, ``seed``) are objects a config
#: file cannot write, or keyturn's own. tests/unit/test_registry.py pins the two lists together.
SHARED_SETTINGS = (
    "issuer", "token_endpoint", "client_id", "client_secret", "private_key", "auth_method",
    "signing_alg", "scope", "audience", "resource", "extra_params", "leeway", "verify", "cert",
    "timeout", "allow_insecure_http", "proxy", "account", "revocation_endpoint",
)


class GrantRow:
    """One grant: see the module docstring for what each field is for."""

    __slots__ = ("cls", "default_scope", "grant_type", "interactive", "module", "name", "profile",
                 "settings")

    def __init__(self, name: str, module: str, cls: str, grant_type: str | None, *,
                 default_scope: tuple[str, ...] = (), interactive: bool = False,
                 profile: bool = False, settings: tuple[str, ...] = ()) -> None:
        #: The name a profile and ``--flow`` give it, and a source's ``grant_name``.
        self.name = name
        #: Where its source class lives (imported only to build one).
        self.module = module
        self.cls = cls
        #: The wire ``grant_type`` (None: no token request at all).
        self.grant_type = grant_type
        #: The scope asked for when ``scope=`` is not given.
        self.default_scope = default_scope
        #: Whether it may start a login a person has to finish.
        self.interactive = interactive
        #: Whether a profile may name it in ``grant =``.
        self.profile = profile
        #: Its own constructor keywords that a profile may set (besides :data:`SHARED_SETTINGS`).
        self.settings = settings

    def __repr__(self) -> str:
        return f"GrantRow({self.name!r}, {self.module}.{self.cls}, grant_type={self.grant_type!r})"


#: Every grant, in the order ``keyturn login --help`` and error messages list them.
GRANT_ROWS = (
    GrantRow("static", "keyturn.sources.static", "StaticToken", None),
    GrantRow("client_credentials", "keyturn.sources.client_credentials", "ClientCredentials",
             GRANT_CLIENT_CREDENTIALS, profile=True),
    GrantRow("refresh_token", "keyturn.sources.refresh_token", "RefreshToken", GRANT_REFRESH_TOKEN,
             profile=True, settings=("refresh_token",)),
    GrantRow("device_code", "keyturn.sources.device_code", "DeviceCode", GRANT_DEVICE_CODE,
             default_scope=LOGIN_SCOPE, interactive=True, profile=True,
             settings=("device_authorization_endpoint", *_OPENID_SETTINGS)),
    GrantRow("authorization_code", "keyturn.sources.authorization_code", "AuthorizationCode",
             GRANT_AUTHORIZATION_CODE, default_scope=LOGIN_SCOPE, interactive=True, profile=True,
             settings=("authorization_endpoint", *_OPENID_SETTINGS, "landing_page",
                       "login_timeout", "redirect_port")),
    GrantRow("jwt_bearer", "keyturn.sources.jwt_bearer", "JwtBearer", GRANT_JWT_BEARER),
    GrantRow("token_exchange", "keyturn.sources.token_exchange", "TokenExchange", GRANT_TOKEN_EXCHANGE),
)
_BY_NAME = {row.name: row for row in GRANT_ROWS}

#: What ``--flow`` (and ``grant =``) accept besides the grant names.
FLOW_ALIASES = {"device": "device_code", "browser": "authorization_code"}

#: The two ways one person logs in to one account, in a browser or with a device code: when a
#: command does not name the grant, or a :data:`USER_LOGIN` picks it, a saved login of either
#: answers for the other (:mod:`keyturn.sources.paired`, asked by ``keyturn.cli.common.other_login``
#: and by ``UserLogin``). Another interactive grant (a login of another kind) stands in for none.
LOGIN_PAIR: Final = (FLOW_ALIASES["browser"], FLOW_ALIASES["device"])

#: (module, class) of the source that picks one login of :data:`LOGIN_PAIR` where it runs, by
#: the rule a profile without a grant follows (:func:`keyturn.interactive.choice.choose_login`).
#: It is not a grant and has no row: no grant type, no cache key of its own (its tokens are
#: stored under the login that answered, where the pair's sources and the command line find
#: them); it takes the shared settings and both logins' own (tests/unit/test_registry.py).
USER_LOGIN: Final = ("keyturn.sources.user_login", "UserLogin")


def grant(name: str) -> GrantRow:
    """The row of grant ``name`` (KeyError for a name no row has)."""
    return _BY_NAME[name]


def paired_login(name: str) -> str | None:
    """The other login of :data:`LOGIN_PAIR` when ``name`` is one of them, else None."""
    if name not in LOGIN_PAIR:
        return None
    first, second = LOGIN_PAIR
    return second if name == first else first


def grants(*, profile: bool | None = None, interactive: bool | None = None) -> Iterator[GrantRow]:
    """The rows, optionally only those a profile may name / that are (not) interactive."""
    for row in GRANT_ROWS:
        if (profile is None or row.profile == profile) and (
                interactive is None or row.interactive == interactive):
            yield row


class StoreRow:
    """One store: the ``store =`` values that select it, and how a profile builds it."""

    __slots__ = ("cls", "module", "names", "schemes", "takes")

    def __init__(self, module: str, cls: str, *, names: tuple[str, ...] = (),
                 schemes: tuple[str, ...] = (), takes: str | None = None) -> None:
        self.module = module
        self.cls = cls
        #: ``store = "file"``: the plain names that select it.
        self.names = names
        #: ``store = "redis://host/0"``: the URL schemes (with ``://``) that select it.
        self.schemes = schemes
        #: The one argument its constructor gets: ``"cache_dir"`` (the profile's, or None),
        #: ``"url"`` (the ``store =`` value), or None (no argument).
        self.takes = takes

    def __repr__(self) -> str:
        return f"StoreRow({self.module}.{self.cls}, names={self.names}, schemes={self.schemes})"


#: The ``store =`` name of the FileStore, whose records ``keyturn token``'s fast path reads.
FILE_STORE = "file"

STORE_ROWS = (
    StoreRow("keyturn.stores.file", "FileStore", names=(FILE_STORE,), takes="cache_dir"),
    StoreRow("keyturn.stores.memory", "MemoryStore", names=("memory",)),
    StoreRow("keyturn.stores.redis", "RedisStore", schemes=("redis://", "rediss://", "unix://"),
             takes="url"),
)


def store_for(value: str) -> StoreRow | None:
    """The row a profile's ``store =`` value selects, or None."""
    for row in STORE_ROWS:
        if value in row.names or value.startswith(row.schemes):
            return row
    return None


def store_choices() -> str:
    """The ``store =`` values, for an error message: "'file', 'memory' or a redis://... URL"."""
    names = [repr(name) for row in STORE_ROWS for name in row.names]
    urls = [f"a {', '.join(row.schemes)} URL" for row in STORE_ROWS if row.schemes]
    *first, last = names + urls
    return f"{', '.join(first)} or {last}" if first else last
