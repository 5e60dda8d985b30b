"""Claims carried by the three artifacts, and the entitlement check.

The dataclasses are plain values: they hold what was signed (or is about to be) and do no I/O.
`to_dict` / `from_dict` give a JSON-ready form (used by the CLI's claims files, `inspect_token`
and the control plane); `from_dict` is strict (unknown or mistyped fields are MALFORMED).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from licensing._binary import MAX_U32, b64url_decode, b64url_encode, malformed
from licensing.errors import Code, LicensingError

DEFAULT_CERTIFICATE_VALIDITY_S = 30 * 86_400


def _int(data: Mapping[str, Any], name: str, default: int | None = None) -> int:
    if name not in data:
        if default is None:
            raise malformed(f"claim {name!r} is required")
        return default
    value = data[name]
    # bool is an int subclass; a JSON true must not pass for 1.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_U32:
        raise malformed(f"claim {name!r} must be an integer from 0 to {MAX_U32}")
    return value


def _str(data: Mapping[str, Any], name: str, default: str | None = None) -> str:
    if name not in data:
        if default is None:
            raise malformed(f"claim {name!r} is required")
        return default
    value = data[name]
    if not isinstance(value, str):
        raise malformed(f"claim {name!r} must be a string")
    return value


def _strs(data: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = data.get(name, [])
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise malformed(f"claim {name!r} must be a list of strings")
    if len(set(value)) != len(value):
        raise malformed(f"claim {name!r} holds the same value twice")
    return tuple(value)


def _mapping(data: object, what: str, allowed: Iterable[str]) -> Mapping[str, Any]:
    if not isinstance(data, Mapping) or not all(isinstance(k, str) for k in data):
        raise malformed(f"{what} must be a JSON object")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise malformed(f"{what} has unknown field(s): {', '.join(unknown)}")
    return data


@dataclass(frozen=True, slots=True)
class Entitlements:
    """What a licence allows. Zero limits and empty lists mean "unlimited" / "any"."""

    features: tuple[str, ...] = ()
    max_width: int = 0
    max_height: int = 0
    max_fps: int = 0
    max_activations: int = 0
    platforms: tuple[str, ...] = ()
    model_versions: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "max_width": self.max_width,
            "max_height": self.max_height,
            "max_fps": self.max_fps,
            "max_activations": self.max_activations,
            "platforms": list(self.platforms),
            "model_versions": list(self.model_versions),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Entitlements:
        data = _mapping(d, "entitlements", _ENTITLEMENT_FIELDS)
        return cls(
            features=_strs(data, "features"),
            max_width=_int(data, "max_width", 0),
            max_height=_int(data, "max_height", 0),
            max_fps=_int(data, "max_fps", 0),
            max_activations=_int(data, "max_activations", 0),
            platforms=_strs(data, "platforms"),
            model_versions=_strs(data, "model_versions"),
        )

    def missing(self, require: Requirement) -> list[str]:
        """Readable reasons why `require` is not covered; empty when it is."""
        reasons = [f"feature {f!r}" for f in require.features if f not in self.features]
        for label, needed, limit in (
            ("width", require.width, self.max_width),
            ("height", require.height, self.max_height),
            ("fps", require.fps, self.max_fps),
        ):
            if limit and needed > limit:
                reasons.append(f"{label} {needed} > {limit}")
        if (
            require.platform is not None
            and self.platforms
            and require.platform not in self.platforms
        ):
            reasons.append(f"platform {require.platform!r}")
        if (
            require.model_version is not None
            and self.model_versions
            and require.model_version not in self.model_versions
        ):
            reasons.append(f"model version {require.model_version!r}")
        return reasons

    def covers(self, require: Requirement) -> bool:
        return not self.missing(require)


_ENTITLEMENT_FIELDS = (
    "features",
    "max_width",
    "max_height",
    "max_fps",
    "max_activations",
    "platforms",
    "model_versions",
)


@dataclass(frozen=True, slots=True)
class Requirement:
    """What a job needs; zero / None means "does not matter"."""

    features: tuple[str, ...] = ()
    width: int = 0
    height: int = 0
    fps: int = 0
    platform: str | None = None
    model_version: str | None = None


def check_entitlements(entitlements: Entitlements, require: Requirement) -> None:
    """Raise ENTITLEMENT_MISSING naming what `require` needs beyond `entitlements`."""
    reasons = entitlements.missing(require)
    if reasons:
        raise LicensingError(Code.ENTITLEMENT_MISSING, "not entitled: " + ", ".join(reasons))


@dataclass(frozen=True, slots=True)
class LicenceClaims:
    licence_id: str
    customer_id: str
    product: str
    entitlements: Entitlements
    issued_at: int
    not_before: int
    expires_at: int
    offline_grace_s: int
    key_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "licence_id": self.licence_id,
            "customer_id": self.customer_id,
            "product": self.product,
            "entitlements": self.entitlements.to_dict(),
            "issued_at": self.issued_at,
            "not_before": self.not_before,
            "expires_at": self.expires_at,
            "offline_grace_s": self.offline_grace_s,
            "key_id": self.key_id,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LicenceClaims:
        data = _mapping(d, "licence claims", _LICENCE_FIELDS)
        return cls(
            licence_id=_str(data, "licence_id"),
            customer_id=_str(data, "customer_id"),
            product=_str(data, "product"),
            entitlements=Entitlements.from_dict(data.get("entitlements", {})),
            issued_at=_int(data, "issued_at"),
            not_before=_int(data, "not_before"),
            expires_at=_int(data, "expires_at"),
            offline_grace_s=_int(data, "offline_grace_s"),
            key_id=_str(data, "key_id", ""),
        )


_LICENCE_FIELDS = (
    "licence_id",
    "customer_id",
    "product",
    "entitlements",
    "issued_at",
    "not_before",
    "expires_at",
    "offline_grace_s",
    "key_id",
)


@dataclass(frozen=True, slots=True)
class CertificateClaims:
    """Activation certificate: binds an activation (machine + device key) to a licence."""

    licence_id: str
    activation_id: str
    customer_id: str
    fingerprint: str
    device_public_key: bytes
    entitlements: Entitlements
    issued_at: int
    not_before: int
    expires_at: int
    offline_grace_s: int
    key_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "licence_id": self.licence_id,
            "activation_id": self.activation_id,
            "customer_id": self.customer_id,
            "fingerprint": self.fingerprint,
            "device_public_key": b64url_encode(self.device_public_key),
            "entitlements": self.entitlements.to_dict(),
            "issued_at": self.issued_at,
            "not_before": self.not_before,
            "expires_at": self.expires_at,
            "offline_grace_s": self.offline_grace_s,
            "key_id": self.key_id,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CertificateClaims:
        data = _mapping(d, "certificate claims", _CERTIFICATE_FIELDS)
        public_key = b64url_decode(_str(data, "device_public_key"))
        if len(public_key) != 32:
            raise malformed("claim 'device_public_key' must be 32 bytes (base64url)")
        return cls(
            licence_id=_str(data, "licence_id"),
            activation_id=_str(data, "activation_id"),
            customer_id=_str(data, "customer_id"),
            fingerprint=_str(data, "fingerprint"),
            device_public_key=public_key,
            entitlements=Entitlements.from_dict(data.get("entitlements", {})),
            issued_at=_int(data, "issued_at"),
            not_before=_int(data, "not_before"),
            expires_at=_int(data, "expires_at"),
            offline_grace_s=_int(data, "offline_grace_s"),
            key_id=_str(data, "key_id", ""),
        )

    @classmethod
    def for_activation(
        cls,
        licence: LicenceClaims,
        *,
        activation_id: str,
        fingerprint: str,
        device_public_key: bytes,
        now: int,
        validity_s: int = DEFAULT_CERTIFICATE_VALIDITY_S,
    ) -> CertificateClaims:
        """Certificate claims for a new activation or a heartbeat renewal: a snapshot of the
        licence's entitlements, valid `validity_s` from `now` but never past the licence."""
        return cls(
            licence_id=licence.licence_id,
            activation_id=activation_id,
            customer_id=licence.customer_id,
            fingerprint=fingerprint,
            device_public_key=device_public_key,
            entitlements=licence.entitlements,
            issued_at=now,
            not_before=now,
            expires_at=min(now + validity_s, licence.expires_at),
            offline_grace_s=licence.offline_grace_s,
        )


