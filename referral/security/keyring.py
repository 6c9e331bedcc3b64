"""Key providers: where key-encryption keys (KEKs) live, and the local keyring file.

Callers only see ``KeyProvider``: generate a data key, unwrap it, rewrap it
under the active KEK — each bound to a *context* (e.g. the case id) so a
wrapped key moved to another case fails to unwrap. A HashiCorp Vault transit
or cloud KMS provider implements the same four methods; nothing else changes.

The local provider is a JSON file at ``REFERRAL_KEYRING``, created on first run
with mode 0600, holding versioned 256-bit KEKs (one ``active``, older ones
``decrypt_only`` until retired), a separate HMAC key for blind indexes, and a
subkey source for sealing small application secrets (a user's TOTP secret).

Retention KEKs (state ``retention``) each belong to one calendar month: a closed
case's data key is rewrapped under the KEK of the month its retention ends, and
that KEK is destroyed when the month is over. The keyring is kept outside the
database and its backups, so destroying the KEK erases those cases from every
database backup too (docs/decisions.md, "Retention").
"""
from __future__ import annotations

import abc
import base64
import datetime as dt
import fcntl
import json
import os
import struct
import tempfile
import threading
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

FORMAT = 1
SEAL_VERSION = 1
WRAP_VERSION = 1
_HEADER = struct.Struct(">BI")  # format version, KEK version
NONCE_BYTES = 12
TAG_BYTES = 16
_PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


class KeyringError(RuntimeError):
    """The keyring is missing, unreadable or does not hold the needed key."""


class SealIntegrityError(RuntimeError):
    """A sealed value or wrapped key failed authentication: tampered, truncated or moved."""


