"""The typed options of the sources say what their constructors take: names and types."""

from __future__ import annotations

import typing

import typing_extensions

from keyturn.sources.base import Source
from keyturn.sources.oidc import OpenIDSource
from keyturn.sources.options import OpenIDOptions, SourceOptions

#: Source.__init__'s arguments that a source sets itself (its identity, its first token).
OWN = {"subject", "seed", "return"}


def test_source_options_are_the_arguments_of_source_init_with_their_types() -> None:
    spelled_out = typing.get_type_hints(Source.__init__)
    typed = typing.get_type_hints(SourceOptions)
    assert set(typed) == set(spelled_out) - OWN
    assert {name: spelled_out[name] for name in typed} == typed
    assert not SourceOptions.__required_keys__  # every one has a default


def test_openid_options_add_the_arguments_of_openid_source() -> None:
    # Its **options annotation names what only the type checker imports.
    spelled_out = typing.get_type_hints(OpenIDSource.__init__, localns={
        "Unpack": typing_extensions.Unpack, "SourceOptions": SourceOptions})
    typed = typing.get_type_hints(OpenIDOptions)
    own = {name: hint for name, hint in typed.items() if name not in SourceOptions.__annotations__}
    assert own == {name: spelled_out[name] for name in ("id_token_algorithms", "clock_skew")}
