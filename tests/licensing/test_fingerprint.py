"""Machine fingerprint: keyed hashes, canonical strings, tolerant matching, OS collection."""

from __future__ import annotations

from pathlib import Path

import pytest

from licensing import (
    Code,
    Fingerprint,
    LicensingError,
    collect_identifiers,
    fingerprint_from_identifiers,
    machine_fingerprint,
)
from licensing import fingerprint as fp_module
from tests.licensing import make_vectors as mv

SECRET = b"product-secret"
IDS = {"machine_id": "m", "hostname": "h", "mac": "001122334455", "disk": "d", "cpu": "c"}


def fp(**changes: str) -> Fingerprint:
    return fingerprint_from_identifiers(SECRET, {**IDS, **changes})


def test_keyed_and_deterministic() -> None:
    assert fp() == fp()
    assert hash(fp()) == hash(fp())
    assert fingerprint_from_identifiers(b"other-secret", IDS) != fp()
    # Raw identifiers never appear in the output.
    assert "001122334455" not in fp().to_string()
    assert set(fp().components) == set(IDS)


def test_empty_identifiers_are_skipped() -> None:
    assert set(fingerprint_from_identifiers(SECRET, {**IDS, "board": ""}).components) == set(IDS)


def test_string_round_trip_and_canonical_order() -> None:
    text = fp().to_string()
    assert text.startswith("fp1:cpu=")
    assert Fingerprint.from_string(text) == fp()
    assert Fingerprint({"b": "1" * 16, "a": "0" * 16}).to_string() == (
        "fp1:a=0000000000000000,b=1111111111111111"
    )


@pytest.mark.parametrize(
    ("changes", "max_changed", "expected"),
    [
        ({}, 1, True),
        ({"disk": "new-disk"}, 1, True),
        ({"mac": "new-nic"}, 1, True),
        ({"disk": "new-disk"}, 0, False),
        ({"disk": "new-disk", "mac": "new-nic"}, 1, False),
        ({"disk": "new-disk", "mac": "new-nic"}, 2, True),
        ({"disk": "x", "mac": "y", "hostname": "z"}, 3, False),  # no majority left
    ],
)
def test_tolerant_matching(changes: dict[str, str], max_changed: int, expected: bool) -> None:
    assert fp().matches(fp(**changes), max_changed=max_changed) is expected


def test_missing_component_counts_as_changed() -> None:
    fewer = fingerprint_from_identifiers(SECRET, {k: v for k, v in IDS.items() if k != "mac"})
    assert fp().matches(fewer) and fewer.matches(fp())
    assert not fp(disk="x").matches(fewer)


def test_small_fingerprints_need_exact_match() -> None:
    one = Fingerprint({"a": "0" * 16})
    assert one.matches(one)
    assert not one.matches(Fingerprint({"a": "1" * 16}))


@pytest.mark.parametrize(
    "components",
    [
        {},
        {"A": "0" * 16},
        {"a": "0" * 15},
        {"a": "0" * 16 + "G"},
        {"a": 5},
        {f"c{i}": "0" * 16 for i in range(17)},
        [("a", "0" * 16)],
    ],
)
def test_constructor_validates(components: object) -> None:
    with pytest.raises(LicensingError) as info:
        Fingerprint(components)  # type: ignore[arg-type]
    assert info.value.code is Code.MALFORMED


@pytest.mark.parametrize(
    "text",
    [
        None,
        "fp1:" + ",".join(f"c{i:02d}={'0' * 16}" for i in range(17)),
        "fp1:a=" + "0" * 3000,
        "fp1:a=0000000000000000 ",
    ],
)
def test_from_string_refuses(text: object) -> None:
    with pytest.raises(LicensingError):
        Fingerprint.from_string(text)  # type: ignore[arg-type]


def test_secret_must_be_non_empty_bytes() -> None:
    with pytest.raises(LicensingError):
        fingerprint_from_identifiers(b"", IDS)
    with pytest.raises(LicensingError):
        fingerprint_from_identifiers("text", IDS)  # type: ignore[arg-type]


def test_machine_fingerprint_on_this_machine() -> None:
    identifiers = collect_identifiers()
    assert "hostname" in identifiers and "cpu" in identifiers
    here = machine_fingerprint(SECRET)
    assert here == machine_fingerprint(SECRET)
    assert here.matches(fingerprint_from_identifiers(SECRET, identifiers))
    assert Fingerprint.from_string(here.to_string()) == here


