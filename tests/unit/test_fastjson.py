"""keyturn._fastjson: the fast path's json.loads/json.dumps read and write exactly what json does,
and importing it imports no json, re or typing (what it is for)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyturn import _fastjson
from keyturn._fastindex import index_key

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10),
                                                                       children, max_size=4),
    max_leaves=20,
)
key_values = st.recursive(st.none() | st.text(max_size=20),
                          lambda children: st.lists(children, max_size=4), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(json_values, st.sampled_from([{}, {"indent": 2}, {"separators": (",", ":")}]))
def test_loads_reads_what_json_dumps_writes(value: Any, layout: dict[str, Any]) -> None:
    text = json.dumps(value, **layout)
    assert _fastjson.loads(text) == json.loads(text)
    assert _fastjson.loads(text.encode()) == value
    assert _fastjson.loads(f" \n\t{text}\r\n ") == value  # RFC 8259 whitespace around the text


def test_loads_reads_nan_and_the_infinities_as_json_does() -> None:
    # json.dumps writes them, and an older keyturn saved them in a token's `extra`.
    value = _fastjson.loads(json.dumps({"n": float("nan"), "i": float("inf"), "m": float("-inf")}))
    assert math.isnan(value["n"]) and value["i"] == math.inf and value["m"] == -math.inf


@pytest.mark.parametrize("text", [b"", b"   ", b"{", b'{"a": 1} {}', b"[1, 2", b"nul", b'{"a" 1}',
                                  b"\xff\xfe", b'"\\x"', b"01"])
def test_what_json_refuses_is_a_value_error(text: bytes) -> None:
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        _fastjson.loads(text)


def test_deep_nesting_is_a_recursion_error_as_in_json() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(RecursionError):
        _fastjson.loads(deep)


@settings(max_examples=300, deadline=None)
@given(key_values)
def test_dumps_writes_what_json_dumps_writes(value: Any) -> None:
    assert _fastjson.dumps(value) == json.dumps(value)
    assert _fastjson.dumps(tuple(value) if isinstance(value, list) else value) == json.dumps(value)


def test_dumps_refuses_what_an_index_key_never_holds() -> None:
    with pytest.raises(TypeError, match="dict"):
        _fastjson.dumps({"a": "b"})  # type: ignore[arg-type]


def test_an_index_key_is_what_json_dumps_wrote_before() -> None:
    # Index files written by json.dumps keys keep matching.
    key = index_key("p\u00e9", {"scope": "a b", "issuer": "https://as.example/\u2603"})
    config, profile, name, _ = json.loads(key)
    assert key == json.dumps([config, profile, name, [["issuer", "https://as.example/\u2603"],
                                                       ["scope", "a b"]]])
    assert name == "p\u00e9"


def test_importing_it_imports_neither_json_nor_re_nor_typing() -> None:
    probe = ("import sys\nimport keyturn._fastjson as f\nassert f.loads(b'{\"a\": [1]}') == {'a': [1]}\n"
             "print([m for m in ('json', 're', 'typing', 'enum') if m in sys.modules])\n")
    done = subprocess.run([sys.executable, "-S", "-c", probe], capture_output=True, text=True,
                          timeout=60, env={"PYTHONPATH": ":".join(sys.path)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
