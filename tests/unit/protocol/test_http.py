"""keyturn.protocol.http: request and response values, the offline driver, and the effects'
types: a source that cannot give what an effect asks is a mypy error, and a driver that answers an
effect wrongly is told what was due."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyturn import StaticToken
from keyturn.errors import InvalidResponse
from keyturn.protocol.http import (
    CurrentToken,
    HttpRequest,
    HttpResponse,
    Wait,
    current_token,
    run_offline,
)
from tests.support.mypycheck import mypy_errors


def test_form_items_repeat_list_values_in_order() -> None:
    request = HttpRequest("POST", "https://as.example/token",
                          form={"a": "1", "resource": ["r1", "r2"], "b": "2"})
    assert request.form_items() == [("a", "1"), ("resource", "r1"), ("resource", "r2"), ("b", "2")]
    assert HttpRequest("GET", "https://as.example/").form_items() == []


def test_request_repr_hides_headers_and_form() -> None:
    request = HttpRequest("POST", "https://as.example/token", headers={"Authorization": "Basic SECRET"},
                          form={"client_secret": "SECRET"})
    assert "SECRET" not in repr(request)


def test_content_type_and_json_object() -> None:
    response = HttpResponse(200, {"content-type": "Application/JSON; charset=utf-8"}, b'{"a": 1}', "u")
    assert response.content_type == "application/json"
    assert response.json_object("x") == {"a": 1}
    assert HttpResponse(200, {}, b"", "").content_type == ""


def test_json_object_errors_name_the_purpose_and_url() -> None:
    expected = "userinfo endpoint answered HTTP 502 with an HTML page"
    with pytest.raises(InvalidResponse, match=expected) as info:
        HttpResponse(502, {"content-type": "text/html"}, b"  <html>", "https://as.example/me?x=1"
                     ).json_object("userinfo endpoint")
    assert info.value.status == 502
    assert info.value.url == "https://as.example/me"
    assert "content-type text/html" in str(info.value)
    with pytest.raises(InvalidResponse, match="content-type missing"):
        HttpResponse(200, {}, b"nope", "").json_object("x")


def test_run_offline_drives_requests_and_waits() -> None:
    seen: list[object] = []

    def flow():  # type: ignore[no-untyped-def]
        first = yield HttpRequest("GET", "https://a.example/1")
        seen.append(first.status)
        now = yield Wait(until=50.0)
        seen.append(now)
        now = yield Wait(until=10.0)  # time never runs backwards
        seen.append(now)
        second = yield HttpRequest("GET", "https://a.example/2")
        return second.body

    responses = {"https://a.example/1": HttpResponse(204, {}, b""),
                 "https://a.example/2": HttpResponse(200, {}, b"done")}
    assert run_offline(flow(), responses) == b"done"
    assert seen == [204, 50.0, 50.0]


def test_run_offline_unknown_url_is_a_key_error() -> None:
    def flow():  # type: ignore[no-untyped-def]
        yield HttpRequest("GET", "https://a.example/missing")

    with pytest.raises(KeyError):
        run_offline(flow(), {})


#: Each line of a user's code, and the mypy error code it must get (None: none at all).
USES = [
    ("CurrentToken(StaticToken('t'))", None),  # a keyturn source has get_token
    ("current_token(StaticToken('t'))", None),
    ("TokenOf(StaticToken('t'))", None),
    ("TokenOf(Provider())", None),  # token exchange's subject: its access token is enough
    ("CurrentToken(Provider())", "arg-type"),  # no get_token: not a RenewableSource
    ("current_token(Provider())", "arg-type"),
    ("TokenOf(Provider(), whole=True)", "call-arg"),  # the old flag: one effect, one answer type
]


def test_an_effect_given_a_source_that_cannot_answer_it_is_a_type_error(tmp_path: Path) -> None:
    lines = [
        "from keyturn import StaticToken",
        "from keyturn.protocol.http import CurrentToken, TokenOf, current_token",
        "",
        "class Provider:  # a TokenProvider only",
        "    def get_access_token(self) -> str:",
        "        return 't'",
        "",
        "    async def aget_access_token(self) -> str:",
        "        return 't'",
        "",
    ]
    expect: dict[int, str | None] = {}
    for use, code in USES:
        lines.append(use)
        expect[len(lines)] = code
    errors, stdout = mypy_errors(tmp_path, lines)
    assert set(errors) == {line for line, code in expect.items() if code}, stdout
    for line, code in expect.items():
        if code:
            assert code in errors[line], f"line {line}: {errors[line]} ({stdout})"


def test_a_wrong_answer_says_what_was_due_and_what_carries_effects_out() -> None:
    flow = current_token(StaticToken("t"))
    assert isinstance(next(flow), CurrentToken)
    with pytest.raises(TypeError) as info:
        flow.send(401)  # an adapter's loop sending a status where the token was due
    message = str(info.value)
    assert "answered int to CurrentToken, which is answered with a Token" in message
    # The adapters' loop carries effects out with keyturn._drivers too, not with transport.run.
    assert "keyturn._drivers.carry_out/acarry_out" in message
