"""SDK-side offline verification with persisted state.

Two pieces of state survive restarts, each in a small JSON file written atomically with mode
0600: the trusted-time high-water mark (the newest signed time seen) and the newest revocation
list accepted (its serial and the token). Deleting the state directory resets both; software
alone cannot prevent that, so the mark only stops casual clock changes, and the short
certificate validity bounds what a reset can gain.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from licensing._binary import MAX_UINT, malformed
from licensing.claims import CertificateClaims, LicenceClaims, Requirement, RevocationList
from licensing.errors import Code, LicensingError
from licensing.fingerprint import Fingerprint
from licensing.keys import Keyring, load_json_object
from licensing.tokens import _verify_certificate, _verify_licence, verify_revocation_list

STATE_FORMAT = 1
CLOCK_FILE = "trusted_time.json"
REVOCATION_FILE = "revocation_list.json"


def _write_state(path: Path, data: dict[str, Any]) -> None:
    """Replace `path` atomically: a crash leaves the old file or the new one, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:  # mkstemp made it 0600
            json.dump(data, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    # Persist the rename itself; not possible on every platform, harmless to skip there.
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _read_state(path: Path, fields: set[str]) -> dict[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise malformed(f"cannot read licensing state {path}: {exc.strerror}") from None
    try:
        data = load_json_object(text, f"licensing state {path}")
        if set(data) != fields | {"format"} or data["format"] != STATE_FORMAT:
            raise malformed("unexpected fields")
    except LicensingError:
        raise malformed(
            f"licensing state {path} is corrupt; delete it to reset (the device then needs a "
            "fresh certificate or revocation list to raise its trusted time again)"
        ) from None
    return data


def _uint(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_UINT


class TrustedClock:
    """High-water mark of trusted (signed) time, persisted across restarts."""

    def __init__(self, state_path: Path, *, tolerance_s: int = 300) -> None:
        if isinstance(tolerance_s, bool) or not isinstance(tolerance_s, int) or tolerance_s < 0:
            raise malformed("tolerance_s must be a non-negative integer")
        self._path = Path(state_path)
        self._tolerance_s = tolerance_s
        self._mark = self._load()

    @property
    def high_water(self) -> int:
        return self._mark

    @property
    def tolerance_s(self) -> int:
        return self._tolerance_s

    def _load(self) -> int:
        data = _read_state(self._path, {"high_water"})
        if data is None:
            return 0
        if not _uint(data["high_water"]):
            raise malformed(f"licensing state {self._path} is corrupt; delete it to reset")
        mark: int = data["high_water"]
        return mark

    def observe(self, signed_time: int) -> None:
        """Raise the mark to `signed_time` (never lowers it); persisted before returning."""
        if not _uint(signed_time):
            raise malformed("signed_time must be an integer from 0 to 2**63-1")
        if signed_time <= self._mark:
            return
        # Another process sharing the state may have raised the mark further meanwhile.
        mark = max(signed_time, self._load())
        _write_state(self._path, {"format": STATE_FORMAT, "high_water": mark})
        self._mark = mark

    def check(self, now: int | None = None) -> int:
        """Return `now` (default: the system clock); CLOCK_ROLLBACK when it is more than the
        tolerance behind the newest trusted time."""
        if now is None:
            now = int(time.time())
        elif isinstance(now, bool) or not isinstance(now, int):
            raise malformed("now must be an integer (Unix seconds)")
        if now < self._mark - self._tolerance_s:
            raise LicensingError(
                Code.CLOCK_ROLLBACK,
                f"system time {now} is {self._mark - now} s behind trusted time {self._mark} "
                f"(tolerance {self._tolerance_s} s)",
            )
        return now


class OfflineVerifier:
    """What the SDK and the codec engine use: keyring + trusted clock + newest revocation list.

    Every verification checks the clock first (after the signature), applies the token's
    offline grace, the revocation list and the requirement, and on success raises the
    trusted-time mark to the token's signed issued_at."""

    def __init__(self, keyring: Keyring, state_dir: Path, *, skew_s: int = 300) -> None:
        self._keyring = keyring
        self._skew_s = skew_s
        self._dir = Path(state_dir)
        try:
            self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise malformed(f"cannot create state directory {self._dir}: {exc.strerror}") from None
        self.clock = TrustedClock(self._dir / CLOCK_FILE, tolerance_s=skew_s)
        self._revocation_path = self._dir / REVOCATION_FILE
        self._min_serial, self._revocations = self._load_revocations()

    @property
    def revocations(self) -> RevocationList | None:
        return self._revocations

    @property
    def min_serial(self) -> int:
        """The newest revocation-list serial accepted so far; older lists are refused."""
        return self._min_serial

    def _load_revocations(self) -> tuple[int, RevocationList | None]:
        data = _read_state(self._revocation_path, {"serial", "token"})
        if data is None:
            return 0, None
        if not _uint(data["serial"]) or not isinstance(data["token"], str):
            raise malformed(f"licensing state {self._revocation_path} is corrupt")
        serial: int = data["serial"]
        try:
            rl = verify_revocation_list(data["token"], self._keyring, min_serial=serial)
        except LicensingError:
            # Kept serial, dropped list (e.g. its key was retired since): an older list still
            # cannot be replayed, and the next list from the server restores the ids.
            return serial, None
        return serial, rl

    def accept_revocation_list(self, token: str) -> RevocationList:
        """Verify and adopt a revocation list; STALE_REVOCATION_LIST if its serial is below the
        newest one accepted. Persists the list and raises the trusted time to its issued_at."""
        rl = verify_revocation_list(token, self._keyring, min_serial=self._min_serial)
        _write_state(
            self._revocation_path, {"format": STATE_FORMAT, "serial": rl.serial, "token": token}
        )
        self._min_serial, self._revocations = rl.serial, rl
        self.clock.observe(rl.issued_at)
        return rl

    def verify_licence_key(
        self, token: str, *, require: Requirement | None = None, now: int | None = None
    ) -> LicenceClaims:
        claims = _verify_licence(
            token,
            self._keyring,
            now=now,
            skew_s=self._skew_s,
            revocations=self._revocations,
            require=require,
            apply_grace=True,
            clock=self.clock.check,
        )
        self.clock.observe(claims.issued_at)
        return claims

    def verify_certificate(
        self,
        token: str,
        *,
        fingerprint: Fingerprint | str | None,
        require: Requirement | None = None,
        now: int | None = None,
    ) -> CertificateClaims:
        """`fingerprint` is this machine's (machine_fingerprint); None skips the binding check,
        which only makes sense where the machine cannot be fingerprinted."""
        claims = _verify_certificate(
            token,
            self._keyring,
            now=now,
            skew_s=self._skew_s,
            fingerprint=fingerprint,
            revocations=self._revocations,
            require=require,
            apply_grace=True,
            clock=self.clock.check,
        )
        self.clock.observe(claims.issued_at)
        return claims
