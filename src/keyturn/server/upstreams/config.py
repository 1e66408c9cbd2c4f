"""``[upstreams.NAME]``: the identity providers people may sign in with on the ``/device`` page.

::

    [upstreams.campus]
    issuer = "https://idp.example.org/realms/campus"
    client_id = "keyturn"
    client_secret_file = "/etc/keyturn/campus.secret"   # chmod 600; or client_secret_env,
                                                        # client_secret (this file chmod 600),
                                                        # private_key_file (private_key_jwt)
    display_name = "Campus account"                     # the button: "Sign in with Campus account"
    scope = "openid profile email"                      # the default
    subject_claim = "preferred_username"                # the local sub (default "sub")
    subject_prefix = "campus:"                          # optional: keeps these subs apart
    prompt = "login"                                    # optional: sign in again at every press
    copy_claims = ["name", "email"]                     # into the local id_token / userinfo
    allow = [{claim = "email", ends_with = "@example.org"},
             {claim = "groups", contains = "hpc-users"}]

Nobody is let in without an allow-list: an upstream with neither ``allow`` rules nor
``allow_all = true`` is a configuration error, so that adding a provider never silently admits
every account it has. Rules are alternatives (any one that matches lets the person in):
``equals`` (the claim is this string), ``ends_with`` (a string claim ends with it: write an email
domain with its ``@``), ``contains`` (a list claim, such as ``groups``, holds this value). A rule
on ``email`` (and ``subject_claim = "email"``) matches only an address the upstream says is
verified (``email_verified`` literally ``true``), unless ``trust_unverified_email = true``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ...errors import ConfigError
from ...protocol.client_auth import ClientAuth
from ...protocol.endpoints import check_endpoint_url
from ...secret import Secret

# server/config.py imports this module only inside parse_config, so this is no import cycle.
from ..config_values import known_keys, private_file

__all__ = ["DEFAULT_SCOPE", "AllowRule", "UpstreamConfig", "holds_inline_secret",
           "parse_upstreams"]

DEFAULT_SCOPE: Final = ("openid", "profile", "email")
#: The token-endpoint authentication a confidential client may use here (RFC 6749 §2.3.1,
#: RFC 7523 §2.2); a public client makes no sense for a server that can keep a secret.
AUTH_METHODS: Final = ("client_secret_basic", "client_secret_post", "private_key_jwt")
_KEYS: Final = frozenset({
    "issuer", "client_id", "client_secret", "client_secret_env", "client_secret_file",
    "private_key_file", "auth_method", "scope", "display_name", "subject_claim", "subject_prefix",
    "copy_claims", "prompt", "trust_unverified_email", "timeout",
    "allow", "allow_all"})
_CREDENTIALS: Final = ("client_secret", "client_secret_env", "client_secret_file",
                       "private_key_file")
_RULE_KINDS: Final = ("equals", "contains", "ends_with")
#: Claims providers send as lists (RFC 9068 §2.2.3.1 groups and roles; OIDC Core §2 amr).
LIST_CLAIMS: Final = frozenset({"groups", "roles", "amr"})
#: A name goes into a form value and a URL-free log line: keep it plain.
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True, kw_only=True)
class AllowRule:
    """One rule of the allow-list: ``claim`` and exactly one of the three tests."""

    claim: str
    equals: str | None = None
    contains: str | None = None
    ends_with: str | None = None

    def describe(self) -> str:
        kind = next(k for k in _RULE_KINDS if getattr(self, k) is not None)
        return f"{self.claim} {kind.replace('_', ' ')} {getattr(self, kind)!r}"


@dataclass(frozen=True, kw_only=True)
class UpstreamConfig:
    """One upstream provider. The secret and the key show in no repr."""

    name: str
    issuer: str
    client_id: str
    display_name: str
    scope: tuple[str, ...] = DEFAULT_SCOPE
    client_secret: Secret[str] | None = field(default=None, repr=False)
    private_key: Secret[str] | None = field(default=None, repr=False)
    auth_method: str | None = None
    subject_claim: str = "sub"
    #: Put before the subject: two providers (or a provider and the local users) that know
    #: different people by one name then never give them the same local ``sub``.
    subject_prefix: str = ""
    copy_claims: tuple[str, ...] = ()
    allow: tuple[AllowRule, ...] = ()
    allow_all: bool = False
    #: OIDC Core §3.1.2.1 ``prompt`` (``login``: the person authenticates again even with a
    #: session at the upstream, so that approving a device is never one click away); None: none.
    prompt: str | None = None
    #: DANGEROUS opt-out: take ``email`` as proven without ``email_verified: true`` (for the
    #: allow-list, an email subject and copying it). Only for a provider whose every address is
    #: one it assigned itself; any other lets a person type the address of someone else.
    trust_unverified_email: bool = False
    #: Seconds each call to the provider may take in all (discovery, token, JWKS, userinfo).
    timeout: float = 10.0


def holds_inline_secret(data: Mapping[str, Any]) -> bool:
    """Whether the file's ``[upstreams.*]`` hold a ``client_secret`` itself (the file must then
    be readable by its owner only)."""
    upstreams = data.get("upstreams")
    return isinstance(upstreams, Mapping) and any(
        isinstance(table, Mapping) and "client_secret" in table for table in upstreams.values())


def parse_upstreams(tables: Any, local_users: Iterable[str] = ()) -> dict[str, UpstreamConfig]:
    """``[upstreams]``; ``local_users`` are the ``[users]`` names beside them (their subjects
    must not collide: :mod:`.safety`)."""
    from .safety import check_subjects, check_tenant

    if tables is None:
        return {}
    if not isinstance(tables, Mapping):
        raise ConfigError("[upstreams] must be a table of tables ([upstreams.NAME])")
    upstreams = {str(name): _upstream(str(name), table) for name, table in tables.items()}
    for upstream in upstreams.values():
        check_tenant(upstream)
    check_subjects(upstreams, local_users)
    return upstreams


def _string(table: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} {key} must be a non-empty string")
    return value


def _upstream(name: str, table: Any) -> UpstreamConfig:
    where = f"[upstreams.{name}]"
    if not _NAME.fullmatch(name):
        raise ConfigError(f"{where}: a name is letters, digits, '.', '_' or '-' (at most 64)")
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table")
    known_keys(table, _KEYS, where)
    issuer = _string(table, "issuer", where).rstrip("/")
    # The client's rule: plain http only on loopback (RFC 6749 §3.2 asks for TLS).
    check_endpoint_url(issuer, f"{where} issuer")
    secret, key = _credentials(table, where)
    auth_method = table.get("auth_method")
    if auth_method is not None:
        if auth_method not in AUTH_METHODS:
            raise ConfigError(f"{where} auth_method must be one of {', '.join(AUTH_METHODS)}")
        if (auth_method == "private_key_jwt") != (key is not None):
            raise ConfigError(f"{where} auth_method {auth_method!r} does not fit the credential "
                              "given (private_key_jwt needs private_key_file, the others a secret)")
    try:
        # The key is read now, so that a file holding no usable key stops the start (the
        # message names the problem, never the key).
        ClientAuth.create(client_id="check", client_secret=secret, private_key=key,
                          auth_method=auth_method)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    scope = _words(table.get("scope", list(DEFAULT_SCOPE)), f"{where} scope")
    if "openid" not in scope:
        # The person is known by the upstream's id_token: without openid there is none.
        raise ConfigError(f"{where} scope must include openid")
    rules = _rules(table.get("allow", []), where)
    allow_all = table.get("allow_all", False)
    if not isinstance(allow_all, bool):
        raise ConfigError(f"{where} allow_all must be true or false")
    if not rules and not allow_all:
        raise ConfigError(f"{where} lets nobody in: add allow = [{{claim = \"email\", ends_with = "
                          "\"@example.org\"}] rules, or allow_all = true to admit every account "
                          "of this provider")
    if rules and allow_all:
        raise ConfigError(f"{where} has both allow rules and allow_all = true: keep one")
    return UpstreamConfig(
        name=name, issuer=issuer, client_id=_string(table, "client_id", where),
        display_name=_string(table, "display_name", where, default=name),
        scope=scope, client_secret=secret, private_key=key, auth_method=auth_method,
        subject_claim=_string(table, "subject_claim", where, default="sub"),
        subject_prefix=_prefix(table.get("subject_prefix", ""), where),
        copy_claims=_words(table.get("copy_claims", []), f"{where} copy_claims", empty=True),
        allow=rules, allow_all=allow_all, prompt=_prompt(table.get("prompt"), where),
        trust_unverified_email=_flag(table, "trust_unverified_email", where),
        timeout=_timeout(table.get("timeout", 10), where),
    )


def _timeout(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 60:
        raise ConfigError(f"{where} timeout must be a number of seconds above 0, at most 60")
    return float(value)


def _flag(table: Mapping[str, Any], key: str, where: str) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{where} {key} must be true or false")
    return value


#: OIDC Core §3.1.2.1: "Space-delimited, case-sensitive list of ASCII string values"; "none"
#: is left out: it can only end in an error when the person has no session there.
_PROMPTS: Final = frozenset({"login", "consent", "select_account"})


def _prompt(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.split() or not set(value.split()) <= _PROMPTS:
        raise ConfigError(f"{where} prompt must be made of {', '.join(sorted(_PROMPTS))}")
    return value


def _prefix(value: Any, where: str) -> str:
    if not isinstance(value, str) or any(c.isspace() for c in value) or len(value) > 64:
        raise ConfigError(f"{where} subject_prefix must be a string without spaces (at most 64)")
    return value


def _words(value: Any, where: str, *, empty: bool = False) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value) or (
            not value and not empty):
        raise ConfigError(f"{where} must be a list of strings")
    return tuple(value)


def _credentials(table: Mapping[str, Any], where: str) -> tuple[Secret[str] | None,
                                                                Secret[str] | None]:
    given = [key for key in _CREDENTIALS if key in table]
    if len(given) != 1:
        raise ConfigError(f"{where} needs exactly one of {', '.join(_CREDENTIALS)}"
                          + (f" (it has {', '.join(given)})" if given else ""))
    key = given[0]
    value = table[key]
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} {key} must be a non-empty string")
    if key == "client_secret_env":
        secret = os.environ.get(value)
        if not secret:
            raise ConfigError(f"{where} client_secret_env names {value}, which is not set")
        return Secret.wrap(secret), None
    if key == "client_secret_file":
        return Secret.wrap(private_file(value, f"{where} client_secret_file")), None
    if key == "private_key_file":
        return None, Secret.wrap(private_file(value, f"{where} private_key_file"))
    return Secret.wrap(value), None


def _rules(value: Any, where: str) -> tuple[AllowRule, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{where} allow must be a list of rules such as "
                          "{claim = \"email\", ends_with = \"@example.org\"}")
    rules = []
    for index, item in enumerate(value):
        at = f"{where} allow[{index}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{at} must be a table such as {{claim = \"groups\", contains = "
                              "\"hpc\"}")
        known_keys(item, frozenset({"claim", *_RULE_KINDS}), at)
        kinds = [k for k in _RULE_KINDS if k in item]
        if len(kinds) != 1:
            raise ConfigError(f"{at} needs claim and exactly one of {', '.join(_RULE_KINDS)}")
        claim, test = item.get("claim"), item[kinds[0]]
        if not isinstance(claim, str) or not claim or not isinstance(test, str) or not test:
            raise ConfigError(f"{at}: claim and {kinds[0]} must be non-empty strings")
        if claim in LIST_CLAIMS and kinds[0] != "contains":
            # A list never equals (or ends with) a string: the rule would admit nobody, silently.
            raise ConfigError(f"{at}: {claim} is a list of values: test it with contains")
        rules.append(AllowRule(claim=claim, **{kinds[0]: test}))
    return tuple(rules)
