"""What :meth:`Source.logout() <keyturn.sources.base.Source.logout>` did: :class:`Logout`.

A logout always forgets the tokens here; whether they stop working depends on the server, which
revokes them only when it offers RFC 7009 revocation and the request succeeds. A caller (and
``keyturn logout``) must be able to tell the two apart: tokens that were only forgotten stay valid
until they expire.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["NOTHING_SAVED", "NO_REVOCATION_ENDPOINT", "REVOCATION_FAILED", "Logout"]

#: ``Logout.reason``: there was no saved token to forget (nothing to revoke either).
NOTHING_SAVED = "nothing_saved"
#: ``Logout.reason``: neither ``revocation_endpoint=`` nor the server's metadata names one.
NO_REVOCATION_ENDPOINT = "no_revocation_endpoint"
#: ``Logout.reason``: the revocation request failed (``Logout.detail`` says why).
REVOCATION_FAILED = "revocation_failed"


@dataclass(frozen=True)
class Logout:
    """The outcome of a logout: whether a login was forgotten here, and whether the server revoked
    its tokens (``revoked``; when not, ``reason`` is one of the constants of this module).

    ``detail`` is the error of a failed revocation, as one line without any secret.
    """

    forgotten: bool
    revoked: bool
    reason: str | None = None
    endpoint: str | None = None
    detail: str | None = None

    @property
    def message(self) -> str:
        """One sentence for a person: what happened here and at the server."""
        if not self.forgotten:
            return "no saved tokens here, so nothing was revoked"
        if self.revoked:
            return "forgot the login here and revoked its tokens at the server"
        if self.reason == NO_REVOCATION_ENDPOINT:
            return ("forgot the login here; the server names no revocation endpoint, so its tokens "
                    "stay valid until they expire (give revocation_endpoint= if it has one)")
        return (f"forgot the login here, but the server did not revoke its tokens "
                f"({self.detail or 'the revocation failed'}), so they stay valid until they expire")
