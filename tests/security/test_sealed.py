"""The sealed-field codec and blind indexes."""
import os

import pytest

from referral.security.keyring import SealIntegrityError
from referral.security.sealed import FIELD_FORMAT, blind_index, normalise_identifier, open_field, seal_field

KEY = os.urandom(32)
WHERE = dict(case_id="c1", table="referrals", column="narrative_sealed", row_id="c1")


def test_round_trip_and_format():
    sealed = seal_field(KEY, "Ырас окуя — 日本", **WHERE)
    assert sealed[0] == FIELD_FORMAT and len(sealed) == 1 + 12 + len("Ырас окуя — 日本".encode()) + 16
    assert "окуя".encode() not in sealed
    assert open_field(KEY, sealed, **WHERE) == "Ырас окуя — 日本"
    assert seal_field(KEY, "same", **WHERE) != seal_field(KEY, "same", **WHERE)  # random nonce


@pytest.mark.parametrize("moved", [
    {"case_id": "c2"}, {"table": "case_notes"}, {"column": "survivor_name_sealed"}, {"row_id": "r9"},
])
def test_a_ciphertext_moved_anywhere_else_fails(moved):
    sealed = seal_field(KEY, "secret", **WHERE)
    with pytest.raises(SealIntegrityError):
        open_field(KEY, sealed, **{**WHERE, **moved})


def test_tampering_wrong_key_and_unknown_format_fail():
    sealed = bytearray(seal_field(KEY, "secret", **WHERE))
    flipped = bytes(sealed[:20]) + bytes([sealed[20] ^ 1]) + bytes(sealed[21:])
    for bad in (flipped, bytes(sealed[:-1]), b"\x02" + bytes(sealed[1:]), b"\x01short"):
        with pytest.raises(SealIntegrityError):
            open_field(KEY, bad, **WHERE)
    with pytest.raises(SealIntegrityError):
        open_field(os.urandom(32), bytes(sealed), **WHERE)


def test_blind_index_is_keyed_normalised_and_truncated():
    key = os.urandom(32)
    a = blind_index(key, "perpetrator", normalise_identifier("  Ivan   PETROV "))
    b = blind_index(key, "perpetrator", normalise_identifier("ivan petrov"))
    assert a == b and len(a) == 6  # 24 bits
    assert blind_index(os.urandom(32), "perpetrator", "ivan petrov") != a
    assert blind_index(key, "phone", "ivan petrov") != a  # kinds are separated
    assert normalise_identifier("ＩＶＡＮ") == "ivan"
