"""What SDK requests sign. This is part of the public contract (docs/sdk-api.md); the SDK
client (codec_engine/sdk/protocol.py) builds the same bytes.

Activation: the device signs licensing.activation_proof_message(...) with purpose
ACTIVATE_PURPOSE. Heartbeat and deactivation: the device signs the canonical JSON
`device_request_message(...)` with HEARTBEAT_PURPOSE / DEACTIVATE_PURPOSE.
"""

from __future__ import annotations

import json

import licensing

ACTIVATE_PURPOSE = licensing.ACTIVATION_PROOF_PURPOSE  # "activation-proof"
HEARTBEAT_PURPOSE = "codec-sdk/heartbeat/v1"
DEACTIVATE_PURPOSE = "codec-sdk/deactivate/v1"

# A signed request is accepted only this close to server time (limits replay; the signed
# response carries server_time so a device can correct its clock and retry).
TIMESTAMP_TOLERANCE_S = 300


def device_request_message(*, action: str, activation_id: str, timestamp: int) -> bytes:
    """Canonical JSON (sorted keys, no spaces) of what a heartbeat/deactivation signs."""
    return json.dumps(
        {"action": action, "activation_id": activation_id, "timestamp": timestamp},
        sort_keys=True,
        separators=(",", ":"),
    ).encode("ascii")
