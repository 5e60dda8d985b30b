"""Helpers for metering and billing tests: activations with known device keys, records,
signed batches, and ingestion at a chosen "now"."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from typing import Any

from activation.models import Activation
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from licences.models import Licence
from metering.services import BatchResult, datetime_to_ms, usage_batch_record

import licensing


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def make_activation(
    licence: Licence, key: Ed25519PrivateKey | None = None
) -> tuple[Activation, Ed25519PrivateKey]:
    """An activation row bound to a fresh device key (no HTTP round trip)."""
    key = key or Ed25519PrivateKey.generate()
    now = dt.datetime.now(dt.UTC)
    activation = Activation.objects.create(
        licence=licence,
        fingerprint="test",
        device_public_key=public_bytes(key),
        platform="linux-x86_64",
        activated_at=now,
        last_seen_at=now,
        certificate_key_id="test",
        certificate_expires_at=now + dt.timedelta(days=1),
        certificate_valid_until=now + dt.timedelta(days=2),
    )
    return activation, key


def rec(
    seq: int,
    *,
    at: dt.datetime,
    delivered: int = 400_000_000,
    baseline: int = 1_000_000_000,
    record_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": record_id or f"r-{seq}-{uuid.uuid4().hex[:8]}",
        "seq": seq,
        "event_time": datetime_to_ms(at),
        "frames": 240,
        "pixels": 240 * 1920 * 1080,
        "duration_ms": 10_000,
        "bytes_delivered": delivered,
        "baseline_bytes": baseline,
        "baseline_method": "x264-medium-crf23",
        "psnr_db": 38.5,
        "ms_ssim": 0.98,
        "vmaf": 94.0,
    }
    record.update(extra)
    return record


def batch_body(
    activation_id: Any, records: list[dict[str, Any]], batch_id: str | None = None
) -> bytes:
    doc = {
        "v": 1,
        "activation_id": str(activation_id),
        "batch_id": batch_id or f"b-{uuid.uuid4().hex[:12]}",
        "sent_at": records[0]["event_time"] if records else 0,
        "records": records,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def sign(key: Ed25519PrivateKey, body: bytes) -> bytes:
    return licensing.sign_with_device_key(key, licensing.USAGE_BATCH_PURPOSE, body)


def b64sig(signature: bytes) -> str:
    return base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


def headers(activation_id: Any, signature: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Activation-Id": str(activation_id),
        "X-Usage-Signature": b64sig(signature),
    }


def ingest(
    activation: Activation,
    key: Ed25519PrivateKey,
    records: list[dict[str, Any]],
    *,
    now: dt.datetime,
    batch_id: str | None = None,
) -> BatchResult:
    """Ingest through the service (the HTTP view calls the same) as if at `now`."""
    body = batch_body(activation.pk, records, batch_id)
    return usage_batch_record(
        activation_id=activation.pk, body=body, signature=sign(key, body), now=now
    )
