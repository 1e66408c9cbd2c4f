"""keyturn._record: the token file's record, as FileStore writes it and the fast path reads it, and
which records are valid: the one check both make."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyturn import _fastjson, _record, strictjson
from keyturn.cachekey import file_name
from keyturn.errors import StoreError
from keyturn.stores import _tokenfile
from keyturn.stores.file import FileStore
from keyturn.token import Token

KEY = "keyturn:v1:record-test"
TOKEN = Token(access_token="AT-secret-record", expires_at=2e9, issued_at=1e9, scope=("a", "b"),
              refresh_token="RT-secret-record")


def test_what_a_filestore_writes_the_fast_path_reads(tmp_path: Path) -> None:
    FileStore(tmp_path).save(KEY, TOKEN)
    record = _fastjson.loads((tmp_path / f"{file_name(KEY)}.json").read_bytes())
    assert _record.key_of(record) == KEY
    assert _record.token_fields(record, KEY) == TOKEN.to_record()
    assert _record.token_fields(record, "keyturn:v1:another") is None


def test_encode_writes_the_record_make_builds() -> None:
    data = _tokenfile.encode(KEY, TOKEN, generation=3, written_at=1.5)
    assert json.loads(data) == _record.make(KEY, TOKEN.to_record(), generation=3, written_at=1.5)
    assert json.loads(data)[_record.FORMAT_FIELD] == _record.FORMAT == 1


@pytest.mark.parametrize("record", [
    None, [], "x", {}, {"key": KEY}, {"format": 2, "key": KEY, "token": {}},
    {"format": "1", "key": KEY, "token": {}}, {"format": 1, "key": 7, "token": {}},
])
def test_no_record_of_this_format_has_no_key_and_no_token(record: object) -> None:
    assert _record.key_of(record) is None
    assert _record.token_fields(record, KEY) is None


@pytest.mark.parametrize("token", [None, [], "AT-secret-record", 1])
def test_a_record_whose_token_is_no_object_has_no_token_fields(token: object) -> None:
    record = {"format": 1, "key": KEY, "token": token}
    assert _record.key_of(record) == KEY
    assert _record.token_fields(record, KEY) is None
    with pytest.raises(_tokenfile.Damaged) as info:
        _tokenfile.decode(json.dumps(record).encode(), f"{file_name(KEY)}.json")
    assert "AT-secret" not in str(info.value)


# -- valid token fields: the one check FileStore and the fast path make (report V, item 1) ---------

FIELDS = tuple(TOKEN.to_record())


@pytest.mark.parametrize("token", [TOKEN, Token(access_token="a"), Token.refresh_only("RT-x"),
                                   Token(access_token="a", scope=(), extra={"k": [1, {"n": None}]})])
def test_what_to_record_writes_is_valid(token: Token) -> None:
    fields = json.loads(json.dumps(token.to_record()))
    assert _record.token_fault(fields) is None
    record = _record.make(KEY, fields, generation=1, written_at=1.0)
    assert _record.fault(record, KEY) is None and _record.token_fields(record, KEY) == fields
    assert _record.token_fault({"access_token": "a"}) is None  # a field left out reads as None


@pytest.mark.parametrize(("name", "value"), [
    ("access_token", None), ("access_token", 5), ("token_type", 5), ("refresh_token", ["x"]),
    ("id_token", {}), ("expires_at", "2000000000"), ("expires_at", True), ("issued_at", [1]),
    ("refresh_expires_at", 10**400), ("scope", "a b"), ("scope", ["a", 1]), ("scope", {}),
    ("extra", "x"), ("extra", []), ("extra", 0),
])
def test_a_field_to_record_never_writes_is_a_fault_that_quotes_nothing(name: str,
                                                                       value: object) -> None:
    fields = TOKEN.to_record() | {name: value}
    why = _record.token_fault(fields)
    assert why is not None and name in why and "AT-secret" not in why and "RT-secret" not in why
    record = _record.make(KEY, fields, generation=1, written_at=1.0)
    assert _record.fault(record, KEY) == f"the token object is malformed: {why}"
    assert _record.token_fields(record, KEY) is None
    with pytest.raises(_tokenfile.Damaged, match="the token object is malformed"):
        _tokenfile.decode(json.dumps(record).encode(), f"{file_name(KEY)}.json")


field_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5),
                                                                       children, max_size=3),
    max_leaves=8,
)
valid_values = {"access_token": st.text(max_size=5), "expires_at": st.integers() | st.floats(),
                "scope": st.lists(st.text(max_size=5), max_size=3),
                "extra": st.dictionaries(st.text(max_size=5), field_values, max_size=3)}


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({}, optional={
    name: valid_values.get(name, st.text(max_size=5)) | field_values for name in FIELDS}))
def test_token_from_record_takes_every_valid_fields(fields: dict[str, object]) -> None:
    # So FileStore refuses exactly what token_fault refuses: nothing more slips through to
    # Token.from_record to be refused there (the fast path asks only token_fault).
    if _record.token_fault(fields) is None:
        Token.from_record(fields)
    else:
        with pytest.raises(_tokenfile.Damaged):
            _tokenfile.decode(json.dumps(_record.make(KEY, fields, generation=1, written_at=1.0))
                              .encode(), f"{file_name(KEY)}.json")


def test_the_depth_limit_is_strictjsons() -> None:
    assert _record.MAX_DEPTH is strictjson.MAX_DEPTH == 64
    for extra_depth, valid in ((62, True), (63, False)):  # the record and its token are 2 levels
        extra: dict[str, object] = {}
        for _ in range(extra_depth - 1):
            extra = {"k": extra}
        record = _record.make(KEY, TOKEN.to_record() | {"extra": extra}, generation=1,
                              written_at=1.0)
        assert (_record.fault(record, KEY) is None) is valid
        text = json.dumps(record)
        if valid:
            strictjson.loads(text, as_written=True)
        else:
            assert _record.fault(record, KEY) == "it nests arrays or objects deeper than 64 levels"
            with pytest.raises(strictjson.JsonError, match="deeper than 64"):
                strictjson.loads(text, as_written=True)


def test_a_number_beyond_a_double_is_malformed_for_token_from_record() -> None:
    # float() of it raised OverflowError, which no caller caught (another store's record).
    with pytest.raises(StoreError, match="malformed"):
        Token.from_record({"access_token": "AT-secret-record", "expires_at": 10**400})
