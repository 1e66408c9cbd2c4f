"""keyturn.errors: the error tree, its messages, and that no error ever carries a secret."""

from __future__ import annotations

import pickle

import pytest

import keyturn.errors as errors
from keyturn.errors import (
    ConfigError,
    DiscoveryError,
    InvalidResponse,
    KeyturnError,
    LoginRequired,
    OAuthError,
    StoreError,
    TransportError,
    oauth_error,
    safe_url,
)

OAUTH_SUBCLASSES = sorted(
    (cls for cls in vars(errors).values()
     if isinstance(cls, type) and issubclass(cls, OAuthError) and cls is not OAuthError),
    key=lambda cls: cls.__name__,
)
URL = "https://alice:hunter2@as.example:8443/oauth2/token?client_secret=SECRET#frag"
SAFE = "https://as.example:8443/oauth2/token"


def test_the_tree() -> None:
    for cls in (ConfigError, LoginRequired, DiscoveryError, TransportError, InvalidResponse, StoreError,
                OAuthError):
        assert issubclass(cls, KeyturnError)
        assert issubclass(cls, Exception)
    assert len(OAUTH_SUBCLASSES) >= 11
    codes = [cls.code for cls in OAUTH_SUBCLASSES]
    assert len(set(codes)) == len(codes)
    assert all(codes)


@pytest.mark.parametrize("cls", OAUTH_SUBCLASSES, ids=lambda cls: cls.__name__)
def test_every_oauth_error_names_code_description_and_a_hint(cls: type[OAuthError]) -> None:
    error = oauth_error(cls.code, "the server's own words", "https://docs.example/e", status=400, url=URL)
    assert type(error) is cls
    text = str(error)
    assert cls.code in text
    assert "the server's own words" in text
    assert cls.hint, f"{cls.__name__} has no hint"
    assert cls.hint in text
    assert SAFE in text
    assert "hunter2" not in text and "SECRET" not in text and "frag" not in text
    assert error.error == cls.code
    assert error.error_description == "the server's own words"
    assert error.error_uri == "https://docs.example/e"
    assert error.status == 400
    assert error.url == SAFE
    assert cls.__doc__ and "RFC" in cls.__doc__


def test_unknown_code_is_a_plain_oauth_error() -> None:
    error = oauth_error("server_error", "database down", status=500)
    assert type(error) is OAuthError
    assert str(error) == "server_error: database down"


def test_hint_can_be_overridden() -> None:
    error = errors.InvalidGrant("invalid_grant", hint="Run `keyturn login` again.")
    assert str(error) == "invalid_grant. Run `keyturn login` again."
    assert str(errors.InvalidGrant("invalid_grant", hint="")) == "invalid_grant"


def test_message_without_description() -> None:
    error = oauth_error("invalid_client", url="https://as.example/token")
    assert str(error).startswith("invalid_client from https://as.example/token. ")


# -- safe_url -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "safe"), [
    (URL, SAFE),
    ("https://as.example/token", "https://as.example/token"),
    ("https://as.example/token?code=abc&state=x", "https://as.example/token"),
    ("https://user@as.example/", "https://as.example/"),
    ("https://:pw@as.example/", "https://as.example/"),
    ("http://127.0.0.1:8080/cb?code=SECRET", "http://127.0.0.1:8080/cb"),
    ("https://[::1]:8443/token?x=1", "https://[::1]:8443/token"),
    ("https://[2001:db8::1]/token", "https://[2001:db8::1]/token"),
    ("https://AS.Example/Token", "https://as.example/Token"),
    ("/relative/path?x=1", "/relative/path"),
])
def test_safe_url(url: str, safe: str) -> None:
    assert safe_url(url) == safe


@pytest.mark.parametrize("url", ["https://u:SECRET@as.example:99999/t?x=SECRET",
                                 "https://u:SECRET@as.example:port/t?x=SECRET",
                                 "http://[::1/x?SECRET", "https://u:SECRET@[zz/"])
def test_safe_url_never_raises_nor_leaks(url: str) -> None:
    value = safe_url(url)
    assert "SECRET" not in value


def test_errors_with_urls_strip_them() -> None:
    for error in (DiscoveryError("d", url=URL), TransportError("t", url=URL),
                  InvalidResponse("i", url=URL, status=502)):
        assert error.url == SAFE
        assert "hunter2" not in str(error) and "SECRET" not in str(error)
    assert DiscoveryError("d").url is None


# -- pickling keeps the fields ----------------------------------------------------------------------------


def _instances() -> list[KeyturnError]:
    return [
        KeyturnError("base"),
        ConfigError("bad argument"),
        LoginRequired("log in"),
        StoreError("disk full"),
        DiscoveryError("no metadata", url=URL),
        TransportError("refused", url=URL),
        InvalidResponse("html", url=URL, status=502),
        OAuthError("server_error", "down", None, status=500, url=URL),
        *(oauth_error(cls.code, f"{cls.code} description", "https://docs.example/e", status=400, url=URL)
          for cls in OAUTH_SUBCLASSES),
    ]


@pytest.mark.parametrize("error", _instances(), ids=lambda e: type(e).__name__)
def test_pickle_round_trip_keeps_the_fields(error: KeyturnError) -> None:
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        copy = pickle.loads(pickle.dumps(error, protocol=protocol))
        assert type(copy) is type(error)
        assert str(copy) == str(error)
        assert copy.args == error.args
        assert vars(copy) == vars(error)
    if isinstance(error, OAuthError):
        assert copy.error == error.error
        assert copy.error_description == error.error_description
        assert copy.error_uri == error.error_uri
        assert copy.status == error.status
        assert copy.url == SAFE


def test_pickled_error_can_be_raised_and_caught_by_its_class() -> None:
    copy = pickle.loads(pickle.dumps(oauth_error("invalid_grant", "expired", status=400)))
    with pytest.raises(errors.InvalidGrant, match="expired"):
        raise copy
