"""``user_code_type``: the user-code alphabets (8 letters, or 11 digits) end to end: what a device
gets from /device_authorization, what the page says and asks for, what people may type, and the
normaliser and configuration on their own."""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from keyturn.errors import ConfigError
from keyturn.server.config import Lifetimes, RateLimits, parse_config
from keyturn.server.device_flow import (
    DIGITS,
    LETTERS,
    DeviceStatus,
    format_user_code,
    generate_user_code,
    new_device_grant,
    normalize_user_code,
)
from keyturn.server.ratelimit import UserCodeAttempts
from keyturn.server.runner import ServerThread
from keyturn.server.storage.base import ServerStorage
from keyturn.server.storage.memory import MemoryStorage
from keyturn.server.storage.redis import RedisStorage
from keyturn.server.storage.sqlite import SQLiteStorage
from tests.support.serverkit import make_config, page_approve, poll, start_device

SHOWN = {"letters": re.compile(r"[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}"),
         "digits": re.compile(r"[0-9]{4}-[0-9]{4}-[0-9]{3}")}


# -- the normaliser and the formats --------------------------------------------------------------


def test_digits_have_at_least_as_many_codes_as_letters() -> None:
    # docs/server.md's odds are computed for 20**8 codes; digits must not be easier to hit
    assert LETTERS.count == 20**8 and DIGITS.length == 11 and DIGITS.count == 10**11
    assert DIGITS.count >= LETTERS.count > 10 ** (DIGITS.length - 1)  # and no longer than that


#: RFC 8628 §6.1: "Further stripping of all characters outside the user_code charset is
#: recommended": what a phone, a CJK input method in full-width mode or a copy-paste puts in.
_AROUND = ["-", " ", "\t", ".", "_", "/", ",", "+", "\u2013", "\u2014", "\u00a0", "\u202f", "\u3000",
           "\u200b", "\u00ad", "\uff0d", "\u30fc"]


@pytest.mark.parametrize("between", _AROUND)
def test_a_digits_code_ignores_what_is_typed_around_its_digits(between: str) -> None:
    typed = f"{between}1234{between}5678{between}901{between}"
    assert normalize_user_code(typed, user_codes=DIGITS) == "12345678901"


def test_full_width_digits_are_digits() -> None:
    # NFKC: what a CJK input method types in full-width mode is the digit itself
    full_width = "".join(chr(0xFF10 + int(digit)) for digit in "12345678901")
    assert normalize_user_code(full_width, user_codes=DIGITS) == "12345678901"
    assert normalize_user_code("\uff11\uff12\uff13\uff14\uff0d5678-901", user_codes=DIGITS) == \
        "12345678901"


@pytest.mark.parametrize("typed", ["", "1234-5678-90", "1234-5678-9012", "1234-5678-90I",
                                   "BCDF-GHJK", "1234-5678-9O1", "\u0661234-5678-901"])
def test_a_digits_code_needs_exactly_its_digits(typed: str) -> None:
    # what is left once everything outside the alphabet is dropped (a letter, even one that
    # looks like a digit; an Arabic-Indic digit, which NFKC keeps as it is) is not 11 digits:
    # nothing is looked up
    assert normalize_user_code(typed, user_codes=DIGITS) is None


@pytest.mark.parametrize("between", _AROUND)
def test_a_letters_code_ignores_case_and_what_is_typed_around_it(between: str) -> None:
    typed = f"{between}bcdf{between}GhJk{between}"
    assert normalize_user_code(typed, user_codes=LETTERS) == "BCDFGHJK"


def test_full_width_letters_and_ligatures_are_their_letters_and_no_letter_doubles() -> None:
    full_width = "".join(chr(0xFF21 + ord(letter) - ord("A")) for letter in "bcdfghjk".upper())
    assert normalize_user_code(full_width.lower(), user_codes=LETTERS) == "BCDFGHJK"
    # NFKC makes the ligature U+FB00 "ff" (two letters of the alphabet) ...
    assert normalize_user_code("\ufb00\ufb00\ufb00\ufb00", user_codes=LETTERS) == "FFFFFFFF"
    # ... but "ß" upper-cases to "SS": two letters from one character outside the alphabet,
    # dropped like any other
    assert normalize_user_code("\u00df\u00df\u00df\u00df", user_codes=LETTERS) is None
    assert normalize_user_code("bcdf\u00dfghjk", user_codes=LETTERS) == "BCDFGHJK"


def test_a_letters_code_is_no_digits_code() -> None:
    assert normalize_user_code("1234-5678", user_codes=LETTERS) is None
    assert normalize_user_code("12345678901", user_codes=LETTERS) is None
    assert normalize_user_code("ABCD-EFGH", user_codes=LETTERS) is None  # vowels: not in it


def test_codes_are_drawn_from_their_alphabet_and_shown_in_fours() -> None:
    for user_codes in (LETTERS, DIGITS):
        code = generate_user_code(user_codes=user_codes)
        assert len(code) == user_codes.length and set(code) <= set(user_codes.alphabet)
        assert normalize_user_code(format_user_code(code).lower(), user_codes=user_codes) == code
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
    """A pending grant whose code is of the other alphabet (as one made before user_code_type
    was switched) is in the storage: typed exactly, it is still refused, as this server checks
    codes of its own alphabet only, and stays pending."""
    user_code_type, running = served
    other = LETTERS if user_code_type == "digits" else DIGITS
    device_code, grant = new_device_grant(client_id="demo", scope=("openid",), now=time.time(),
                                          user_codes=other)
    assert running.storage.create_device_grant(grant)
    refused = page_approve(running.issuer, format_user_code(grant.user_code))
    assert refused.status_code == 400 and "That code is not valid" in refused.text
    stored = running.storage.device_grant(grant.device_code_hash)
    assert stored is not None and stored.status is DeviceStatus.PENDING
    assert poll(running.issuer, device_code).json()["error"] == "authorization_pending"


def test_the_page_hints_the_format_and_asks_for_the_right_keyboard(
        served: tuple[str, ServerThread]) -> None:
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


# -- docs/server.md's guessing arithmetic, measured on the real storage ---------------------------


@pytest.fixture(params=["memory", "sqlite"])
def counters(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerStorage]:
    storage: ServerStorage = (MemoryStorage() if request.param == "memory"
                              else SQLiteStorage(tmp_path / "counters.sqlite3"))
    yield storage
    storage.close()


def test_the_defaults_allow_at_most_2100_wrong_codes_while_one_code_lives(
        counters: ServerStorage) -> None:
    """docs/server.md: the windows are aligned to multiples of ``window`` seconds, so a code
    that lives 1800 s from 1 s past a boundary overlaps 7 windows of 300 s, not 6. A distributed
    attacker (a new address for every try, so the limit per address never binds) who, every
    second of the code's life, tries until the storage refuses gets 7 * 300 = 2,100 looks."""
    limits, lifetime = RateLimits(), Lifetimes().device_code
    windows = math.ceil(lifetime / limits.window) + 1  # when the code starts off a boundary
    assert (lifetime, limits.window, limits.overall, windows) == (1800, 300, 300, 7)
    attempts = UserCodeAttempts(counters, limits)
    created = 20_000 * 86400 + 1.0  # 1 s past a window boundary (a UTC midnight)
    accepted = tries = 0
    for second in range(lifetime):
        while attempts.take(f"198.51.{tries // 250 % 250}.{tries % 250}", created + second):
            accepted += 1
            tries += 1
        tries += 1
    assert accepted == windows * limits.overall == 2100
