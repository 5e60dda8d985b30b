"""The SDK client: talks to the control plane (docs/sdk-api.md) and verifies offline.

Every network failure becomes one `SdkNetworkError`; every refusal by the control plane one
`SdkServerError` (its code) or `LicenceError` (licence state). `status()` never touches the
network: a device keeps working while the control plane is down, until its certificate and
offline grace run out (fail open within grace).
"""

from __future__ import annotations

import base64
import json
import os
import platform as stdlib_platform
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import licensing
from codec_engine.errors import (
    LicenceError,
    SdkError,
    SdkNetworkError,
    SdkServerError,
)
from codec_engine.sdk import protocol
from codec_engine.sdk.state import ActivationRecord, SdkState, default_state_dir

ENV_SERVER = "CODEC_ENGINE_SERVER"
ENV_FINGERPRINT = "CODEC_ENGINE_FINGERPRINT"  # a fixed fingerprint string (containers, tests)
ENV_FINGERPRINT_SECRET = "CODEC_ENGINE_FINGERPRINT_SECRET"  # noqa: S105 (a variable name)
# The product-wide secret keying machine fingerprints (not a credential: it only makes our
# fingerprints unlinkable to other vendors'). The licence gate uses the same variable.
DEFAULT_FINGERPRINT_SECRET = b"ncodec-sdk-fingerprint-v1"
_RETRY_STATUSES = {502, 503, 504}
_LICENCE_STATE_CODES = {"LICENCE_SUSPENDED", "LICENCE_REVOKED", "LICENCE_EXPIRED"}


