"""NUL in any text of a JSON body is refused with a clear 400 (referral.api.load_json), wherever it hides,
and only a NUL is: the check that skips bodies which cannot hold one must not skip one that does."""
from __future__ import annotations

import json

import pytest

from tests.referrals.helpers import minimal


def _post(client, headers, raw: bytes):  # type: ignore[no-untyped-def]
    return client.post("/api/v1/referrals", data=raw, headers={**headers, "Content-Type": "application/json"})


def _with(area: str, **survivor: object) -> dict:
    body = minimal(area)
    body["survivor"] = {**body["survivor"], **survivor}
    return body


@pytest.mark.parametrize("where", ["value", "key", "list", "deep"])
def test_an_escaped_nul_anywhere_is_refused(client, place, people, officers, where):
    body = minimal(place["district"].code)
    if where == "value":
        body["survivor"]["name"] = "a\x00b"
    elif where == "key":
        body["survivor"]["na\x00me"] = "x"
    elif where == "list":
        body["extra"] = ["ok", "n\x00"]
    else:
        body["incident"]["answers"]["more"] = {"x": [{"y": "\x00"}]}
    raw = json.dumps(body).encode()
    assert b"\\u0000" in raw
    refused = _post(client, people["focal"][1], raw)
    assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "nul_character"
    assert b"\\u0000" not in refused.get_data()


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_a_nul_in_a_body_sent_as_utf16_or_utf32_is_refused_and_such_a_body_without_one_is_taken(
        client, place, people, officers, encoding):
    with_nul = json.dumps(_with(place["district"].code, name="a\x00"), ensure_ascii=False).replace("\\u0000", "\x00")
    # JSON may not carry a raw control character in a string: sent escaped, as a client would.
    escaped = json.dumps(_with(place["district"].code, name="a\x00"))
    refused = _post(client, people["focal"][1], escaped.encode(encoding))
    assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "nul_character"
    assert _post(client, people["focal"][1], with_nul.encode(encoding)).status_code == 400  # raw: not JSON
    taken = _post(client, people["focal"][1], json.dumps(_with(place["district"].code, name="Ainura")).encode(encoding))
    assert taken.status_code == 201, taken.get_json()


def test_a_backslash_before_u0000_is_text_not_a_nul(client, place, people, officers):
    raw = json.dumps(_with(place["district"].code, name="C:\\u0000")).encode()
    assert b"\\\\u0000" in raw  # the escaped backslash, then the letters
    taken = _post(client, people["focal"][1], raw)
    assert taken.status_code == 201, taken.get_json()
