"""What SDK requests sign (mirrors platform/activation/protocol.py; see docs/sdk-api.md).

Activation signs licensing.activation_proof_message(...) with licensing's
ACTIVATION_PROOF_PURPOSE. Heartbeat and deactivation sign `device_request_message(...)`.
"""

from __future__ import annotations

import json

HEARTBEAT_PURPOSE = "codec-sdk/heartbeat/v1"
DEACTIVATE_PURPOSE = "codec-sdk/deactivate/v1"

ACTIVATE_PATH = "/api/v1/sdk/activate"
HEARTBEAT_PATH = "/api/v1/sdk/heartbeat"
DEACTIVATE_PATH = "/api/v1/sdk/deactivate"
VALIDATE_PATH = "/api/v1/sdk/validate"
REVOCATIONS_PATH = "/api/v1/sdk/revocations"
KEYRING_PATH = "/.well-known/codec-licensing/keyring.json"


def device_request_message(*, action: str, activation_id: str, timestamp: int) -> bytes:
    """Canonical JSON (sorted keys, no spaces, ASCII) that a heartbeat/deactivation signs."""
    return json.dumps(
        {"action": action, "activation_id": activation_id, "timestamp": timestamp},
        sort_keys=True,
        separators=(",", ":"),
    ).encode("ascii")
