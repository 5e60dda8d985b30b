"""SDK-side offline verification: trusted clock, grace, persisted revocation serial."""

from __future__ import annotations

import json
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from licensing import (
    Code,
    Keyring,
    LicensingError,
    OfflineVerifier,
    Requirement,
    SigningKey,
    TrustedClock,
    issue_certificate,
    issue_licence_key,
    issue_revocation_list,
)
from licensing import offline as offline_module
from tests.licensing import make_vectors as mv

NOW = mv.NOW
SKEW = 300


def code_of(call: object) -> Code:
    assert callable(call)
    try:
        call()
    except LicensingError as exc:
        return exc.code
    return Code.VALID


# ---------------------------------------------------------------------------- TrustedClock


def test_clock_persists_the_high_water_mark(tmp_path: Path) -> None:
    path = tmp_path / "clock.json"
    clock = TrustedClock(path, tolerance_s=SKEW)
    assert clock.high_water == 0 and clock.tolerance_s == SKEW
    assert clock.check(NOW) == NOW
    clock.observe(NOW)
    clock.observe(NOW - 1000)  # never lowers the mark
    assert clock.high_water == NOW
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"format": 1, "high_water": NOW}
    again = TrustedClock(path, tolerance_s=SKEW)
    assert again.high_water == NOW
    assert again.check(NOW - SKEW) == NOW - SKEW  # within tolerance
    with pytest.raises(LicensingError) as info:
        again.check(NOW - SKEW - 1)
    assert info.value.code is Code.CLOCK_ROLLBACK
    assert "behind trusted time" in info.value.message
    assert isinstance(again.check(), int)  # the system clock is far past 2026-01-01


def test_clock_merges_a_mark_raised_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "clock.json"
    first, second = TrustedClock(path), TrustedClock(path)
    first.observe(NOW + 100)
    second.observe(NOW + 50)
    assert second.high_water == NOW + 100
    assert TrustedClock(path).high_water == NOW + 100


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        '{"high_water": 5}',
        '{"format": 2, "high_water": 5}',
        '{"format": 1, "high_water": -5}',
        '{"format": 1, "high_water": "5"}',
        '{"format": 1, "high_water": 5, "extra": 1}',
    ],
)
def test_corrupt_clock_state_is_reported(tmp_path: Path, content: str) -> None:
    path = tmp_path / "clock.json"
    path.write_text(content)
    with pytest.raises(LicensingError) as info:
        TrustedClock(path)
    assert info.value.code is Code.MALFORMED
    assert "corrupt" in info.value.message


def test_unreadable_clock_state(tmp_path: Path) -> None:
    with pytest.raises(LicensingError, match="cannot read"):
        TrustedClock(tmp_path)  # a directory


@pytest.mark.parametrize("bad", [-1, True, "5"])
def test_clock_argument_checks(tmp_path: Path, bad: object) -> None:
    with pytest.raises(LicensingError):
        TrustedClock(tmp_path / "c.json", tolerance_s=bad)  # type: ignore[arg-type]
    clock = TrustedClock(tmp_path / "c.json")
    with pytest.raises(LicensingError):
        clock.observe(bad)  # type: ignore[arg-type]
    if bad != -1:
        with pytest.raises(LicensingError):
            clock.check(bad)  # type: ignore[arg-type]


