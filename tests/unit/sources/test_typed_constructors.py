"""The sources' constructors are typed (a TypedDict of the shared options, with Unpack): a
misspelt keyword and a wrong type are mypy errors for every source, and a correct call is not."""

from __future__ import annotations

from pathlib import Path

from tests.support.mypycheck import mypy_errors

#: One correct call per source, then the same call with a misspelt keyword and with a wrong type.
CALLS = {
    "ClientCredentials": 'token_endpoint="https://id.example.org/t", client_id="c", client_secret="s"',
    "RefreshToken": 'token_endpoint="https://id.example.org/t", client_id="c", refresh_token="r"',
    "DeviceCode": 'issuer="https://id.example.org", client_id="c", clock_skew=30.0',
    "AuthorizationCode": 'issuer="https://id.example.org", client_id="c", login_timeout=60.0',
    "JwtBearer": 'token_endpoint="https://id.example.org/t", client_id="c", assertion="a.b.c"',
    "TokenExchange": 'token_endpoint="https://id.example.org/t", client_id="c", subject_token="t"',
    "StaticToken": '"token"',
}
MISSPELT = {name: "clientid" for name in CALLS} | {"StaticToken": "tokentype"}
WRONG = {name: ("scope", "42") for name in CALLS} | {"StaticToken": ("token_type", "42")}
#: The TLS settings and the keys have real types too (what keyturn._tls and the key loader take).
WRONG_SETTINGS = [("ClientCredentials", "verify", "42"), ("ClientCredentials", "cert", "42"),
                  ("ClientCredentials", "private_key", "42"), ("DeviceCode", "verify", "42"),
                  ("JwtBearer", "assertion_key", "42")]
#: ... which every form they accept satisfies.
RIGHT_SETTINGS = {
    "ClientCredentials": ['verify=False', 'verify="/etc/ssl/certs"', "verify=Path('/etc/ssl/certs')",
                          "verify=ssl.create_default_context()", 'cert="client.pem"',
                          'cert=("client.pem", "client.key")', 'cert=("c.pem", "c.key", "pw")',
                          'private_key="-----BEGIN PRIVATE KEY-----"', 'private_key=b"pem"',
                          'private_key={"kty": "EC"}', 'private_key=Secret("pem")',
                          'private_key=ECKey.generate_key("P-256")'],
    "JwtBearer": ['assertion_key=Secret(b"pem")'],
}


def test_misspelt_keywords_and_wrong_types_are_type_errors(tmp_path: Path) -> None:
    lines = [f"from keyturn import {', '.join(sorted(CALLS))}", "import ssl",
             "from pathlib import Path", "from joserfc.jwk import ECKey",
             "from keyturn.secret import Secret", ""]
    expect: dict[int, tuple[str, str]] = {}
    for name, args in CALLS.items():
        lines.append(f"{name}({args})")
        lines.append(f'{name}({args}, {MISSPELT[name]}="x")')
        expect[len(lines)] = (name, "call-arg")
        keyword, value = WRONG[name]
        lines.append(f"{name}({args}, {keyword}={value})")
        expect[len(lines)] = (name, "arg-type")
    for name, keyword, value in WRONG_SETTINGS:
        lines.append(f"{name}({CALLS[name]}, {keyword}={value})")
        expect[len(lines)] = (name, "arg-type")
    for name, settings in RIGHT_SETTINGS.items():
        lines.extend(f"{name}({CALLS[name]}, {setting})" for setting in settings)
    errors, stdout = mypy_errors(tmp_path, lines)
    assert set(errors) == set(expect), stdout
    for line, (name, code) in expect.items():
        assert code in errors[line], f"{name}, line {line}: {errors[line]} ({stdout})"
