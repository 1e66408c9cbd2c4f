"""The public names of ``keyturn``: a curated, sorted ``__all__``, loaded lazily."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import pytest

import keyturn

# Section 2 of the design: names that, once they exist, must be exported from the package.
CONTRACT = {
    "AccessDenied", "ClientCredentials", "ConfigError", "DiscoveryError", "ExpiredToken", "FileStore",
    "InvalidClient", "InvalidGrant", "KeyturnError", "LoginRequired", "MemoryStore", "OAuthError",
    "RefreshToken", "StaticToken", "Token", "TransportError",
    "DeviceCode", "DeviceVerification", "RedisStore", "JwtBearer", "TokenExchange",
}


def _public_names() -> set[str]:
    """Every public name keyturn offers: the classes and functions it defines, wherever they live."""
    names = set()
    for name in dir(keyturn):
        if name.startswith("_"):
            continue
        value = getattr(keyturn, name)
        if isinstance(value, types.ModuleType):
            continue  # subpackages appear as attributes once imported
        if getattr(value, "__module__", "").split(".")[0] == "keyturn":
            names.add(name)
    return names


def test_all_is_sorted_and_unique() -> None:
    assert keyturn.__all__ == sorted(keyturn.__all__)
    assert len(set(keyturn.__all__)) == len(keyturn.__all__)


def test_every_exported_name_is_importable() -> None:
    for name in keyturn.__all__:
        value = getattr(keyturn, name)
        assert value is not None
        assert getattr(value, "__name__", name) == name
        assert value.__module__.startswith("keyturn.")


def test_all_equals_the_importable_names() -> None:
    assert set(keyturn.__all__) == _public_names()


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from keyturn import *", namespace)
    namespace.pop("__builtins__", None)
    assert set(namespace) == set(keyturn.__all__)


def test_contract_names_are_exported() -> None:
    assert set(keyturn.__all__) >= CONTRACT


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        keyturn.NoSuchThing
    with pytest.raises(ImportError):
        exec("from keyturn import NoSuchThing", {})


def test_exported_errors_are_keyturn_errors() -> None:
    for name in keyturn.__all__:
        value = getattr(keyturn, name)
        if isinstance(value, type) and issubclass(value, BaseException):
            assert issubclass(value, keyturn.KeyturnError), name


def _modules_after(code: str) -> set[str]:
    program = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True,
                         timeout=60)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("code", [
    "import keyturn",
    "import keyturn; keyturn.KeyturnError; keyturn.InvalidGrant; keyturn.Token",
    "from keyturn import FileStore, MemoryStore, Token, LoginRequired",
])
def test_import_keyturn_does_not_import_the_http_stack(code: str) -> None:
    modules = _modules_after(code)
    assert "keyturn" in modules
    heavy = {"httpx", "httpcore", "anyio", "h11", "joserfc", "cryptography", "requests"}
    assert not heavy & {name.split(".")[0] for name in modules}


def test_a_source_does_import_httpx() -> None:
    # The check above can fail: importing a source brings httpx in.
    assert "httpx" in _modules_after("from keyturn import ClientCredentials")
