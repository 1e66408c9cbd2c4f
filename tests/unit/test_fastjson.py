"""keyturn._fastjson: the fast path's json.loads/json.dumps read and write what json does (bytes as
strictjson reads a token file: UTF-8, after an optional byte order mark), and importing it imports
no json, re or typing (what it is for)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyturn import _fastjson, strictjson
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


@settings(max_examples=200, deadline=None)
@given(json_values, st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32"]))
def test_bytes_read_as_strictjson_reads_a_token_file(value: Any, encoding: str) -> None:
    # The fast path must parse no token file FileStore refuses: UTF-8 after an optional byte order
    # mark (RFC 8259 §8.1), which json.loads of bytes reads too; UTF-16 and UTF-32, which it also
    # reads, neither does.
    data = json.dumps(value).encode(encoding)
    try:
        expected = strictjson.loads(data, as_written=True)
    except strictjson.JsonError:
        with pytest.raises(ValueError):
            _fastjson.loads(data)
    else:
        assert _fastjson.loads(data) == expected


def test_a_byte_order_mark_is_read_once() -> None:
    assert _fastjson.loads(b"\xef\xbb\xbf{\"a\": 1}") == {"a": 1}
    for data in (b"\xef\xbb\xbf\xef\xbb\xbf{}", "\ufeff{}"):
        with pytest.raises(strictjson.JsonError):
            strictjson.loads(data, as_written=True)
        with pytest.raises(ValueError):
            _fastjson.loads(data)


def test_no_depth_limit_here_the_fast_path_checks_it() -> None:
    # strictjson refuses 65 levels; _fastjson parses them, and keyturn._record.fault refuses them.
    text = "[" * 65 + "]" * 65
    with pytest.raises(strictjson.JsonError):
        strictjson.loads(text, as_written=True)
    assert _fastjson.loads(text) == json.loads(text)
