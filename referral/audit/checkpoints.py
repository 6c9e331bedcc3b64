"""Signed checkpoints of the chain head, with an Ed25519 key kept outside the database.

A checkpoint stored in the database is only as good as the key that signed it:
the private key lives in a file (``REFERRAL_AUDIT_SIGNING_KEY``), and verify
uses the public half, so rewriting the tail and its checkpoints needs the key.
Someone able to drop the append-only triggers could still delete the tail *and*
the checkpoints that vouch for it, so each checkpoint is also appended to a log
file kept with the key, outside the database (``REFERRAL_AUDIT_CHECKPOINT_LOG``,
by default the key's path + ``.checkpoints.jsonl``); verify reads both.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy.orm import Session

from referral.audit.models import AuditCheckpoint, AuditHead
from referral.db import utcnow
from referral.security.keyring import KeyringError


def checkpoint_message(seq: int, head_hash: bytes, ts: dt.datetime) -> bytes:
    stamp = ts.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"amanat/audit-checkpoint/v1|{seq}|{head_hash.hex()}|{stamp}".encode()


def load_signing_key(path: str | os.PathLike[str], *, create: bool) -> Ed25519PrivateKey:
    file = Path(path)
    if not file.exists():
        if not create:
            raise KeyringError(f"audit signing key not found at {file} (REFERRAL_AUDIT_SIGNING_KEY)")
        file.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        try:
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
        except FileExistsError:
            pass
    key = serialization.load_pem_private_key(file.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyringError(f"{file} is not an Ed25519 private key")
    return key


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign_head(session: Session, private_key: Ed25519PrivateKey, *, now: dt.datetime | None = None) -> AuditCheckpoint:
    """Sign the current head (sequence, hash, time) and store the checkpoint."""
    head = session.get(AuditHead, 1)
    if head is None or head.seq == 0:
        raise KeyringError("the audit chain is empty: nothing to checkpoint")
    ts = now or utcnow()
    cp = AuditCheckpoint(seq=head.seq, hash=bytes(head.hash), ts=ts, key_id=key_id(private_key.public_key()),
                         signature=private_key.sign(checkpoint_message(head.seq, bytes(head.hash), ts)))
    session.add(cp)
    session.flush()
    return cp


class CheckpointLogError(KeyringError):
    """The checkpoint log outside the database cannot be read: verify cannot vouch for the tail."""


@dataclass(frozen=True)
class LoggedCheckpoint:
    seq: int
    hash: bytes
    ts: dt.datetime
    key_id: str
    signature: bytes


def checkpoint_log_path(config: Any) -> Path:
    return Path(config.get("AUDIT_CHECKPOINT_LOG") or f"{config['AUDIT_SIGNING_KEY_PATH']}.checkpoints.jsonl")


def append_to_log(path: Path, cp: Any) -> None:
    """One JSON line a checkpoint, written through to the disk before the checkpoint is reported."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"seq": cp.seq, "hash": bytes(cp.hash).hex(), "ts": cp.ts.astimezone(dt.UTC).isoformat(),
                       "key_id": cp.key_id, "signature": bytes(cp.signature).hex()}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_log(path: Path) -> list[LoggedCheckpoint]:
    """The checkpoints in the log (none if there is no log yet); an unreadable line is an error, not a skip."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise CheckpointLogError(f"cannot read the checkpoint log {path} ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise CheckpointLogError(f"the checkpoint log {path} is not UTF-8 text") from None
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            ts = dt.datetime.fromisoformat(raw["ts"])
            if ts.tzinfo is None:
                raise ValueError("naive time")
            out.append(LoggedCheckpoint(seq=int(raw["seq"]), hash=bytes.fromhex(raw["hash"]), ts=ts,
                                        key_id=str(raw["key_id"]), signature=bytes.fromhex(raw["signature"])))
        except (ValueError, KeyError, TypeError):
            raise CheckpointLogError(f"line {number} of the checkpoint log {path} is unreadable") from None
    return out
