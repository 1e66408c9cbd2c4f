"""DOT mounted under ``/o/`` as its documentation shows (issuer ``http://127.0.0.1:PORT/o``), and
``/api/``, a resource that answers 200 to a valid bearer token and 403 otherwise: how a test sees
whether a token still works after a logout."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from oauth2_provider.views.generic import ProtectedResourceView


class Api(ProtectedResourceView):
    def get(self, request: HttpRequest) -> JsonResponse:
        return JsonResponse({"ok": True})


urlpatterns = [
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path("api/", Api.as_view()),
]
