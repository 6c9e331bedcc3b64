"""The local keyring file and sealing of small application secrets.

The keyring is a JSON file at ``REFERRAL_KEYRING``, created on first run with
mode 0600, holding versioned 256-bit key-encryption keys (KEKs). Only one
version is active for new seals; older ones stay for decryption until retired.

``seal``/``open_sealed`` protect small secrets that belong to no case (a user's
TOTP secret) with AES-256-GCM under a subkey derived from a KEK by HKDF, with
associated data naming where the secret lives, so a sealed value copied to
another row fails to open. Case data uses per-case data keys (the trust core).
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

FORMAT = 1
SEAL_VERSION = 1
_HEADER = struct.Struct(">BI")  # seal format version, KEK version
NONCE_BYTES = 12


class KeyringError(RuntimeError):
    """The keyring is missing, unreadable or does not hold the needed key."""


class SealIntegrityError(RuntimeError):
    """A sealed value failed authentication: tampered, truncated or moved."""


@dataclass(frozen=True)
class Kek:
    version: int
    key: bytes
    created_at: str
    state: str  # "active" | "decrypt_only"


class LocalKeyring:
    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._keks: dict[int, Kek] = {}
        self._load(create=create)

    # -- file ---------------------------------------------------------------
    def _load(self, *, create: bool) -> None:
        if not self.path.exists():
            if not create:
                raise KeyringError(f"keyring file not found at {self.path}")
            self._create()
        try:
            data = json.loads(self.path.read_text("utf-8"))
            if data.get("format") != FORMAT:
                raise KeyringError(f"keyring {self.path} has unknown format {data.get('format')!r}")
            keks = {}
            for item in data["keks"]:
                key = base64.b64decode(item["key"])
                if len(key) != 32:
                    raise KeyringError(f"keyring {self.path}: KEK {item['version']} is not 256 bits")
                keks[int(item["version"])] = Kek(int(item["version"]), key, item["created_at"], item["state"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeyringError(f"keyring {self.path} is unreadable ({type(exc).__name__})") from None
        if not any(k.state == "active" for k in keks.values()):
            raise KeyringError(f"keyring {self.path} has no active key")
        self._keks = keks

    def _create(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kek = {
            "version": 1,
            "key": base64.b64encode(os.urandom(32)).decode(),
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "state": "active",
        }
        payload = json.dumps({"format": FORMAT, "keks": [kek]}, indent=2).encode()
        # O_EXCL: two processes starting at once must not both write a keyring.
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)

    # -- keys ---------------------------------------------------------------
    @property
    def active(self) -> Kek:
        return max((k for k in self._keks.values() if k.state == "active"), key=lambda k: k.version)

    def kek(self, version: int) -> Kek:
        try:
            return self._keks[version]
        except KeyError:
            raise KeyringError(f"the keyring holds no key version {version}") from None

    @property
    def versions(self) -> list[Kek]:
        return [self._keks[v] for v in sorted(self._keks)]

    # -- sealing of application secrets ------------------------------------
    @staticmethod
    def _subkey(kek: Kek, purpose: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"amanat/seal/" + purpose).derive(kek.key)

    def seal(self, plaintext: bytes, *, purpose: str, aad: str) -> bytes:
        kek = self.active
        nonce = os.urandom(NONCE_BYTES)
        header = _HEADER.pack(SEAL_VERSION, kek.version)
        ct = AESGCM(self._subkey(kek, purpose.encode())).encrypt(nonce, plaintext, header + aad.encode())
        return header + nonce + ct

    def open_sealed(self, sealed: bytes, *, purpose: str, aad: str) -> bytes:
        if len(sealed) < _HEADER.size + NONCE_BYTES + 16:
            raise SealIntegrityError("sealed value is truncated")
        version, kek_version = _HEADER.unpack_from(sealed)
        if version != SEAL_VERSION:
            raise SealIntegrityError(f"unknown seal format {version}")
        kek = self.kek(kek_version)
        header = sealed[: _HEADER.size]
        nonce = sealed[_HEADER.size : _HEADER.size + NONCE_BYTES]
        try:
            return AESGCM(self._subkey(kek, purpose.encode())).decrypt(
                nonce, sealed[_HEADER.size + NONCE_BYTES :], header + aad.encode()
            )
        except InvalidTag:
            raise SealIntegrityError("sealed value failed authentication") from None


def keyring_for(app) -> LocalKeyring:  # type: ignore[no-untyped-def]
    """The app's keyring, loaded (or created) once per process."""
    ring = app.extensions.get("amanat_keyring")
    if ring is None:
        ring = LocalKeyring(app.config["KEYRING_PATH"], create=app.config.get("ENV_NAME") != "production")
        app.extensions["amanat_keyring"] = ring
    return ring
