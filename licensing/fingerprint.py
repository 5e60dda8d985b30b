"""Machine fingerprint: keyed hashes of several OS identifiers, matched tolerantly.

Each identifier (machine id, hostname, MAC, root disk, CPU, board) is hashed separately with
HMAC-SHA-256 under a product secret, so the control plane never sees raw identifiers and two
vendors' fingerprints of one machine cannot be linked. Matching tolerates `max_changed`
differing components (a new disk or network card) but needs a strict majority of components to
agree, so two machines sharing only low-entropy traits (same CPU model) never match.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import itertools
import os
import platform
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from licensing._binary import malformed

FINGERPRINT_PREFIX = "fp1:"
MAX_COMPONENTS = 16
_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,15}")
_HASH_RE = re.compile(r"[0-9a-f]{16,64}")
_COMPONENT = r"[a-z][a-z0-9_]{0,15}=[0-9a-f]{16,64}"
_STRING_RE = re.compile(rf"fp1:{_COMPONENT}(?:,{_COMPONENT})*")
_HASH_BYTES = 8  # 64 bits per component: enough to tell parts apart, short enough to carry
_DOMAIN = b"ncodec-fingerprint-v1\x00"


@dataclass(frozen=True)
class Fingerprint:
    components: Mapping[str, str]

    def __post_init__(self) -> None:
        components = self.components
        if not isinstance(components, Mapping) or not 1 <= len(components) <= MAX_COMPONENTS:
            raise malformed(f"a fingerprint has 1 to {MAX_COMPONENTS} components")
        for name, value in components.items():
            if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None:
                raise malformed("fingerprint component names are [a-z][a-z0-9_]{0,15}")
            if not isinstance(value, str) or _HASH_RE.fullmatch(value) is None:
                raise malformed("fingerprint component values are 16-64 lowercase hex digits")
        # Sorted and read-only: equal fingerprints compare, hash and serialise alike.
        object.__setattr__(self, "components", MappingProxyType(dict(sorted(components.items()))))

    def __hash__(self) -> int:
        return hash(tuple(self.components.items()))

    def __reduce__(self) -> tuple[type[Fingerprint], tuple[dict[str, str]]]:
        # A mappingproxy cannot be pickled; rebuild from a plain dict (and re-validate).
        return (type(self), (dict(self.components),))

    @functools.cached_property
    def _string(self) -> str:
        return FINGERPRINT_PREFIX + ",".join(f"{k}={v}" for k, v in self.components.items())

    def to_string(self) -> str:
        # Computed once per (immutable) fingerprint: certificate checks compare it often.
        return self._string

    @classmethod
    def from_string(cls, s: str) -> Fingerprint:
        if not isinstance(s, str) or len(s) > 2048 or _STRING_RE.fullmatch(s) is None:
            raise malformed(
                f"a fingerprint string is {FINGERPRINT_PREFIX}name=hex,... (names [a-z0-9_])"
            )
        pairs = [part.split("=") for part in s[len(FINGERPRINT_PREFIX) :].split(",")]
        names = [name for name, _ in pairs]
        # Strictly ascending names: one spelling per fingerprint, like every signed field.
        if len(pairs) > MAX_COMPONENTS or any(a >= b for a, b in itertools.pairwise(names)):
            raise malformed("fingerprint names must be sorted, unique, at most 16")
        # The regex has validated every name and value: skip __post_init__ (hot path).
        fingerprint = object.__new__(cls)
        object.__setattr__(fingerprint, "components", MappingProxyType(dict(pairs)))
        return fingerprint

    def matches(self, other: Fingerprint, *, max_changed: int = 1) -> bool:
        mine, theirs = self.components, other.components
        if mine == theirs:
            return True
        names = mine.keys() | theirs.keys()
        same = sum(1 for name in names if mine.get(name, "") == theirs.get(name, "-"))
        changed = len(names) - same
        return changed <= max_changed and 2 * same > len(names)


def fingerprint_from_identifiers(secret: bytes, identifiers: Mapping[str, str]) -> Fingerprint:
    """Keyed hash of each non-empty identifier; the deterministic core of machine_fingerprint."""
    if not isinstance(secret, bytes) or not secret:
        raise malformed("the fingerprint secret must be non-empty bytes")
    components: dict[str, str] = {}
    for name, value in identifiers.items():
        if not value:
            continue
        mac = hmac.new(secret, _DOMAIN + name.encode() + b"\x00" + value.encode(), hashlib.sha256)
        components[name] = mac.hexdigest()[: 2 * _HASH_BYTES]
    return Fingerprint(components)


def machine_fingerprint(secret: bytes) -> Fingerprint:
    """Fingerprint of this machine from whatever identifiers the OS offers without privileges."""
    return fingerprint_from_identifiers(secret, collect_identifiers())


def collect_identifiers() -> dict[str, str]:
    """Raw OS identifiers by component name; a source that fails is simply left out."""
    sources: dict[str, Callable[[], str]] = {
        "machine_id": _machine_id,
        "hostname": socket.gethostname,
        "mac": _mac,
        "disk": _root_disk,
        "cpu": _cpu,
        "board": _board,
    }
    found: dict[str, str] = {}
    for name, source in sources.items():
        try:
            value = source().strip()
        except (OSError, ValueError, subprocess.SubprocessError):
            continue
        if value:
            found[name] = value
    return found


def _read(path: str) -> str:
    return Path(path).read_text(encoding="utf-8", errors="replace").strip()


def _machine_id() -> str:
    if sys.platform.startswith("linux"):
        for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
            try:
                value = _read(path)
            except OSError:
                continue
            if value:
                return value
        return ""
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import winreg

        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"SOFTWARE\Microsoft\Cryptography") as key:
            return str(winreg.QueryValueEx(key, "MachineGuid")[0])
    if sys.platform == "darwin":  # pragma: no cover - exercised on macOS only
        out = subprocess.run(
            ["ioreg", "-rd1", "-c", "IOPlatformExpertDevice"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
        match = re.search(r'"IOPlatformUUID" = "([^"]+)"', out)
        return match.group(1) if match else ""
    return ""  # pragma: no cover - other platforms


def _mac() -> str:
    node = uuid.getnode()
    # Bit 40 set means uuid invented a random node because no hardware address was found.
    if node >> 40 & 1:
        return ""
    return f"{node:012x}"


def _root_disk(by_uuid: Path = Path("/dev/disk/by-uuid")) -> str:
    """UUID of the file system mounted at / (Linux); stays put across reboots and renames."""
    if not sys.platform.startswith("linux"):  # pragma: no cover - Linux only
        return ""
    source = ""
    for line in _read("/proc/self/mountinfo").splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) > 4 and fields[4] == "/":
            parts = right.split()
            source = parts[1] if len(parts) > 1 else ""
    # Containers mount overlay or tmpfs at /: no block device, no disk component.
    if not source.startswith("/") or not by_uuid.is_dir():
        return ""
    target = os.path.realpath(source)
    for link in sorted(by_uuid.iterdir()):
        if os.path.realpath(link) == target:
            return link.name
    return ""


def _cpu() -> str:
    model = ""
    if sys.platform.startswith("linux"):
        for line in _read("/proc/cpuinfo").splitlines():
            if line.startswith(("model name", "Hardware", "Processor")):
                model = line.partition(":")[2].strip()
                break
    return f"{platform.machine()} {model or platform.processor()}".strip()


def _board() -> str:
    if not sys.platform.startswith("linux"):  # pragma: no cover - Linux only
        return ""
    # product_uuid needs root on most distributions; board_serial likewise. Both optional.
    for path in ("/sys/class/dmi/id/product_uuid", "/sys/class/dmi/id/board_serial"):
        try:
            value = _read(path)
        except OSError:
            continue
        if value:
            return value
    return ""
