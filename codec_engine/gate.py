"""The licence gate: nothing is loaded, decoded or written before a licence covers the job.

Two credentials are accepted:
- an activation certificate (customer devices and servers): verified by the SDK's
  `OfflineVerifier` with its persisted state directory (trusted clock, newest revocation
  list), against this machine's fingerprint;
- a licence key (our own workers): verified directly, against the revocation list the
  worker was handed (or, with a state directory, the newest one seen).

Both check the signature and key, the validity window, revocation, and that the
entitlements cover this job: the feature ("encode" or "decode", "preset:max" for the max
preset), the frame size, the frame rate, the platform and the model version. Any refusal
raises `LicenceError` whose `code` is the licensing library's `Code` value. No torch here.
"""

from __future__ import annotations

import math
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

from codec_engine.errors import LicenceError

LICENCE_REQUIRED = "LICENCE_REQUIRED"
LICENCE_CONFIG = "LICENCE_CONFIG"
ENV_LICENCE_KEY = "CODEC_ENGINE_LICENCE_KEY"
ENV_CERTIFICATE = "CODEC_ENGINE_CERTIFICATE"
ENV_KEYRING = "CODEC_ENGINE_KEYRING"
ENV_STATE_DIR = "CODEC_ENGINE_STATE_DIR"
ENV_REVOCATION_LIST = "CODEC_ENGINE_REVOCATION_LIST"
ENV_FINGERPRINT_SECRET = "CODEC_ENGINE_FINGERPRINT_SECRET"  # noqa: S105 (a variable name)
MAX_CREDENTIAL_FILE = 1 << 20


@dataclass(frozen=True)
class Job:
    """What a job needs from the licence."""

    operation: str  # "encode" or "decode"
    width: int
    height: int
    fps: float
    model_version: str
    preset: str = "fast"

    def features(self) -> tuple[str, ...]:
        extra = () if self.preset == "fast" else (f"preset:{self.preset}",)
        return (self.operation, *extra)


@dataclass(frozen=True)
class Credentials:
    """Where the licence comes from; strings may be the token itself or a path to it."""

    licence_key: str | None = None
    certificate: str | None = None
    keyring: str | None = None  # keyring JSON, or a path to it
    state_dir: Path | None = None
    revocation_list: str | None = None
    fingerprint: str | None = None  # Fingerprint.to_string(); default: this machine's
    fingerprint_secret: bytes | None = None
    now: int | None = None  # for tests

    @classmethod
    def from_env(cls, **overrides: object) -> Credentials:
        """Fill unset fields from CODEC_ENGINE_* environment variables."""
        values: dict[str, object] = {
            "licence_key": os.environ.get(ENV_LICENCE_KEY),
            "certificate": os.environ.get(ENV_CERTIFICATE),
            "keyring": os.environ.get(ENV_KEYRING),
            "state_dir": Path(p) if (p := os.environ.get(ENV_STATE_DIR)) else None,
            "revocation_list": os.environ.get(ENV_REVOCATION_LIST),
            "fingerprint_secret": s.encode()
            if (s := os.environ.get(ENV_FINGERPRINT_SECRET))
            else None,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Grant:
    """A successful check: who is licensed, under which credential."""

    kind: str  # "certificate" or "licence-key"
    licence_id: str
    customer_id: str
    activation_id: str | None


def current_platform() -> str:
    machine = platform.machine().lower().replace("amd64", "x86_64").replace("aarch64", "arm64")
    return f"{sys.platform}-{machine}"


def _text(value: str, what: str) -> str:
    """A token given inline or as a path to a file holding it."""
    candidate = value.strip()
    if len(candidate) < 4096 and "\n" not in candidate:
        path = Path(candidate).expanduser()
        try:
            is_file = path.is_file()
        except OSError:  # e.g. a long token is "a file name too long": it is not a path
            is_file = False
        if is_file:
            try:
                if path.stat().st_size > MAX_CREDENTIAL_FILE:
                    raise LicenceError(f"{what} file {path} is too large", code=LICENCE_CONFIG)
                return path.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise LicenceError(
                    f"cannot read {what} {path}: {exc}", code=LICENCE_CONFIG
                ) from None
    return candidate


def check(job: Job, creds: Credentials) -> Grant:
    """Verify the licence for `job`; raise `LicenceError` (with the licensing code) if refused.

    Side effects: with a state directory, the verifier persists the trusted-time mark and
    the newest revocation list it accepted (that is what stops clock rollback and replay
    of an older list). Nothing else is written.
    """
    import licensing

    if not creds.licence_key and not creds.certificate:
        raise LicenceError(
            "no licence: pass --licence-key or --certificate "
            f"(or set {ENV_LICENCE_KEY} / {ENV_CERTIFICATE})",
            code=LICENCE_REQUIRED,
        )
    if not creds.keyring:
        raise LicenceError(
            f"no keyring of trusted licence keys (--keyring or {ENV_KEYRING})", code=LICENCE_CONFIG
        )
    require = licensing.Requirement(
        features=job.features(),
        width=job.width,
        height=job.height,
        fps=math.ceil(job.fps) if job.fps > 0 else 0,
        platform=current_platform(),
        model_version=job.model_version,
    )
    try:
        keyring = licensing.Keyring.from_json(_text(creds.keyring, "keyring"))
        revocation = (
            _text(creds.revocation_list, "revocation list") if creds.revocation_list else None
        )
        if creds.certificate:
            state_dir = creds.state_dir or Path.home() / ".codec-engine"
            verifier = licensing.OfflineVerifier(keyring, state_dir)
            if revocation:
                verifier.accept_revocation_list(revocation)
            fingerprint = creds.fingerprint
            if fingerprint is None:
                if creds.fingerprint_secret is None:
                    raise LicenceError(
                        f"no fingerprint secret ({ENV_FINGERPRINT_SECRET}) for the certificate",
                        code=LICENCE_CONFIG,
                    )
                fingerprint = licensing.machine_fingerprint(creds.fingerprint_secret).to_string()
            cert = verifier.verify_certificate(
                _text(creds.certificate, "certificate"),
                fingerprint=fingerprint,
                require=require,
                now=creds.now,
            )
            return Grant("certificate", cert.licence_id, cert.customer_id, cert.activation_id)
        token = _text(creds.licence_key or "", "licence key")
        if creds.state_dir is not None:
            verifier = licensing.OfflineVerifier(keyring, creds.state_dir)
            if revocation:
                verifier.accept_revocation_list(revocation)
            claims = verifier.verify_licence_key(token, require=require, now=creds.now)
        else:
            rl = licensing.verify_revocation_list(revocation, keyring) if revocation else None
            claims = licensing.verify_licence_key(
                token, keyring, now=creds.now, revocations=rl, require=require
            )
        return Grant("licence-key", claims.licence_id, claims.customer_id, None)
    except licensing.LicensingError as exc:
        raise LicenceError(f"licence refused: {exc}", code=exc.code.value) from None
