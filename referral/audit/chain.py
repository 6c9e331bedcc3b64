"""Canonical encoding and the hash of one link."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any


def canonical_fields(fields: list[str] | tuple[str, ...]) -> str:
    return json.dumps(sorted(set(fields)), separators=(",", ":"), ensure_ascii=False)


def payload(*, ts: dt.datetime, actor_id: int | None, actor_role: str | None, action: str,
            object_type: str | None, object_id: str | None, outcome: str, reason: str | None,
            source_ip: str | None, request_id: str | None, fields: str) -> bytes:
    """The bytes an event's hash covers: sorted-key compact JSON, UTF-8, microsecond UTC time."""
    doc: dict[str, Any] = {
        "ts": ts.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "actor_id": actor_id, "actor_role": actor_role, "action": action, "object_type": object_type,
        "object_id": object_id, "outcome": outcome, "reason": reason, "source_ip": source_ip,
        "request_id": request_id, "fields": json.loads(fields),
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def link_hash(prev_hash: bytes, seq: int, body: bytes) -> bytes:
    """SHA-256(previous hash ‖ sequence as 8-byte big-endian ‖ payload)."""
    return hashlib.sha256(prev_hash + seq.to_bytes(8, "big", signed=True) + body).digest()


def row_payload(row: Any) -> bytes:
    return payload(ts=row.ts, actor_id=row.actor_id, actor_role=row.actor_role, action=row.action,
                   object_type=row.object_type, object_id=row.object_id, outcome=row.outcome,
                   reason=row.reason, source_ip=row.source_ip, request_id=row.request_id, fields=row.fields)
