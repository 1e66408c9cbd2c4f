"""The notebook's device prompt as markup: escaped, linked only to http(s), and its outcome lines."""

from __future__ import annotations

import asyncio
import importlib.util
import re

import pytest

from keyturn.errors import AccessDenied, ExpiredToken, InvalidIdToken
from keyturn.interactive.notebook_prompt import (
    DevicePrompt,
    failed_line,
    link_target,
    signed_in_line,
)
from keyturn.protocol.device import DeviceVerification
from keyturn.token import Token

HAVE_SEGNO = importlib.util.find_spec("segno") is not None


def verification(**changes: object) -> DeviceVerification:
    fields: dict[str, object] = {
        "verification_uri": "https://as.example/device", "user_code": "WDJB-MJHT",
        "expires_in": 600, "interval": 5, "expires_at": 1000.0,
        "verification_uri_complete": "https://as.example/device?user_code=WDJB-MJHT",
    }
    fields.update(changes)
    return DeviceVerification(**fields)  # type: ignore[arg-type]


def prompt(at: float = 400.0, **changes: object) -> DevicePrompt:
    return DevicePrompt(verification(**changes), clock=lambda: at)


def test_the_link_opens_the_complete_uri_and_shows_the_short_one() -> None:
    shown = prompt().waiting()
    assert re.search(r'<a href="https://as.example/device\?user_code=WDJB-MJHT" target="_blank" '
                     r'rel="noopener noreferrer">https://as.example/device</a>', shown.html)
    assert '<code class="keyturn-user-code"' in shown.html and ">WDJB-MJHT</code>" in shown.html
    assert "user-select:all" in shown.html and "font-size:2em" in shown.html
    assert "(the link fills the code in)" in shown.html
    assert "[https://as\\.example/device](<https://as.example/device?user_code=WDJB-MJHT>)" \
        in shown.markdown
    assert "**WDJB\\-MJHT**" in shown.markdown
    assert "WDJB-MJHT" in shown.plain and "https://as.example/device" in shown.plain


def test_without_a_complete_uri_the_link_is_the_verification_uri() -> None:
    shown = prompt(verification_uri_complete=None).waiting()
    assert '<a href="https://as.example/device" ' in shown.html
    assert "fills the code in" not in shown.html


def test_the_qr_code_is_an_svg_image() -> None:
    # segno is a dependency of keyturn: the QR code is always drawn where keyturn is installed.
    assert HAVE_SEGNO
    assert '<img src="data:image/svg+xml;charset=utf-8,%3Csvg' in prompt().waiting().html


def test_the_time_left_counts_down_to_expired() -> None:
    assert "Waiting for approval: 10:00 left." in prompt(at=400.0).waiting().plain
    assert "Waiting for approval: 0:01 left." in prompt(at=999.5).waiting().html
    assert "The code has expired." in prompt(at=1000.0).waiting().html
    # No expires_at from the caller: the deadline counts from when the prompt was made.
    assert "10:00 left." in prompt(at=5.0, expires_at=0.0).waiting().plain


@pytest.mark.parametrize("uri", ["javascript:alert(1)", "data:text/html,<b>x</b>", "//as.example/d",
                                 "https:///nohost", "ftp://as.example/device"])
def test_only_http_urls_become_links(uri: str) -> None:
    assert link_target(uri) is None
    shown = prompt(verification_uri=uri, verification_uri_complete=uri).waiting()
    assert "<a " not in shown.html and "<img" not in shown.html
    assert "](" not in shown.markdown


def test_every_value_from_the_provider_is_escaped() -> None:
    hostile = '"><script>alert(1)</script>'
    shown = prompt(user_code=hostile, verification_uri="https://as.example/d?x=" + hostile,
                   verification_uri_complete="https://as.example/d?a=1&b=" + hostile).waiting()
    assert "<script>" not in shown.html and "<script>" not in shown.markdown
    assert "&lt;script&gt;" in shown.html
    assert 'href="https://as.example/d?a=1&amp;b=&quot;&gt;&lt;script&gt;' in shown.html
    assert re.search(r"\(<[^<>]*%3Cscript%3E", shown.markdown)  # the link target stays one


def claims_token(**claims: object) -> Token:
    return Token(access_token="at", extra={"id_token_claims": dict(claims)})


def test_signed_in_names_the_person_and_the_issuer() -> None:
    line = signed_in_line(claims_token(sub="u1", preferred_username="alice"), "https://id.example")
    assert line.plain == "Signed in as alice at https://id.example"
    assert line.html == ('<div class="keyturn-login">Signed in as <strong>alice</strong> at '
                         "<strong>https://id.example</strong></div>")
    assert signed_in_line(claims_token(sub="u1"), None).plain == "Signed in as u1"
    assert signed_in_line(Token(access_token="at"), "https://id.example").plain == \
        "Signed in at https://id.example"
    escaped = signed_in_line(claims_token(name="<i>x</i>"), None)
    assert "<i>" not in escaped.html and "&lt;i&gt;" in escaped.html
    # Markdown shows a quote as it is: an HTML entity for it would be shown literally.
    quoted = signed_in_line(claims_token(preferred_username="o'brien"), None)
    assert quoted.markdown == "Signed in as **o'brien**", quoted.markdown


@pytest.mark.parametrize(("error", "says"), [
    (ExpiredToken("expired_token", None), "Login at https://id.example expired: the code was not "
                                          "approved in time. Run the cell again for a new code."),
    (AccessDenied("access_denied", None), "Login at https://id.example was denied."),
    (KeyboardInterrupt(), "Login at https://id.example was interrupted."),
    (asyncio.CancelledError(), "Login at https://id.example was interrupted."),
    (InvalidIdToken("bad signature"), "Login at https://id.example failed: InvalidIdToken "
                                      "(see below)."),
])
def test_a_login_without_a_token_says_why(error: BaseException, says: str) -> None:
    assert failed_line(error, "https://id.example").plain == says
