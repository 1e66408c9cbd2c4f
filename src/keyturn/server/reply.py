"""What an endpoint answers, before HTTP: a status, a JSON body, headers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["NO_STORE", "Reply"]

#: RFC 6749 §5.1: "The authorization server MUST include the HTTP "Cache-Control" response header
#: field [RFC2616] with a value of "no-store" in any response containing tokens, credentials, or
#: other sensitive information, as well as the "Pragma" response header field [RFC2616] with a
#: value of "no-cache"."
NO_STORE: Final[Mapping[str, str]] = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@dataclass(frozen=True)
class Reply:
    status: int
    body: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)