def current_platform() -> str:
    """e.g. linux-x86_64, darwin-arm64 (the same spelling as the licence gate)."""
    machine = stdlib_platform.machine().lower().replace("amd64", "x86_64")
    return f"{sys.platform}-{machine.replace('aarch64', 'arm64')}"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class StatusReport:
    """What `status` found, offline."""

    ok: bool
    code: str
    message: str
    activation_id: str
    licence_id: str
    server_url: str
    licence_state: str
    activation_state: str
    last_heartbeat_at: int | None
    certificate_expires_at: int
    grace_until: int
    in_grace: bool
    now: int
    revocation_serial: int
    entitlements: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class SdkClient:
    def __init__(
        self,
        *,
        state_dir: Path | None = None,
        server_url: str | None = None,
        timeout_s: float = 10.0,
        retries: int = 2,
        session: requests.Session | None = None,
        fingerprint: str | None = None,
        fingerprint_secret: bytes | None = None,
    ) -> None:
        self.state = SdkState(state_dir or default_state_dir())
        self._server_url = server_url or os.environ.get(ENV_SERVER) or None
        self.timeout_s = timeout_s
        self.retries = max(0, retries)
        self.session = session or requests.Session()
        self._fingerprint = fingerprint or os.environ.get(ENV_FINGERPRINT) or None
        secret = os.environ.get(ENV_FINGERPRINT_SECRET)
        self._fingerprint_secret = fingerprint_secret or (
            secret.encode() if secret else DEFAULT_FINGERPRINT_SECRET
        )

    # --- helpers ---------------------------------------------------------------------------

    def fingerprint(self) -> str:
        if self._fingerprint:
            try:
                return licensing.Fingerprint.from_string(self._fingerprint).to_string()
            except licensing.LicensingError as exc:
                raise SdkError(f"{ENV_FINGERPRINT} is not a fingerprint: {exc}") from None
        return licensing.machine_fingerprint(self._fingerprint_secret).to_string()

    def server_url(self) -> str:
        url = self._server_url
        if not url and self.state.has_activation():
            url = self.state.load_activation().server_url
        if not url:
            raise SdkError(f"no control-plane URL: pass --server or set {ENV_SERVER}")
        return url.rstrip("/")

    def _request(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, base: str | None = None
    ) -> Any:
        """JSON request with a few retries on connection failures and 502/503/504."""
        url = (base or self.server_url()) + path
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(4.0, 0.5 * 2 ** (attempt - 1)))
            try:
                response = self.session.request(method, url, json=body, timeout=self.timeout_s)
            except requests.RequestException as exc:
                last = f"{type(exc).__name__}"
                continue
            if response.status_code in _RETRY_STATUSES:
                last = f"HTTP {response.status_code}"
                continue
            try:
                data = response.json()
            except ValueError:
                raise SdkNetworkError(
                    f"the control plane at {url} answered HTTP {response.status_code} "
                    "without JSON (a proxy in the way?)"
                ) from None
            if response.status_code >= 400:
                error = data.get("error") if isinstance(data, dict) else None
                if not isinstance(error, dict):
                    raise SdkNetworkError(f"unexpected error response from {url}")
                code = str(error.get("code", "ERROR"))
                message = str(error.get("message", ""))
                retry_after = response.headers.get("Retry-After")
                if retry_after:
                    message += f" (retry after {retry_after} s)"
                raise SdkServerError(
                    message, code=code, status=response.status_code, details=error.get("details")
                )
            return data
        raise SdkNetworkError(f"cannot reach the control plane at {url} ({last})")

    def _keyring(self, *, base: str | None = None, refresh: bool) -> licensing.Keyring:
        if refresh:
            response = self._request("GET", protocol.KEYRING_PATH, base=base)
            text = _json_text(response)
            keyring = _parse_keyring(text)
            self.state.save_keyring_json(text)
            return keyring
        return _parse_keyring(self.state.load_keyring_json())

    def _verifier(self, keyring: licensing.Keyring) -> licensing.OfflineVerifier:
        try:
            return licensing.OfflineVerifier(keyring, self.state.verifier_dir)
        except licensing.LicensingError as exc:
            raise LicenceError(str(exc), code=exc.code.value) from None

    def _adopt(
        self,
        grant: dict[str, Any],
        *,
        keyring: licensing.Keyring,
        key: Ed25519PrivateKey,
        record: ActivationRecord,
    ) -> ActivationRecord:
        """Check a certificate grant offline, then persist it."""
        verifier = self._verifier(keyring)
        try:
            token = str(grant["certificate"])
            revocation_token = str(grant["revocation_list"]["token"])
            try:
                verifier.accept_revocation_list(revocation_token)
                self.state.save_revocation_list(revocation_token)
            except licensing.LicensingError as exc:
                # An older list than one we already hold: keep ours (anti-rollback).
                if exc.code != licensing.Code.STALE_REVOCATION_LIST:
                    raise
            claims = verifier.verify_certificate(token, fingerprint=record.fingerprint)
        except (KeyError, TypeError) as exc:
            raise SdkNetworkError(f"malformed answer from the control plane ({exc})") from None
        except licensing.LicensingError as exc:
            raise LicenceError(
                f"the control plane sent a certificate that does not verify: {exc}",
                code=exc.code.value,
            ) from None
        if claims.device_public_key != _public_bytes(key):
            raise LicenceError(
                "the certificate is bound to another device key", code="BAD_SIGNATURE"
            )
        licence = grant["licence"]
        record.activation_id = claims.activation_id
        record.licence_id = claims.licence_id
        record.licence_state = str(licence["state"])
        record.activation_state = "active"
        record.licence_expires_at = int(licence["expires_at"])
        record.entitlements = dict(licence["entitlements"])
        record.certificate_expires_at = claims.expires_at
        record.offline_grace_s = claims.offline_grace_s
        record.heartbeat_interval_s = int(grant["heartbeat_interval_s"])
        record.revocation_serial = int(grant["revocation_serial"])
        self.state.save_certificate(token)
        self.state.save_activation(record)
        return record

    # --- operations ------------------------------------------------------------------------

    def activate(
        self, licence_key: str, *, hostname: str | None = None, platform: str | None = None
    ) -> ActivationRecord:
        """Activate this machine: make (or re-use) the device key, prove possession, store
        the certificate. Re-activating the same machine re-uses its seat."""
        licence_key = licence_key.strip()
        base = self.server_url()
        keyring = self._keyring(base=base, refresh=True)
        try:
            licensing.verify_licence_key(licence_key, keyring)
        except licensing.LicensingError as exc:
            raise LicenceError(
                f"the licence key is not valid: {exc}", code=exc.code.value
            ) from None
        key = self.state.load_device_key()
        if key is None:
            key = Ed25519PrivateKey.generate()
            # Persisted before the request: a crash after the server answers keeps the key.
            self.state.save_device_key(key)
        fingerprint = self.fingerprint()
        platform = platform or current_platform()
        hostname = (hostname if hostname is not None else socket.gethostname())[:255]

        def body(timestamp: int) -> dict[str, Any]:
            message = licensing.activation_proof_message(
                licence_key=licence_key,
                fingerprint=fingerprint,
                device_public_key=_public_bytes(key),
                timestamp=timestamp,
            )
            signature = licensing.sign_with_device_key(
                key, licensing.ACTIVATION_PROOF_PURPOSE, message
            )
            return {
                "licence_key": licence_key,
                "fingerprint": fingerprint,
                "device_public_key": _b64(_public_bytes(key)),
                "platform": platform,
                "hostname": hostname,
                "timestamp": timestamp,
                "signature": _b64(signature),
            }

        grant = self._signed(protocol.ACTIVATE_PATH, body, base=base)
        record = ActivationRecord(
            server_url=base,
            activation_id="",
            licence_id="",
            licence_key=licence_key,
            fingerprint=fingerprint,
            platform=platform,
            hostname=hostname,
            licence_state="",
            licence_expires_at=0,
            certificate_expires_at=0,
            offline_grace_s=0,
            heartbeat_interval_s=0,
            revocation_serial=0,
            activated_at=int(grant.get("server_time", time.time())),
        )
        return self._adopt(grant, keyring=keyring, key=key, record=record)

    def _signed(
        self, path: str, body: Callable[[int], dict[str, Any]], *, base: str | None = None
    ) -> dict[str, Any]:
        """POST a body signed at `timestamp`; on CLOCK_SKEW retry once at the server's time."""
        try:
            result = self._request("POST", path, body(int(time.time())), base=base)
        except SdkServerError as exc:
            details = exc.details if isinstance(exc.details, dict) else {}
            if exc.code != "CLOCK_SKEW" or not isinstance(details.get("server_time"), int):
                raise
            result = self._request("POST", path, body(int(details["server_time"])), base=base)
        if not isinstance(result, dict):
            raise SdkNetworkError("malformed answer from the control plane")
        return result

    def _device_key(self) -> Ed25519PrivateKey:
        key = self.state.load_device_key()
        if key is None:
            raise SdkError(
                f"the device key {self.state.device_key_path} is missing; activate again"
            )
        return key

    def heartbeat(self) -> ActivationRecord:
        """Renew the certificate and learn the licence state. A suspended/revoked/expired
        licence raises LicenceError (the state is recorded, so `status` reports it too)."""
        record = self.state.load_activation()
        key = self._device_key()
        keyring = self._keyring(refresh=True)

        def body(timestamp: int) -> dict[str, Any]:
            message = protocol.device_request_message(
                action="heartbeat", activation_id=record.activation_id, timestamp=timestamp
            )
            signature = licensing.sign_with_device_key(key, protocol.HEARTBEAT_PURPOSE, message)
            return {
                "activation_id": record.activation_id,
                "timestamp": timestamp,
                "signature": _b64(signature),
            }

        try:
            grant = self._signed(protocol.HEARTBEAT_PATH, body)
        except SdkServerError as exc:
            details = exc.details if isinstance(exc.details, dict) else {}
            if exc.code == "ACTIVATION_INACTIVE" and details.get("activation_state") == "released":
                # The seat was freed while we were offline: take one again (same machine/key).
                return self.activate(record.licence_key, hostname=record.hostname)
            if exc.code in _LICENCE_STATE_CODES:
                record.licence_state = str(details.get("licence_state") or exc.code)
            elif exc.code == "ACTIVATION_INACTIVE":
                record.activation_state = str(details.get("activation_state") or "inactive")
            else:
                raise
            self.state.save_activation(record)
            self._refresh_revocations(keyring)
            raise LicenceError(f"heartbeat refused: {exc}", code=exc.code) from None
        record = self._adopt(grant, keyring=keyring, key=key, record=record)
        record.last_heartbeat_at = int(grant.get("server_time", time.time()))
        self.state.save_activation(record)
        return record

    def _refresh_revocations(self, keyring: licensing.Keyring) -> None:
        """Best effort: adopt the newest revocation list (a refused heartbeat points to it)."""
        try:
            body = self._request("GET", protocol.REVOCATIONS_PATH)
            token = str(body["token"])
            self._verifier(keyring).accept_revocation_list(token)
            self.state.save_revocation_list(token)
        except (SdkError, LicenceError, licensing.LicensingError, KeyError, TypeError):
            pass

    def deactivate(self) -> str:
        """Free this machine's seat and forget the activation. Returns the activation id."""
        record = self.state.load_activation()
        key = self._device_key()

        def body(timestamp: int) -> dict[str, Any]:
            message = protocol.device_request_message(
                action="deactivate", activation_id=record.activation_id, timestamp=timestamp
            )
            signature = licensing.sign_with_device_key(key, protocol.DEACTIVATE_PURPOSE, message)
            return {
                "activation_id": record.activation_id,
                "timestamp": timestamp,
                "signature": _b64(signature),
            }

        try:
            self._signed(protocol.DEACTIVATE_PATH, body)
        except SdkServerError as exc:
            # Already ended server-side (released, revoked): nothing left to free here either.
            if exc.code != "ACTIVATION_INACTIVE":
                raise
        self.state.clear_activation()
        return record.activation_id

    def validate(self, licence_key: str, *, with_fingerprint: bool = True) -> dict[str, Any]:
        """Online check of a licence key (and that this machine holds an activation)."""
        body: dict[str, Any] = {"licence_key": licence_key.strip()}
        if with_fingerprint:
            body["fingerprint"] = self.fingerprint()
        result = self._request("POST", protocol.VALIDATE_PATH, body)
        if not isinstance(result, dict):
            raise SdkNetworkError("malformed answer from the control plane")
        return result

    def status(self, *, now: int | None = None) -> StatusReport:
        """Verify the stored certificate offline (keyring, trusted clock, newest revocation
        list, this machine's fingerprint). Never uses the network."""
        record = self.state.load_activation()
        certificate = self.state.load_certificate()
        keyring = _parse_keyring(self.state.load_keyring_json())
        now_ts = int(time.time()) if now is None else now
        code, message = "VALID", "the certificate is valid"
        try:
            self._verifier(keyring).verify_certificate(
                certificate, fingerprint=self.fingerprint(), now=now_ts
            )
        except licensing.LicensingError as exc:
            code, message = exc.code.value, str(exc)
        except LicenceError as exc:
            code, message = exc.code, str(exc)
        if code == "VALID" and record.licence_state not in ("active", ""):
            code = f"LICENCE_{record.licence_state.upper()}"
            message = f"the control plane reported the licence {record.licence_state}"
        elif code == "VALID" and record.activation_state != "active":
            code = "ACTIVATION_INACTIVE"
            message = f"the control plane reported the activation {record.activation_state}"
        grace_until = record.certificate_expires_at + record.offline_grace_s
        return StatusReport(
            ok=code == "VALID",
            code=code,
            message=message,
            activation_id=record.activation_id,
            licence_id=record.licence_id,
            server_url=record.server_url,
            licence_state=record.licence_state,
            activation_state=record.activation_state,
            last_heartbeat_at=record.last_heartbeat_at,
            certificate_expires_at=record.certificate_expires_at,
            grace_until=grace_until,
            in_grace=code == "VALID" and now_ts > record.certificate_expires_at,
            now=now_ts,
            revocation_serial=record.revocation_serial,
            entitlements=record.entitlements,
        )


def _json_text(data: Any) -> str:
    return json.dumps(data)


def _parse_keyring(text: str) -> licensing.Keyring:
    try:
        return licensing.Keyring.from_json(text)
    except licensing.LicensingError as exc:
        raise SdkNetworkError(f"the keyring is not valid: {exc}") from None