def canonical_context(context: dict[str, str]) -> bytes:
    return json.dumps(context, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class KeyProvider(abc.ABC):
    """What the rest of Amanat may ask of a key service."""

    name: str

    @abc.abstractmethod
    def generate_data_key(self, context: dict[str, str]) -> tuple[bytes, bytes]:
        """A fresh random 256-bit data key and its wrapped form: (plaintext, wrapped)."""

    @abc.abstractmethod
    def unwrap(self, wrapped: bytes, context: dict[str, str]) -> bytes:
        """The data key inside ``wrapped``; ``SealIntegrityError`` if it was altered or moved."""

    @abc.abstractmethod
    def rewrap(self, wrapped: bytes, context: dict[str, str]) -> bytes:
        """``wrapped`` re-encrypted under the active KEK (rotation); the data key is unchanged."""

    @abc.abstractmethod
    def wrapped_version(self, wrapped: bytes) -> int:
        """The KEK version a wrapped key is under."""

    @abc.abstractmethod
    def blind_index_key(self) -> bytes:
        """The HMAC key for blind indexes (separate from every KEK)."""


@dataclass(frozen=True)
class Kek:
    version: int
    key: bytes
    created_at: str
    state: str  # "active" | "decrypt_only" | "retention"
    period: str | None = None  # retention KEKs only: the month ("2031-05") whose expiring cases it wraps


class LocalKeyring(KeyProvider):
    name = "local"

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()  # re-entered by refresh() inside _update()
        self._keks: dict[int, Kek] = {}
        self._index_key = b""
        self._destroyed: dict[int, str] = {}  # retention KEKs destroyed: version -> month (no key material)
        self._mtime_ns = 0
        self._load(create=create)

    # -- file ---------------------------------------------------------------
    def _load(self, *, create: bool) -> None:
        if not self.path.exists():
            if not create:
                raise KeyringError(f"keyring file not found at {self.path} (REFERRAL_KEYRING)")
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
                if item["state"] not in ("active", "decrypt_only", "retention"):
                    raise KeyringError(f"keyring {self.path}: KEK {item['version']} has unknown state {item['state']!r}")
                keks[int(item["version"])] = Kek(int(item["version"]), key, item["created_at"], item["state"],
                                                 item.get("period"))
            index_key = base64.b64decode(data["blind_index_key"])
            destroyed = {int(item["version"]): str(item["period"]) for item in data.get("destroyed", [])}
        except KeyringError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeyringError(f"keyring {self.path} is unreadable ({type(exc).__name__})") from None
        if not any(k.state == "active" for k in keks.values()):
            raise KeyringError(f"keyring {self.path} has no active key")
        if len(index_key) != 32:
            raise KeyringError(f"keyring {self.path}: the blind-index key is not 256 bits")
        self._keks, self._index_key, self._destroyed = keks, index_key, destroyed
        self._mtime_ns = self.path.stat().st_mtime_ns

    def refresh(self) -> None:
        """Reload if another process rewrote the file (a rotation): new seals must use the new KEK."""
        try:
            changed = self.path.stat().st_mtime_ns != self._mtime_ns
        except OSError:
            return
        if changed:
            with self._lock:
                self._load(create=False)

    @staticmethod
    def _new_kek(version: int) -> dict[str, Any]:
        return {"version": version, "key": base64.b64encode(os.urandom(32)).decode(),
                "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "state": "active"}

    def _create(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"format": FORMAT, "keks": [self._new_kek(1)],
                   "blind_index_key": base64.b64encode(os.urandom(32)).decode()}
        # Written whole under a name of its own, then published with link(), which refuses an existing
        # name: two processes or threads starting at once never both write a keyring, and none reads one
        # half-written (an O_EXCL create of the file itself was visible, empty, before it was filled).
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(json.dumps(payload, indent=2).encode())
                fh.flush()
                os.fsync(fh.fileno())
            os.link(tmp, self.path)
        except FileExistsError:
            pass  # another one was published first: it stands
        finally:
            tmp.unlink(missing_ok=True)

    @contextmanager
    def _update(self) -> Iterator[None]:
        """Read-modify-write under an exclusive lock on a sibling lock file, starting from the file as it
        is now: a rotation in one process and a retention run in another must not undo each other."""
        with self._lock, open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self._load(create=False)
                yield
                self._save()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _save(self) -> None:
        payload = {
            "format": FORMAT,
            "keks": [{"version": k.version, "key": base64.b64encode(k.key).decode(), "created_at": k.created_at,
                      "state": k.state, **({"period": k.period} if k.period else {})} for k in self.versions],
            "blind_index_key": base64.b64encode(self._index_key).decode(),
            **({"destroyed": [{"version": v, "period": p} for v, p in sorted(self._destroyed.items())]}
               if self._destroyed else {}),
        }
        # Write a sibling file and rename it over: a crash never leaves half a keyring.
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".keyring-")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(json.dumps(payload, indent=2).encode())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._mtime_ns = self.path.stat().st_mtime_ns

    # -- KEK management ------------------------------------------------------
    @property
    def active(self) -> Kek:
        self.refresh()
        return max((k for k in self._keks.values() if k.state == "active"), key=lambda k: k.version)

    def kek(self, version: int) -> Kek:
        if version not in self._keks:
            self.refresh()
        try:
            return self._keks[version]
        except KeyError:
            raise KeyringError(f"the keyring holds no key version {version}") from None

    @staticmethod
    def sealed_version(blob: bytes) -> int:
        """The KEK version a sealed application secret is under."""
        return _HEADER.unpack_from(blob)[1]

    @property
    def versions(self) -> list[Kek]:
        return [self._keks[v] for v in sorted(self._keks)]

    def add_kek(self) -> Kek:
        """A new active KEK; the previous active one becomes decrypt-only (retention KEKs stay as they are)."""
        with self._update():
            version = max(self._keks) + 1
            fresh = self._new_kek(version)
            keks = {v: Kek(k.version, k.key, k.created_at, "decrypt_only") if k.state == "active" else k
                    for v, k in self._keks.items()}
            keks[version] = Kek(version, base64.b64decode(fresh["key"]), fresh["created_at"], "active")
            self._keks = keks
            return keks[version]

    def retire(self, version: int) -> None:
        """Forget a decrypt-only KEK (call only when nothing is wrapped under it)."""
        with self._update():
            state = self.kek(version).state
            if state == "active":
                raise KeyringError("the active key cannot be retired")
            if state == "retention":
                raise KeyringError("a retention key is destroyed by `retention apply` when its month is over")
            self._keks = {v: k for v, k in self._keks.items() if v != version}

    # -- retention KEKs ------------------------------------------------------------
    @property
    def retention_versions(self) -> dict[int, str]:
        """Version → month of every retention KEK still held."""
        self.refresh()
        return {k.version: k.period for k in self._keks.values() if k.state == "retention" and k.period}

    def retention_kek(self, period: str) -> Kek:
        """The KEK of one month's expiring cases, created the first time it is asked for."""
        if not _PERIOD.match(period):
            raise ValueError(f"a retention period is a month like 2031-05, not {period!r}")
        found = [k for k in self._keks.values() if k.period == period]
        if not found:
            with self._update():  # re-read under the lock: another process may have just made it
                found = [k for k in self._keks.values() if k.period == period]
                if not found:
                    version = max(self._keks) + 1
                    fresh = self._new_kek(version)
                    self._keks[version] = Kek(version, base64.b64decode(fresh["key"]), fresh["created_at"],
                                              "retention", period)
                    found = [self._keks[version]]
        return found[0]

    def wrap_for_retention(self, wrapped: bytes, context: dict[str, str], period: str) -> bytes:
        """``wrapped`` rewrapped under the retention KEK of ``period`` (the data key is unchanged)."""
        kek = self.retention_kek(period)
        if self.wrapped_version(wrapped) == kek.version:
            return wrapped
        return self._wrap(kek, self.unwrap(wrapped, context), context)

    def destroy_retention_kek(self, version: int) -> str:
        """Forget a retention KEK for good; returns its month. Whatever it wrapped, in the database or in
        any backup of it, can no longer be decrypted."""
        with self._update():
            kek = self._keks.get(version)
            if kek is None or kek.state != "retention":
                raise KeyringError(f"version {version} is not a retention key")
            self._keks = {v: k for v, k in self._keks.items() if v != version}
            self._destroyed[version] = kek.period or ""
            return kek.period or ""

    @property
    def destroyed_versions(self) -> dict[int, str]:
        """Retention KEKs destroyed so far (version → month): what they wrapped was erased on purpose."""
        self.refresh()
        return dict(self._destroyed)

    # -- data keys --------------------------------------------------------------
    def _wrap(self, kek: Kek, data_key: bytes, context: dict[str, str]) -> bytes:
        header = _HEADER.pack(WRAP_VERSION, kek.version)
        nonce = os.urandom(NONCE_BYTES)
        return header + nonce + AESGCM(kek.key).encrypt(nonce, data_key, header + canonical_context(context))

    def generate_data_key(self, context: dict[str, str]) -> tuple[bytes, bytes]:
        data_key = AESGCM.generate_key(bit_length=256)
        return data_key, self._wrap(self.active, data_key, context)

    def wrapped_version(self, wrapped: bytes) -> int:
        if len(wrapped) < _HEADER.size:
            raise SealIntegrityError("wrapped key is truncated")
        return _HEADER.unpack_from(wrapped)[1]

    def unwrap(self, wrapped: bytes, context: dict[str, str]) -> bytes:
        if len(wrapped) < _HEADER.size + NONCE_BYTES + TAG_BYTES:
            raise SealIntegrityError("wrapped key is truncated")
        version, kek_version = _HEADER.unpack_from(wrapped)
        if version != WRAP_VERSION:
            raise SealIntegrityError(f"unknown wrapped-key format {version}")
        kek = self.kek(kek_version)
        header, nonce = wrapped[: _HEADER.size], wrapped[_HEADER.size : _HEADER.size + NONCE_BYTES]
        try:
            return AESGCM(kek.key).decrypt(nonce, wrapped[_HEADER.size + NONCE_BYTES :],
                                           header + canonical_context(context))
        except InvalidTag:
            raise SealIntegrityError("wrapped key failed authentication") from None

    def rewrap(self, wrapped: bytes, context: dict[str, str]) -> bytes:
        if self.wrapped_version(wrapped) == self.active.version:
            return wrapped
        return self._wrap(self.active, self.unwrap(wrapped, context), context)

    def blind_index_key(self) -> bytes:
        return self._index_key

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
        if len(sealed) < _HEADER.size + NONCE_BYTES + TAG_BYTES:
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
    """The app's key provider, loaded (or, outside production, created) once per process."""
    ring = app.extensions.get("amanat_keyring")
    if ring is None:
        ring = LocalKeyring(app.config["KEYRING_PATH"], create=app.config.get("ENV_NAME") != "production")
        app.extensions["amanat_keyring"] = ring
    return ring