def test_a_failing_source_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> str:
        raise OSError("no such file")

    monkeypatch.setattr(fp_module, "_machine_id", broken)
    monkeypatch.setattr(fp_module, "_root_disk", lambda: "   ")
    identifiers = collect_identifiers()
    assert "machine_id" not in identifiers and "disk" not in identifiers


def test_linux_sources_with_fake_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    files = {
        "/etc/machine-id": "",
        "/var/lib/dbus/machine-id": "dbus-id\n",
        "/proc/cpuinfo": "processor: 0\nmodel name\t: Test CPU 3000\n",
        "/sys/class/dmi/id/product_uuid": None,
        "/sys/class/dmi/id/board_serial": "BOARD-1\n",
        "/proc/self/mountinfo": (
            "22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/fake-root rw\n"
            "23 22 0:5 / /dev rw - devtmpfs udev rw\n"
        ),
    }

    def fake_read(path: str) -> str:
        value = files[path]
        if value is None:
            raise PermissionError(path)
        return value.strip()

    monkeypatch.setattr(fp_module, "_read", fake_read)
    monkeypatch.setattr(fp_module.sys, "platform", "linux")
    assert fp_module._machine_id() == "dbus-id"
    assert fp_module._cpu().endswith("Test CPU 3000")
    assert fp_module._board() == "BOARD-1"
    files["/var/lib/dbus/machine-id"] = None
    assert fp_module._machine_id() == ""
    files["/sys/class/dmi/id/board_serial"] = ""
    assert fp_module._board() == ""
    # /dev/fake-root is not under /dev/disk/by-uuid: no disk component, no error.
    assert fp_module._root_disk() == ""
    files["/proc/self/mountinfo"] = "22 1 0:20 / / rw - overlay overlay rw\n"
    assert fp_module._root_disk() == ""
    monkeypatch.setattr(fp_module.sys, "platform", "plan9")
    assert fp_module._machine_id() == ""


def test_root_disk_found_by_uuid(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    device = tmp_path / "sda1"
    device.write_text("")
    by_uuid = tmp_path / "by-uuid"
    by_uuid.mkdir()
    (by_uuid / "0000-other").symlink_to(tmp_path / "sdb1")
    (by_uuid / "1234-abcd").symlink_to(device)
    monkeypatch.setattr(fp_module.sys, "platform", "linux")
    monkeypatch.setattr(fp_module, "_read", lambda path: f"22 1 8:1 / / rw - ext4 {device} rw")
    assert fp_module._root_disk(by_uuid) == "1234-abcd"
    assert fp_module._root_disk(tmp_path / "missing") == ""
    device.unlink()
    (tmp_path / "sdc1").write_text("")
    monkeypatch.setattr(fp_module, "_read", lambda path: f"1 1 8:1 / / rw - ext4 {tmp_path}/sdc1 x")
    assert fp_module._root_disk(by_uuid) == ""


def test_random_mac_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fp_module.uuid, "getnode", lambda: 0x010000000000 | 0x1234)
    assert fp_module._mac() == ""
    monkeypatch.setattr(fp_module.uuid, "getnode", lambda: 0x0242AC110002)
    assert fp_module._mac() == "0242ac110002"


def test_vectors_fingerprint_is_reproducible() -> None:
    assert fingerprint_from_identifiers(mv.FINGERPRINT_SECRET, mv.IDENTIFIERS) == mv.FINGERPRINT


def test_cpu_without_a_model_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fp_module, "_read", lambda path: "processor\t: 0\nflags\t: fpu\n")
    monkeypatch.setattr(fp_module.platform, "machine", lambda: "riscv64")
    monkeypatch.setattr(fp_module.platform, "processor", lambda: "")
    monkeypatch.setattr(fp_module.sys, "platform", "linux")
    assert fp_module._cpu() == "riscv64"
    monkeypatch.setattr(fp_module.sys, "platform", "darwin")
    monkeypatch.setattr(fp_module.platform, "processor", lambda: "arm")
    assert fp_module._cpu() == "riscv64 arm"


def test_values_pickle() -> None:
    import pickle

    for value in (mv.FINGERPRINT, mv.LICENCE, mv.CERTIFICATE, mv.REVOCATIONS):
        assert pickle.loads(pickle.dumps(value)) == value  # noqa: S301 - our own bytes
