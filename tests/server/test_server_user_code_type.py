"""``user_code_type``: the user-code alphabets (8 letters, or 11 digits) end to end: what a device
gets from /device_authorization, what the page says and asks for, what people may type, and the
normaliser and configuration on their own."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest

from keyturn.errors import ConfigError
from keyturn.server.config import parse_config
from keyturn.server.device_flow import (
    DIGITS,
    LETTERS,
    format_user_code,
    generate_user_code,
    new_device_grant,
    normalize_user_code,
)
from keyturn.server.runner import ServerThread
from keyturn.server.storage.redis import RedisStorage
from tests.support.serverkit import make_config, page_approve, poll, start_device

SHOWN = {"letters": re.compile(r"[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}"),
         "digits": re.compile(r"[0-9]{4}-[0-9]{4}-[0-9]{3}")}


# -- the normaliser and the formats --------------------------------------------------------------


def test_digits_have_at_least_as_many_codes_as_letters() -> None:
    # docs/server.md's odds are computed for 20**8 codes; digits must not be easier to hit
    assert LETTERS.count == 20**8 and DIGITS.length == 11 and DIGITS.count == 10**11
    assert DIGITS.count >= LETTERS.count > 10 ** (DIGITS.length - 1)  # and no longer than that


@pytest.mark.parametrize("typed", ["1234-5678-901", "1234 5678 901", " 12345678901 ",
                                   "1234.5678.901", "1234\u20135678\u2013901", "1234\u00a05678 901",
                                   "123-456-789-01", "1234\t5678_901"])
def test_a_digits_code_forgives_spaces_and_dashes(typed: str) -> None:
    assert normalize_user_code(typed, DIGITS) == "12345678901"


@pytest.mark.parametrize("typed", ["", "1234-5678-90", "1234-5678-9012", "1234-5678-90I",
                                   "BCDF-GHJK", "1234-5678-9O1", "\u0661234-5678-901",
                                   "\uff11234-5678-901", "+1234-5678-901"])
def test_a_digits_code_is_digits_only(typed: str) -> None:
    # a letter (even one that looks like a digit), an Arabic-Indic or full-width digit, a sign:
    # no code of this alphabet, so nothing is looked up
    assert normalize_user_code(typed, DIGITS) is None


@pytest.mark.parametrize("typed", ["bcdf-ghjk", "BCDF GHJK", "bcdf\u2013ghjk"])
def test_a_letters_code_forgives_case_spaces_and_dashes(typed: str) -> None:
    assert normalize_user_code(typed, LETTERS) == "BCDFGHJK"


def test_a_letters_code_is_no_digits_code() -> None:
    assert normalize_user_code("1234-5678", LETTERS) is None
    assert normalize_user_code("12345678901", LETTERS) is None


def test_codes_are_drawn_from_their_alphabet_and_shown_in_fours() -> None:
    for user_codes in (LETTERS, DIGITS):
        code = generate_user_code(user_codes)
        assert len(code) == user_codes.length and set(code) <= set(user_codes.alphabet)
        assert normalize_user_code(format_user_code(code).lower(), user_codes) == code
    assert format_user_code("12345678901") == "1234-5678-901"
    assert format_user_code("BCDFGHJK") == "BCDF-GHJK"
    _, grant = new_device_grant(client_id="demo", scope=("openid",), now=0.0, user_codes=DIGITS)
    assert grant.user_code.isdigit() and len(grant.user_code) == 11


# -- the configuration ---------------------------------------------------------------------------


def test_the_configuration_names_the_alphabet() -> None:
    assert parse_config({}).user_code_type == "letters"
    assert parse_config({"user_code_type": "digits"}).user_codes is DIGITS
    with pytest.raises(ConfigError, match="user_code_type must be one of 'letters', 'digits'"):
        parse_config({"user_code_type": "numbers"})


def test_site_name_and_scope_descriptions_are_checked() -> None:
    config = parse_config({"site_name": "Example Lab",
                           "scope_descriptions": {"api:read": " read your data "}})
    assert config.site_name == "Example Lab" and config.scope_descriptions == {
        "api:read": "read your data"}
    with pytest.raises(ConfigError, match="site_name must be a string"):
        parse_config({"site_name": 7})
    for bad in ({"api:read": 1}, {"api:read": " "}, ["api:read"]):
        with pytest.raises(ConfigError, match=r"\[scope_descriptions\] must map scopes to words"):
            parse_config({"scope_descriptions": bad})


# -- over HTTP, against the real server ------------------------------------------------------------


@pytest.fixture(scope="module", params=[("letters", "sqlite"), ("digits", "sqlite"),
                                        ("digits", "redis")], ids=lambda p: "-".join(p))
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[str, ServerThread]]:
    user_code_type, storage = request.param
    config = make_config(user_code_type=user_code_type)
    if storage == "redis":
        redis_server = request.getfixturevalue("redis_server")
        running = ServerThread(config, storage=RedisStorage(
            redis_server.url, prefix=f"kt-{uuid.uuid4().hex[:8]}"))
    else:
        running = ServerThread(config, data_dir=tmp_path_factory.mktemp("codes"))
    yield user_code_type, running
    running.stop()


def test_the_device_gets_a_code_of_the_configured_alphabet(served: tuple[str, ServerThread]) -> None:
    user_code_type, running = served
    started = start_device(running.issuer, scope="openid")
    assert SHOWN[user_code_type].fullmatch(started["user_code"]), started["user_code"]
    assert started["verification_uri_complete"].endswith(f"?user_code={started['user_code']}")


def test_a_login_with_the_code_typed_loosely(served: tuple[str, ServerThread]) -> None:
    """The person types the code with spaces for dashes (and in lower case): approved."""
    _, running = served
    started = start_device(running.issuer, scope="openid")
    typed = started["user_code"].replace("-", " ").lower()
    assert " " in typed
    result = page_approve(running.issuer, f" {typed} ")
    assert result.status_code == 200 and "Device approved" in result.text
    assert poll(running.issuer, started["device_code"]).status_code == 200


def test_a_code_of_the_other_alphabet_is_not_valid(served: tuple[str, ServerThread]) -> None:
    user_code_type, running = served
    started = start_device(running.issuer, scope="openid")
    other = "BCDF-GHJK" if user_code_type == "digits" else "1234-5678-901"
    refused = page_approve(running.issuer, other)
    assert refused.status_code == 400 and "That code is not valid" in refused.text
    assert poll(running.issuer, started["device_code"]).json()["error"] == "authorization_pending"


def test_the_page_hints_the_format_and_asks_for_the_right_keyboard(
        served: tuple[str, ServerThread]) -> None:
    import httpx

    user_code_type, running = served
    page = httpx.get(f"{running.issuer}/device").text
    field = re.search(r"<input id=user_code [^>]*>", page)
    assert field, page
    if user_code_type == "digits":
        assert "11 digits, like 0123-4567-890" in page
        assert "inputmode=numeric" in field.group(0) and "autocapitalize" not in field.group(0)
    else:
        assert "8 letters, like BCDF-GHJK" in page
        assert "autocapitalize=characters" in field.group(0) and "inputmode" not in field.group(0)
