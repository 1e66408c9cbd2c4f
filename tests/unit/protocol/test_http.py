"""keyturn.protocol.http: request and response values, and the offline driver."""

from __future__ import annotations

import pytest

from keyturn.errors import InvalidResponse
from keyturn.protocol.http import HttpRequest, HttpResponse, Wait, run_offline


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
