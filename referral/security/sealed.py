"""Sealed case fields and blind indexes.

On-disk format of a sealed field (version 1)::

    0x01 | nonce (12 bytes, random) | AES-256-GCM ciphertext | tag (16 bytes)

under the case's own data key, with associated data naming the case, table,
column and row. A ciphertext copied to another case, column or row therefore
fails to open with ``SealIntegrityError`` instead of showing the wrong text.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import unicodedata

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from referral.security.keyring import NONCE_BYTES, TAG_BYTES, SealIntegrityError

FIELD_FORMAT = 1

# Blind indexes are truncated so that, in a table of realistic size, every
# value shares its index with others by chance (CipherSweet's advice): an index
# can suggest a possible match, never prove one or be reversed by guessing.
BLIND_INDEX_BITS = 24


def field_aad(case_id: str, table: str, column: str, row_id: str) -> bytes:
    # "|" separates the bindings: a binding holding one could spell another binding's text
    # (table "t|column=c" and column "x" against table "t" and column "c|column=x"), so it is refused.
    if any("|" in part for part in (case_id, table, column, row_id)):
        raise ValueError("a sealed field's case, table, column and row may not contain '|'")
    return f"amanat/field/v{FIELD_FORMAT}|case={case_id}|table={table}|column={column}|row={row_id}".encode()


def seal_field(data_key: bytes, plaintext: str, *, case_id: str, table: str, column: str, row_id: str) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    aad = field_aad(case_id, table, column, row_id)
    return bytes([FIELD_FORMAT]) + nonce + AESGCM(data_key).encrypt(nonce, plaintext.encode("utf-8"), aad)


def open_field(data_key: bytes, sealed: bytes, *, case_id: str, table: str, column: str, row_id: str) -> str:
    if len(sealed) < 1 + NONCE_BYTES + TAG_BYTES:
        raise SealIntegrityError(f"{table}.{column} is truncated")
    if sealed[0] != FIELD_FORMAT:
        raise SealIntegrityError(f"{table}.{column} has unknown format {sealed[0]}")
    nonce = sealed[1 : 1 + NONCE_BYTES]
    try:
        plain = AESGCM(data_key).decrypt(nonce, sealed[1 + NONCE_BYTES :], field_aad(case_id, table, column, row_id))
    except InvalidTag:
        raise SealIntegrityError(f"{table}.{column} failed authentication") from None
    return plain.decode("utf-8")


def normalise_identifier(value: str) -> str:
    """Case, width and spacing do not make two names different: 'Ivan  Petrov' = 'IVAN PETROV'."""
    text = unicodedata.normalize("NFKC", value).casefold()
    return re.sub(r"\s+", " ", text).strip()


def blind_index(key: bytes, kind: str, normalised: str) -> str:
    """HMAC-SHA256 of a normalised value under the blind-index key, truncated; hex."""
    digest = hmac.new(key, f"{kind}:{normalised}".encode("utf-8"), hashlib.sha256).digest()
    return digest[: BLIND_INDEX_BITS // 8].hex()
