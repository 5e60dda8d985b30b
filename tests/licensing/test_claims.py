"""Claims as dictionaries (claims files, inspect, the control plane) and entitlement checks."""

from __future__ import annotations

from typing import Any

import pytest

from licensing import (
    CertificateClaims,
    Code,
    Entitlements,
    LicenceClaims,
    LicensingError,
    Requirement,
    RevocationList,
    check_entitlements,
)
from tests.licensing import make_vectors as mv


def test_dict_round_trips() -> None:
    assert Entitlements.from_dict(mv.ENTITLEMENTS.to_dict()) == mv.ENTITLEMENTS
    assert LicenceClaims.from_dict(mv.LICENCE.to_dict()) == mv.LICENCE
    assert CertificateClaims.from_dict(mv.CERTIFICATE.to_dict()) == mv.CERTIFICATE
    assert RevocationList.from_dict(mv.REVOCATIONS.to_dict()) == mv.REVOCATIONS


def test_defaults_for_optional_fields() -> None:
    assert Entitlements.from_dict({}) == Entitlements()
    data = mv.LICENCE.to_dict()
    del data["key_id"], data["entitlements"]
    claims = LicenceClaims.from_dict(data)
    assert claims.key_id == "" and claims.entitlements == Entitlements()


def test_revocation_dict_is_sorted() -> None:
    rl = RevocationList(1, 2, frozenset({"b", "a", "é"}), frozenset())
    assert rl.to_dict()["licence_ids"] == ["a", "b", "é"]


def bad(data: Any) -> dict[str, Any]:
    return data  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("cls", "data", "fragment"),
    [
        (Entitlements, [], "JSON object"),
        (Entitlements, {1: 2}, "JSON object"),
        (Entitlements, {"colour": "red"}, "unknown field"),
        (Entitlements, {"features": "encode"}, "list of strings"),
        (Entitlements, {"features": ["a", "a"]}, "twice"),
        (Entitlements, {"max_fps": True}, "integer"),
        (Entitlements, {"max_fps": -1}, "integer"),
        (Entitlements, {"max_fps": 2**32}, "integer"),
        (Entitlements, {"max_fps": 1.0}, "integer"),
        (LicenceClaims, {**mv.LICENCE.to_dict(), "licence_id": 5}, "string"),
        (
            LicenceClaims,
            {k: v for k, v in mv.LICENCE.to_dict().items() if k != "expires_at"},
            "required",
        ),
        (
            LicenceClaims,
            {k: v for k, v in mv.LICENCE.to_dict().items() if k != "product"},
            "required",
        ),
        (CertificateClaims, {**mv.CERTIFICATE.to_dict(), "device_public_key": "AAAA"}, "32 bytes"),
        (CertificateClaims, {**mv.CERTIFICATE.to_dict(), "device_public_key": "A+"}, "base64url"),
        (RevocationList, {"serial": 1, "issued_at": 1, "licence_ids": [1]}, "list of strings"),
    ],
)
def test_from_dict_is_strict(cls: Any, data: Any, fragment: str) -> None:
    with pytest.raises(LicensingError) as info:
        cls.from_dict(data)
    assert info.value.code is Code.MALFORMED
    assert fragment in info.value.message


@pytest.mark.parametrize(
    ("require", "missing"),
    [
        (Requirement(), []),
        (Requirement(features=("encode", "decode")), []),
        (Requirement(features=("encode", "preset:max")), ["feature 'preset:max'"]),
        (Requirement(width=3840, height=2160, fps=60), []),
        (Requirement(width=3841), ["width 3841 > 3840"]),
        (Requirement(height=2161, fps=61), ["height 2161 > 2160", "fps 61 > 60"]),
        (Requirement(platform="android-arm64", model_version="msh-v1"), []),
        (Requirement(platform="ios-arm64"), ["platform 'ios-arm64'"]),
        (Requirement(model_version="msh-v9"), ["model version 'msh-v9'"]),
    ],
)
def test_entitlement_coverage(require: Requirement, missing: list[str]) -> None:
    assert mv.ENTITLEMENTS.missing(require) == missing
    assert mv.ENTITLEMENTS.covers(require) is (not missing)
    if missing:
        with pytest.raises(LicensingError) as info:
            check_entitlements(mv.ENTITLEMENTS, require)
        assert info.value.code is Code.ENTITLEMENT_MISSING
    else:
        check_entitlements(mv.ENTITLEMENTS, require)


def test_zero_limits_and_empty_lists_mean_unlimited() -> None:
    anything = Requirement(
        features=(), width=10_000, height=10_000, fps=1000, platform="x", model_version="y"
    )
    assert Entitlements().covers(anything)
    assert not Entitlements().covers(Requirement(features=("encode",)))
