"""Secrets held so that no repr, str, log line or traceback shows them.

A traceback rendered with its frames' locals (rich's ``show_locals=True``, pytest's
``--showlocals``, Sentry) shows the repr of every local of every frame between the raise and the
handler, and the same for each chained exception. So keyturn holds every secret it is given or
makes — a client secret, a private key, a token, a code, a password, a URL with a password — and
every header and form built from one, in the two types below, from the moment it enters keyturn
until the transport hands the request to httpx:

* :class:`Secret` wraps one value; its repr and str are ``Secret(sha256:1a2b3c4d)`` (a tag that
  correlates two log lines, see :func:`keyturn.token.fingerprint`) and :meth:`Secret.reveal` is
  the only way to the value.
* :class:`SecretFields` is a mapping (headers, forms, parsed response bodies) that holds the values
  of :data:`SENSITIVE_NAMES` as :class:`Secret`: reading it by key gives the plain value, for
  httpx and for code that needs it, while its repr shows the tags.

The rule in the code that uses them: a secret reaches a local variable only inside a
``Secret``/``SecretFields``, and ``reveal()`` is called inside the expression that needs the value
(the call that signs, hashes or sends), never to bind a local of a frame that may raise. A
constructor that takes a secret wraps it in its first statement (``x = Secret.wrap(x)``), so
even a :class:`~keyturn.errors.ConfigError` raised from it shows only the tag.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any, Final, Generic, TypeVar, cast, overload

from .token import fingerprint

__all__ = ["SENSITIVE_NAMES", "Secret", "SecretFields", "conceal_arguments"]

T = TypeVar("T")

#: Header, form and JSON member names whose values are secrets (compared lower-case).
SENSITIVE_NAMES: Final = frozenset({
    # HTTP headers
    "authorization", "proxy-authorization", "cookie", "set-cookie", "dpop",
    # client authentication (RFC 6749 §2.3.1, RFC 7523 §2.2)
    "client_secret", "client_assertion",
    # grants and their answers (RFC 6749 §4-§6, RFC 7636, RFC 8628, RFC 7523, RFC 8693)
    "code", "code_verifier", "device_code", "refresh_token", "access_token", "id_token",
    "assertion", "subject_token", "actor_token", "password",
    # revocation and introspection (RFC 7009 §2.1, RFC 7662 §2.1)
    "token",
    # the CSRF binding of a login in progress (RFC 6749 §10.12)
    "state",
    # constructor arguments (a proxy URL may hold the proxy's password)
    "private_key", "assertion_key", "proxy",
})


def _tag(value: object) -> str:
    if isinstance(value, str):
        return f"sha256:{fingerprint(value)}"
    if isinstance(value, bytes):
        return f"sha256:{fingerprint(value.decode('latin-1'))}"
    return type(value).__name__  # a key object or a JWK: its type only


class Secret(Generic[T]):
    """One secret value. ``repr``/``str`` show a tag, never the value; :meth:`reveal` returns it."""

    __slots__ = ("_value",)

    def __init__(self, value: T) -> None:
        self._value = value

    @overload
    @staticmethod
    def wrap(value: Secret[T]) -> Secret[T]: ...

    @overload
    @staticmethod
    def wrap(value: T) -> Secret[T]: ...

    @staticmethod
    def wrap(value: Any) -> Secret[Any]:
        """``value`` as a Secret (a Secret stays itself, so wrapping twice is harmless)."""
        return value if isinstance(value, Secret) else Secret(value)

    @overload
    @staticmethod
    def optional(value: None) -> None: ...

    @overload
    @staticmethod
    def optional(value: Secret[T] | T) -> Secret[T]: ...

    @staticmethod
    def optional(value: Any) -> Secret[Any] | None:
        """None stays None (an argument that was not given); anything else is wrapped."""
        return None if value is None else Secret.wrap(value)

    def reveal(self) -> T:
        """The value. Call it inside the expression that uses it, never to bind a local."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({_tag(self._value)})"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        if isinstance(self._value, str) and isinstance(other._value, str):
            # In constant time: the comparison of a token someone sent with the one held.
            return hmac.compare_digest(self._value.encode(), other._value.encode())
        return self._value is other._value

    def __hash__(self) -> int:
        return hash(self._value) if isinstance(self._value, str) else id(self._value)

    def __reduce__(self) -> Any:
        raise TypeError("a keyturn Secret cannot be pickled")


#: What is wrapped under a sensitive name: text, and key material given as bytes or a JWK. Other
#: objects (a key object, a token source given as ``subject_token=``) show no secret in their repr
#: and are used as they are.
_WRAPPED: Final = (str, bytes, Mapping)


def _conceal(name: str, value: Any) -> Any:
    """The value to keep for ``name``: a secret one wrapped (lists item by item)."""
    if name.lower() not in SENSITIVE_NAMES:
        return value
    if isinstance(value, list):
        return [Secret(v) if isinstance(v, _WRAPPED) else v for v in value]
    return Secret(value) if isinstance(value, _WRAPPED) else value


def _reveal(value: Any) -> Any:
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, list):
        return [v.reveal() if isinstance(v, Secret) else v for v in value]
    return value


class SecretFields(MutableMapping[str, Any]):
    """A str-keyed mapping whose sensitive values are kept as :class:`Secret`.

    Reading by key (and ``items()``, ``dict(...)``) gives plain values: httpx and the parsers use
    it as the dict it replaces. Its repr shows the sensitive values as tags. A value may also be
    given as a :class:`Secret` under any name (a header built from a secret).
    """

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Any] | None = None, /, **more: Any) -> None:
        self._items: dict[str, Any] = {}
        for source in (items or {}, more):
            for name, value in source.items():
                self[name] = value

    def __getitem__(self, name: str) -> Any:
        return _reveal(self._items[name])

    def __setitem__(self, name: str, value: Any) -> None:
        self._items[name] = _conceal(name, value)

    def __delitem__(self, name: str) -> None:
        del self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def secret(self, name: str) -> Secret[Any] | None:
        """The value of ``name`` still wrapped (None when absent), to pass on without a local."""
        value = self._items.get(name)
        return None if value is None else Secret.wrap(value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._items!r})"

    def __reduce__(self) -> Any:
        raise TypeError("keyturn SecretFields hold secrets and cannot be pickled")


def conceal_arguments(arguments: Mapping[str, object]) -> None:
    """Wrap, in place, the sensitive entries of a ``**kwargs`` dict.

    Called first thing in a constructor that takes ``**kwargs``: its frame then holds only tags,
    and the constructors it passes them on to receive the :class:`Secret` values. (Typed as a
    Mapping so that a ``**options: Unpack[SourceOptions]`` dict is taken: it is a dict, and its
    secret entries accept a Secret.)
    """
    target = cast("MutableMapping[str, Any]", arguments)
    for name, value in arguments.items():
        target[name] = _conceal(name, value)
