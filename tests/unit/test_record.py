"""keyturn._record: the token file's record, as FileStore writes it and the fast path reads it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keyturn import _fastjson, _record
from keyturn.cachekey import file_name
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
