"""The SDK's state directory: device key, activation record, certificate, keyring and the
offline verifier's state. Directory 0700, every file 0600, every write atomic.

Layout (all under the state directory):
    device_key.pem     the device's Ed25519 private key (PKCS#8 PEM, never leaves the machine)
    activation.json    what the control plane told us (ids, licence state, heartbeat times)
    certificate        the current activation certificate (a token; also usable by the gate
                       as CODEC_ENGINE_CERTIFICATE)
    keyring.json       the control plane's public keyring (CODEC_ENGINE_KEYRING)
    revocation_list    the newest signed revocation list received
    verifier/          licensing.OfflineVerifier state: trusted time, newest revocation serial
                       (CODEC_ENGINE_STATE_DIR for the gate)
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from codec_engine.errors import NotActivatedError, SdkError

ENV_HOME = "CODEC_ENGINE_HOME"


def default_state_dir() -> Path:
    """$CODEC_ENGINE_HOME, else $XDG_CONFIG_HOME/codec-engine, else ~/.config/codec-engine."""
    home = os.environ.get(ENV_HOME)
    if home:
        return Path(home).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "codec-engine"


@dataclass
class ActivationRecord:
    """The activation as the control plane last described it (activation.json)."""

    server_url: str
    activation_id: str
    licence_id: str
    licence_key: str
    fingerprint: str
    platform: str
    hostname: str
    licence_state: str
    licence_expires_at: int
    certificate_expires_at: int
    offline_grace_s: int
    heartbeat_interval_s: int
    revocation_serial: int
    activated_at: int
    last_heartbeat_at: int | None = None
    activation_state: str = "active"
    entitlements: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, text: str, path: Path) -> ActivationRecord:
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise TypeError("not an object")
            return cls(**data)
        except (ValueError, TypeError) as exc:
            raise SdkError(
                f"SDK state {path} is corrupt ({exc}); run `codec-engine activate` again"
            ) from None


class SdkState:
    """Reads and writes the state directory (see the module docstring for its layout)."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.device_key_path = self.dir / "device_key.pem"
        self.activation_path = self.dir / "activation.json"
        self.certificate_path = self.dir / "certificate"
        self.keyring_path = self.dir / "keyring.json"
        self.revocation_path = self.dir / "revocation_list"
        self.verifier_dir = self.dir / "verifier"

    def ensure(self) -> None:
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.dir, 0o700)
        except OSError as exc:
            raise SdkError(f"cannot create the SDK state directory {self.dir}: {exc}") from None

    def write(self, path: Path, data: bytes) -> None:
        """Atomic replace with mode 0600 from the start (mkstemp), never world-readable."""
        self.ensure()
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def read_text(self, path: Path) -> str | None:
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise SdkError(f"cannot read SDK state {path}: {exc}") from None

    # --- device key ------------------------------------------------------------------------

    def load_device_key(self) -> Ed25519PrivateKey | None:
        text = self.read_text(self.device_key_path)
        if text is None:
            return None
        try:
            key = serialization.load_pem_private_key(text.encode(), password=None)
        except ValueError:
            key = None
        if not isinstance(key, Ed25519PrivateKey):
            raise SdkError(f"{self.device_key_path} is not an Ed25519 private key")
        return key

    def save_device_key(self, key: Ed25519PrivateKey) -> None:
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self.write(self.device_key_path, pem)

    # --- activation record and tokens ------------------------------------------------------

    def load_activation(self) -> ActivationRecord:
        text = self.read_text(self.activation_path)
        if text is None:
            raise NotActivatedError(
                f"this machine is not activated (no {self.activation_path}); "
                "run `codec-engine activate --licence-key ...`"
            )
        return ActivationRecord.from_json(text, self.activation_path)

    def has_activation(self) -> bool:
        return self.activation_path.exists()

    def save_activation(self, record: ActivationRecord) -> None:
        self.write(self.activation_path, json.dumps(asdict(record), indent=2).encode())

    def load_certificate(self) -> str:
        text = self.read_text(self.certificate_path)
        if text is None:
            raise NotActivatedError(f"no certificate at {self.certificate_path}; activate again")
        return text.strip()

    def save_certificate(self, token: str) -> None:
        self.write(self.certificate_path, token.encode("ascii"))

    def load_keyring_json(self) -> str:
        text = self.read_text(self.keyring_path)
        if text is None:
            raise NotActivatedError(f"no keyring at {self.keyring_path}; activate again")
        return text

    def save_keyring_json(self, text: str) -> None:
        self.write(self.keyring_path, text.encode())

    def save_revocation_list(self, token: str) -> None:
        self.write(self.revocation_path, token.encode("ascii"))

    def clear_activation(self) -> None:
        """Forget the activation and its device key (kept: keyring and verifier state, so an
        older revocation list or a rolled-back clock is still detected)."""
        for path in (self.activation_path, self.certificate_path, self.device_key_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