def test_failed_write_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*_: object) -> None:
        raise OSError("disk full")

    clock = TrustedClock(tmp_path / "clock.json")
    monkeypatch.setattr(offline_module.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        clock.observe(NOW)
    assert list(tmp_path.iterdir()) == []
    assert clock.high_water == 0


# ---------------------------------------------------------------------------- OfflineVerifier


@pytest.fixture
def verifier(tmp_path: Path, keyring: Keyring) -> OfflineVerifier:
    return OfflineVerifier(keyring, tmp_path / "state", skew_s=SKEW)


def test_state_directory_is_private(verifier: OfflineVerifier, tmp_path: Path) -> None:
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    assert verifier.min_serial == 0 and verifier.revocations is None


def test_certificate_offline_with_grace(verifier: OfflineVerifier, certificate_token: str) -> None:
    fp = mv.FINGERPRINT
    claims = verifier.verify_certificate(certificate_token, fingerprint=fp, now=NOW)
    assert verifier.clock.high_water == claims.issued_at
    expired_at = claims.expires_at + SKEW
    # Fail open inside the grace, closed after it.
    assert verifier.verify_certificate(certificate_token, fingerprint=fp, now=expired_at)
    last = expired_at + mv.GRACE - 1
    assert verifier.verify_certificate(certificate_token, fingerprint=fp.to_string(), now=last)
    assert (
        code_of(
            lambda: verifier.verify_certificate(certificate_token, fingerprint=fp, now=last + 1)
        )
        is Code.EXPIRED
    )
    assert (
        code_of(
            lambda: verifier.verify_certificate(
                certificate_token, fingerprint=mv.TWO_CHANGED, now=NOW
            )
        )
        is Code.FINGERPRINT_MISMATCH
    )
    assert (
        code_of(
            lambda: verifier.verify_certificate(
                certificate_token, fingerprint=fp, require=Requirement(fps=240), now=NOW
            )
        )
        is Code.ENTITLEMENT_MISSING
    )


def test_licence_key_offline(verifier: OfflineVerifier, licence_token: str) -> None:
    assert verifier.verify_licence_key(licence_token, now=NOW).licence_id == mv.LICENCE.licence_id
    assert verifier.clock.high_water == mv.LICENCE.issued_at
    after = mv.LICENCE.expires_at + SKEW
    assert verifier.verify_licence_key(licence_token, now=after + mv.GRACE - 1)
    assert code_of(lambda: verifier.verify_licence_key(licence_token, now=after + mv.GRACE)) is (
        Code.EXPIRED
    )


def test_clock_set_back_is_refused(
    verifier: OfflineVerifier, key: SigningKey, certificate_token: str
) -> None:
    # A fresh certificate renewed at NOW raises the trusted time to NOW ...
    renewed = issue_certificate(replace(mv.CERTIFICATE, issued_at=NOW, not_before=NOW), key)
    verifier.verify_certificate(renewed, fingerprint=mv.FINGERPRINT, now=NOW)
    # ... so setting the clock back a day to reuse an older certificate is caught,
    set_back = NOW - 86_400
    assert (
        code_of(
            lambda: verifier.verify_certificate(
                certificate_token, fingerprint=mv.FINGERPRINT, now=set_back
            )
        )
        is Code.CLOCK_ROLLBACK
    )
    # and CLOCK_ROLLBACK comes before the time checks it would distort (NOT_YET_VALID here).
    assert (
        code_of(lambda: verifier.verify_certificate(renewed, fingerprint=None, now=set_back))
        is Code.CLOCK_ROLLBACK
    )
    # but after the signature checks: a forgery is still reported as such.
    forged = mv.flip_signature(renewed)
    assert (
        code_of(lambda: verifier.verify_certificate(forged, fingerprint=None, now=set_back))
        is Code.BAD_SIGNATURE
    )
    # The mark survives a restart.
    again = OfflineVerifier(verifier._keyring, verifier._dir, skew_s=SKEW)
    assert (
        code_of(lambda: again.verify_licence_key(issue_licence_key(mv.LICENCE, key), now=set_back))
        is Code.CLOCK_ROLLBACK
    )


def test_revocation_list_is_adopted_and_persisted(
    verifier: OfflineVerifier, key: SigningKey, keyring: Keyring, certificate_token: str
) -> None:
    listing = replace(mv.REVOCATIONS, activation_ids=frozenset({mv.CERTIFICATE.activation_id}))
    token = issue_revocation_list(listing, key)
    rl = verifier.accept_revocation_list(token)
    assert rl.serial == 7 and verifier.min_serial == 7
    assert verifier.clock.high_water == listing.issued_at
    state = verifier._dir / offline_module.REVOCATION_FILE
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert (
        code_of(
            lambda: verifier.verify_certificate(
                certificate_token, fingerprint=mv.FINGERPRINT, now=NOW
            )
        )
        is Code.REVOKED
    )
    # After a restart the list and its serial still apply.
    again = OfflineVerifier(keyring, verifier._dir, skew_s=SKEW)
    assert again.min_serial == 7 and again.revocations == rl
    older = issue_revocation_list(replace(listing, serial=6), key)
    assert code_of(lambda: again.accept_revocation_list(older)) is Code.STALE_REVOCATION_LIST
    assert again.accept_revocation_list(token).serial == 7  # the same list again is fine
    newer = issue_revocation_list(replace(listing, serial=8, activation_ids=frozenset()), key)
    again.accept_revocation_list(newer)
    assert again.verify_certificate(certificate_token, fingerprint=mv.FINGERPRINT, now=NOW)


def test_persisted_list_from_a_retired_key_keeps_its_serial(
    verifier: OfflineVerifier, key: SigningKey, keyring: Keyring
) -> None:
    verifier.accept_revocation_list(issue_revocation_list(mv.REVOCATIONS, key))
    keyring.retire(mv.NEWEST)
    again = OfflineVerifier(keyring, verifier._dir, skew_s=SKEW)
    assert again.revocations is None
    assert again.min_serial == 7
    older = issue_revocation_list(replace(mv.REVOCATIONS, serial=3), mv.signing_key(mv.OLDER))
    assert code_of(lambda: again.accept_revocation_list(older)) is Code.STALE_REVOCATION_LIST


@pytest.mark.parametrize(
    "content",
    ["{}", '{"format": 1, "serial": -1, "token": "x"}', '{"format": 1, "serial": 1, "token": 5}'],
)
def test_corrupt_revocation_state(tmp_path: Path, keyring: Keyring, content: str) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / offline_module.REVOCATION_FILE).write_text(content)
    with pytest.raises(LicensingError) as info:
        OfflineVerifier(keyring, state)
    assert info.value.code is Code.MALFORMED


def test_state_dir_that_cannot_be_created(tmp_path: Path, keyring: Keyring) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(LicensingError, match="cannot create state directory"):
        OfflineVerifier(keyring, blocker / "state")