_CERTIFICATE_FIELDS = (
    "licence_id",
    "activation_id",
    "customer_id",
    "fingerprint",
    "device_public_key",
    "entitlements",
    "issued_at",
    "not_before",
    "expires_at",
    "offline_grace_s",
    "key_id",
)


@dataclass(frozen=True, slots=True)
class RevocationList:
    """Signed list of revoked ids; `serial` only ever grows (see OfflineVerifier)."""

    serial: int
    issued_at: int
    licence_ids: frozenset[str]
    activation_ids: frozenset[str]
    key_id: str = ""

    def is_revoked(
        self, *, licence_id: str | None = None, activation_id: str | None = None
    ) -> bool:
        return (licence_id is not None and licence_id in self.licence_ids) or (
            activation_id is not None and activation_id in self.activation_ids
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "serial": self.serial,
            "issued_at": self.issued_at,
            "licence_ids": sorted(self.licence_ids, key=_utf8),
            "activation_ids": sorted(self.activation_ids, key=_utf8),
            "key_id": self.key_id,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RevocationList:
        data = _mapping(d, "revocation list", _REVOCATION_FIELDS)
        return cls(
            serial=_int(data, "serial"),
            issued_at=_int(data, "issued_at"),
            licence_ids=frozenset(_strs(data, "licence_ids")),
            activation_ids=frozenset(_strs(data, "activation_ids")),
            key_id=_str(data, "key_id", ""),
        )


_REVOCATION_FIELDS = ("serial", "issued_at", "licence_ids", "activation_ids", "key_id")


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")
