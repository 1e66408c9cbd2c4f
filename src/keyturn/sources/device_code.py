"""The device authorization grant (RFC 8628): log in once on another device, then refresh silently.

The first call shows the person a URL and a code (``prompt=``), polls until they approve, and
stores the tokens (a :class:`~keyturn.stores.file.FileStore` by default, so every later process
of the user finds them). From then on the refresh token is used; a new device login is asked for
only when the provider refuses it, and only from an interactive caller: a silent one (a cron job,
``keyturn token``) gets :class:`~keyturn.errors.LoginRequired` instead of a prompt nobody sees.

The whole login runs inside the cache's transaction, under the store's lock: two processes that
need a login at once show one code, and a Ctrl-C while waiting leaves the store as it was (the
store is written only once the token is there, and atomically).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import registry
from ..account import login_hint
from ..errors import ConfigError, DiscoveryError
from ..protocol.device import (
    DEVICE_ENDPOINT,
    DeviceAuthorization,
    DeviceVerification,
    device_authorization_flow,
    device_poll_flow,
)
from ..protocol.endpoints import check_endpoint_url
from ..protocol.hooks import ResponseHook, check_hook
from ..protocol.http import Blocking, Flow, call
from ..secret import conceal_arguments
from ..stores.base import Store
from ..stores.file import FileStore
from ..token import Token
from .oidc import OpenIDSource, person_is_watching

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..interactive.prompt import LoginDisplay
    from .options import OpenIDOptions

__all__ = ["DEFAULT_SCOPE", "DeviceCode"]

#: Asked for when ``scope=`` is not given (the registry's row of the grant says which).
DEFAULT_SCOPE = registry.grant("device_code").default_scope


def _file_store() -> Store | None:
    return FileStore()


class DeviceCode(OpenIDSource):
    """Tokens for a person, who approves the login on a phone or a browser elsewhere::

        source = DeviceCode(issuer="https://id.example.org", client_id="cli")
        source.get_access_token()   # first time: shows a URL, a code and a QR code on stderr

    ``prompt(verification)`` is called with a :class:`DeviceVerification` to show; the default
    writes to stderr, or in a Jupyter kernel shows it in the cell (replaced by "Signed in as ..."
    when done). ``interactive`` says whether a login may be started at all; by default it is when
    a ``prompt`` is given, when stdin and stderr are terminals, and in a Jupyter kernel.
    """

    grant_name = "device_code"
    default_store = _file_store

    def __init__(
        self, *, prompt: Callable[[DeviceVerification], None] | None = None,
        interactive: bool | None = None, device_authorization_endpoint: str | None = None,
        device_response_hook: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        **options: Unpack[OpenIDOptions],
    ) -> None:
        conceal_arguments(options)  # first: this frame shows in a ConfigError's traceback
        super().__init__(**options)
        if prompt is not None and not callable(prompt):
            raise ConfigError("prompt= must be a callable taking a DeviceVerification")
        if device_authorization_endpoint:
            check_endpoint_url(device_authorization_endpoint, "device_authorization_endpoint",
                               allow_http=self._allow_http)
        elif self.issuer is None:
            raise ConfigError("give issuer= (for discovery) or device_authorization_endpoint=")
        self._device_endpoint = device_authorization_endpoint
        self._prompt = prompt
        self._interactive = interactive
        #: The default prompts still on screen (a notebook cell's), by id() of their verification.
        self._displays: dict[int, LoginDisplay] = {}
        #: Adapts a non-standard device authorization answer (a dict) before it is parsed.
        check_hook(device_response_hook, "device_response_hook")
        self.device_response_hook = device_response_hook

    _new_login = "a new device login"

    @property
    def interactive(self) -> bool:
        if self._interactive is not None:
            return self._interactive
        return self._prompt is not None or person_is_watching()

    def _show(self, verification: DeviceVerification) -> None:
        if self._prompt is not None:
            self._prompt(verification)
            return
        from ..interactive.prompt import default_prompt

        display = default_prompt(verification)
        if display is not None:  # it stays on screen: _approved_flow tells it how the login ended
            self._displays[id(verification)] = display

    def _response_hooks(self) -> dict[str, tuple[str, ResponseHook]]:
        hooks = super()._response_hooks()
        if self.device_response_hook is not None:
            hooks[DEVICE_ENDPOINT] = ("device_response_hook", self.device_response_hook)
        return hooks

    # -- the grant: one flow, driven by Source._fetch / _afetch ---------------------------------------

    def _flow(self, previous: Token | None) -> Flow[Token]:
        """The saved login refreshed, or a device login: the code shown to the person (a blocking
        call: the async driver runs the prompt in a thread), then polled until approved. A poll
        that got no answer is handled by :func:`device_poll_flow` (RFC 8628 §3.5)."""
        token_endpoint = yield from self._endpoint_flow()
        refreshed = yield from self._refresh_or_login_flow(token_endpoint, previous)
        if refreshed is not None:
            return refreshed
        machine = yield from self._login_flow(token_endpoint)
        token = yield from self._approved_flow(machine)
        return token

    def _approved_flow(self, machine: DeviceAuthorization) -> Flow[Token]:
        """The login polled until approved and its ID Token checked; a prompt still on screen (a
        notebook cell's) replaced by how it ended, on every way out."""
        display = self._displays.pop(id(machine.verification), None)
        try:
            token = yield from device_poll_flow(machine)
            token = yield from self._claims_flow(token, None)
        except GeneratorExit:
            if display is not None:  # the driver dropped the flow: no one left to yield to
                display.failed(KeyboardInterrupt(), self.issuer)
            raise
        except BaseException as exc:
            if display is not None:
                yield from call(Blocking(functools.partial(display.failed, exc, self.issuer),
                                         "show how the login ended"))
            raise
        if display is not None:
            yield from call(Blocking(functools.partial(display.signed_in, token, self.issuer),
                                     "show who signed in"))
        return token

    def _login_flow(self, token_endpoint: str) -> Flow[DeviceAuthorization]:
        """A device login asked for and shown to the person, ready to be polled."""
        endpoint = self._device_endpoint
        if endpoint is None:
            metadata = yield from self._metadata_flow()
            endpoint = metadata.device_authorization_endpoint
            if not endpoint:
                raise DiscoveryError(
                    f"issuer {self.issuer} offers no device_authorization_endpoint: pass "
                    "device_authorization_endpoint= (keyturn login --device-authorization-endpoint "
                    "URL), or use another flow", url=self.issuer,
                )
        params = {k: v for k, v in self._base_params().items() if v is not None}
        params.update(login_hint(self.account, params))  # which of several accounts (account=)
        machine = DeviceAuthorization(
            device_authorization_endpoint=endpoint, token_endpoint=token_endpoint,
            client_auth=self.client_auth, params=params, requested_scope=self.scope,
        )
        verification = yield from device_authorization_flow(machine, now=time.time())
        yield from call(Blocking(functools.partial(self._show, verification),
                                 "show the device code"))
        return machine
