"""Properties of the sealed-field codec (SPEC §7): any text round-trips; any change to the ciphertext
or to what it is bound to (case, table, column, row) fails to open."""
from __future__ import annotations

import string

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from referral.security.keyring import NONCE_BYTES, TAG_BYTES, SealIntegrityError
from referral.security.sealed import open_field, seal_field

keys = st.binary(min_size=32, max_size=32)
# What the code binds ciphertexts to: case ids are UUIDs, tables and columns are identifiers, rows are
# UUIDs or integer ids.
identifiers = st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=24)
row_ids = st.uuids().map(str) | st.integers(1, 2**31 - 1).map(str)
bindings = st.fixed_dictionaries({"case_id": st.uuids().map(str), "table": identifiers, "column": identifiers,
                                  "row_id": row_ids})
plaintexts = st.text(max_size=300)


@given(key=keys, text=plaintexts, where=bindings)
def test_any_unicode_text_round_trips(key, text, where):  # type: ignore[no-untyped-def]
    sealed = seal_field(key, text, **where)
    assert open_field(key, sealed, **where) == text
    assert len(sealed) == 1 + NONCE_BYTES + len(text.encode("utf-8")) + TAG_BYTES


@given(key=keys, text=plaintexts, where=bindings)
def test_sealing_twice_never_gives_the_same_bytes(key, text, where):  # type: ignore[no-untyped-def]
    assert seal_field(key, text, **where) != seal_field(key, text, **where)  # a fresh nonce each time


@given(key=keys, text=plaintexts, where=bindings, data=st.data())
def test_any_changed_byte_fails_to_open(key, text, where, data):  # type: ignore[no-untyped-def]
    sealed = bytearray(seal_field(key, text, **where))
    index = data.draw(st.integers(0, len(sealed) - 1), label="byte")
    sealed[index] ^= data.draw(st.integers(1, 255), label="xor")
    with pytest.raises(SealIntegrityError):
        open_field(key, bytes(sealed), **where)


@given(key=keys, text=plaintexts, where=bindings, data=st.data())
def test_a_shortened_or_lengthened_ciphertext_fails_to_open(key, text, where, data):  # type: ignore[no-untyped-def]
    sealed = seal_field(key, text, **where)
    cut = data.draw(st.integers(0, len(sealed) - 1), label="keep")
    with pytest.raises(SealIntegrityError):
        open_field(key, sealed[:cut], **where)
    with pytest.raises(SealIntegrityError):
        open_field(key, sealed + data.draw(st.binary(min_size=1, max_size=16), label="extra"), **where)


@given(key=keys, text=plaintexts, where=bindings, other=bindings, data=st.data())
def test_a_ciphertext_moved_to_another_case_table_column_or_row_fails(key, text, where, other, data):  # type: ignore[no-untyped-def]
    """Change one binding (or several): the ciphertext no longer opens."""
    changed = data.draw(st.sets(st.sampled_from(sorted(where)), min_size=1), label="changed")
    moved = {**where, **{name: other[name] for name in changed}}
    assume(moved != where)
    sealed = seal_field(key, text, **where)
    with pytest.raises(SealIntegrityError):
        open_field(key, sealed, **moved)


@given(key=keys, other_key=keys, text=plaintexts, where=bindings)
def test_another_key_fails_to_open(key, other_key, text, where):  # type: ignore[no-untyped-def]
    assume(key != other_key)
    with pytest.raises(SealIntegrityError):
        open_field(other_key, seal_field(key, text, **where), **where)


@given(key=keys, text=plaintexts, data=st.data(),
       parts=st.lists(st.text(alphabet="ab|=", max_size=6), min_size=8, max_size=8))
def test_bindings_cannot_be_confused_by_their_separator(key, text, data, parts):  # type: ignore[no-untyped-def]
    """The associated data joins the four bindings with "|": a binding containing "|" could make two
    different bindings one string (case "x", table "t|column=c" = case "x", table "t", column "c|…"),
    so such a binding is refused rather than sealed."""
    first = dict(zip(("case_id", "table", "column", "row_id"), parts[:4], strict=True))
    second = dict(zip(("case_id", "table", "column", "row_id"), parts[4:], strict=True))
    try:
        sealed = seal_field(key, text, **first)
    except ValueError:
        assert any("|" in value for value in first.values())
        return
    assert not any("|" in value for value in first.values())
    if second == first:
        assert open_field(key, sealed, **second) == text
    else:
        with pytest.raises((SealIntegrityError, ValueError)):
            open_field(key, sealed, **second)


def test_the_separator_confusion_is_refused():
    """The concrete collision the property above guards against."""
    key = bytes(32)
    with pytest.raises(ValueError):
        seal_field(key, "text", case_id="c", table="t|column=x", column="y", row_id="r")
    sealed = seal_field(key, "text", case_id="c", table="t", column="x", row_id="r")
    with pytest.raises(ValueError):
        open_field(key, sealed, case_id="c", table="t", column="x|row=r", row_id="")
