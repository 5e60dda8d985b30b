"""SDK client of the control plane: activation, heartbeat, deactivation, status, validation.

Pure Python (requests + licensing): no torch, no Django. The public contract it speaks is
docs/sdk-api.md. State lives in a directory (default ~/.config/codec-engine, or
$CODEC_ENGINE_HOME) with 0700/0600 modes; see `codec_engine.sdk.state`.
"""

from __future__ import annotations

from codec_engine.sdk.client import SdkClient, StatusReport
from codec_engine.sdk.state import SdkState, default_state_dir

__all__ = ["SdkClient", "SdkState", "StatusReport", "default_state_dir"]
