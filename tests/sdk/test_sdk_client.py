"""The SDK client (codec_engine.sdk) and `codec-engine activate|heartbeat|status|deactivate`
against a live control plane: safe file modes, certificate persistence, heartbeats that carry
suspension/revocation, deactivation, and fail-open within grace with the server stopped."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from activation.models import Activation
from activation.tasks import release_stale_activations
from cryptography.hazmat.primitives import serialization
from customers.models import Customer
from django.utils import timezone
from licences.models import Licence, LicencePolicy

import licensing
from codec_engine.cli import main as cli_main
from codec_engine.errors import NotActivatedError, SdkNetworkError
from codec_engine.sdk import SdkClient
from core.devserver import background_server
from tests.core.fixtures import Http, Persona, random_fingerprint

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _machine(monkeypatch: pytest.MonkeyPatch) -> str:
    # One simulated machine per test (the real fingerprint would be this host's).
    fingerprint = random_fingerprint().to_string()
    monkeypatch.setenv("CODEC_ENGINE_FINGERPRINT", fingerprint)
    monkeypatch.delenv("CODEC_ENGINE_SERVER", raising=False)
    monkeypatch.delenv("CODEC_ENGINE_HOME", raising=False)
    return fingerprint


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli_main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_activate_persists_device_key_and_certificate_with_safe_modes(
    http: Http,
    acme_licence: Licence,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    _machine: str,
) -> None:
    state = tmp_path / "sdk"
    code, out, err = run(
        capsys,
        "activate",
        "--licence-key",
        acme_licence.key,
        "--server",
        http.base,
        "--state-dir",
        str(state),
        "--hostname",
        "render-01",
    )
    assert code == 0, err
    activation = Activation.objects.get()
    assert out.splitlines()[0] == f"activated    {activation.pk} on licence {acme_licence.pk}"
    assert mode(state) == 0o700
    for name in (
        "device_key.pem",
        "activation.json",
        "certificate",
        "keyring.json",
        "revocation_list",
    ):
        assert mode(state / name) == 0o600, name
    key = serialization.load_pem_private_key((state / "device_key.pem").read_bytes(), None)
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert bytes(activation.device_public_key) == public
    assert (activation.hostname, activation.fingerprint) == ("render-01", _machine)
    record = json.loads((state / "activation.json").read_text())
    assert (record["activation_id"], record["licence_state"]) == (str(activation.pk), "active")
    keyring = licensing.Keyring.from_json((state / "keyring.json").read_text())
    claims = licensing.verify_certificate((state / "certificate").read_text(), keyring)
    assert claims.activation_id == str(activation.pk)

    code, out, _ = run(capsys, "status", "--state-dir", str(state))
    assert code == 0
    assert "status       OK (VALID)" in out
    assert "features=encode,decode max=3840xany@anyfps seats=2" in out
    code, out, _ = run(capsys, "status", "--state-dir", str(state), "--json")
    report = json.loads(out)
    assert (report["ok"], report["code"], report["activation_id"]) == (
        True,
        "VALID",
        str(activation.pk),
    )
    assert report["grace_until"] == report["certificate_expires_at"] + 3 * 86400


def test_activating_again_after_losing_state_reuses_the_seat(
    http: Http, acme_licence: Licence, tmp_path: Path
) -> None:
    first = SdkClient(state_dir=tmp_path / "a", server_url=http.base).activate(acme_licence.key)
    second = SdkClient(state_dir=tmp_path / "b", server_url=http.base).activate(acme_licence.key)
    assert first.activation_id == second.activation_id
    assert Activation.objects.count() == 1


def test_heartbeat_then_revocation_reaches_the_device(
    http: Http,
    operator: Persona,
    acme_licence: Licence,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state = str(tmp_path / "sdk")
    run(
        capsys,
        "activate",
        "--licence-key",
        acme_licence.key,
        "--server",
        http.base,
        "--state-dir",
        state,
    )
    code, out, _ = run(capsys, "heartbeat", "--state-dir", state)
    assert code == 0
    assert out.startswith("heartbeat ok  licence active; certificate renewed until ")
    assert Activation.objects.get().last_heartbeat_at is not None

    operator.http.post(f"/api/v1/licences/{acme_licence.pk}/revoke/")
    code, out, err = run(capsys, "heartbeat", "--state-dir", state)
    assert code == 3
    assert err.strip().startswith(
        "codec-engine heartbeat: error [LICENCE_REVOKED]: heartbeat refused"
    )
    assert len(err.strip().splitlines()) == 1
    # status now refuses offline too: the device adopted the new revocation list.
    code, out, err = run(capsys, "status", "--state-dir", state)
    assert code == 3
    assert "status       REFUSED (REVOKED)" in out


def test_suspension_is_reported_by_status_until_reinstated(
    http: Http, operator: Persona, acme_licence: Licence, tmp_path: Path
) -> None:
    client = SdkClient(state_dir=tmp_path, server_url=http.base)
    client.activate(acme_licence.key)
    operator.http.post(f"/api/v1/licences/{acme_licence.pk}/suspend/")
    with pytest.raises(Exception) as info:
        client.heartbeat()
    assert getattr(info.value, "code", None) == "LICENCE_SUSPENDED"
    assert client.status().code == "REVOKED"  # the suspended licence is in the new list
    operator.http.post(f"/api/v1/licences/{acme_licence.pk}/reinstate/")
    client.heartbeat()
    report = client.status()
    assert (report.ok, report.code, report.licence_state) == (True, "VALID", "active")


def test_deactivate_frees_the_seat_and_forgets_the_activation(
    http: Http, acme_licence: Licence, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = str(tmp_path / "sdk")
    run(
        capsys,
        "activate",
        "--licence-key",
        acme_licence.key,
        "--server",
        http.base,
        "--state-dir",
        state,
    )
    activation_id = str(Activation.objects.get().pk)
    code, out, _ = run(capsys, "deactivate", "--state-dir", state)
    assert code == 0
    assert out.strip() == f"deactivated  {activation_id}; this machine's seat is free"
    assert Activation.objects.get().state == "deactivated"
    assert not (Path(state) / "device_key.pem").exists()
    code, _, err = run(capsys, "status", "--state-dir", state)
    assert code == 2
    assert "[NOT_ACTIVATED]" in err


def test_released_activation_reactivates_on_its_next_heartbeat(
    http: Http, acme_licence: Licence, tmp_path: Path
) -> None:
    client = SdkClient(state_dir=tmp_path, server_url=http.base)
    first = client.activate(acme_licence.key)
    Activation.objects.update(last_seen_at=timezone.now() - dt.timedelta(hours=2))
    assert release_stale_activations.delay().get() == 1
    record = client.heartbeat()
    assert record.activation_id != first.activation_id
    assert Activation.objects.filter(state="active").count() == 1


def test_fail_open_within_grace_when_the_control_plane_is_down(
    transactional_db: None,
    make_licence: Callable[..., Licence],
    acme: Customer,
    make_policy: Callable[..., LicencePolicy],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    licence = make_licence(acme, make_policy(certificate_lifetime_s=3600, offline_grace_s=7200))
    state = str(tmp_path / "sdk")
    with background_server() as url:
        code, _, err = run(
            capsys, "activate", "--licence-key", licence.key, "--server", url, "--state-dir", state
        )
        assert code == 0, err
    # The control plane is gone now.
    code, _, err = run(capsys, "heartbeat", "--state-dir", state, "--timeout", "2")
    assert code == 4
    assert err.startswith(
        "codec-engine heartbeat: error [NETWORK_ERROR]: cannot reach the control plane"
    )
    assert len(err.strip().splitlines()) == 1
    client = SdkClient(state_dir=Path(state))
    record = client.state.load_activation()
    expiry = record.certificate_expires_at
    assert client.status().ok
    in_grace = client.status(now=expiry + 7000)
    assert (in_grace.ok, in_grace.in_grace) == (True, True)
    code, out, _ = run(capsys, "status", "--state-dir", state, "--now", str(expiry + 7000))
    assert code == 0
    assert "running on offline grace" in out
    after = client.status(now=expiry + 7200 + 300)  # grace and the 300 s clock skew spent
    assert (after.ok, after.code) == (False, "EXPIRED")
    with pytest.raises(SdkNetworkError):
        SdkClient(state_dir=Path(state), timeout_s=1, retries=0).deactivate()


def test_network_and_input_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], transactional_db: None
) -> None:
    code, _, err = run(
        capsys,
        "activate",
        "--licence-key",
        "NCL1.x",
        "--server",
        "http://127.0.0.1:9",
        "--state-dir",
        str(tmp_path),
        "--timeout",
        "1",
    )
    assert code == 4
    assert err.count("\n") == 1 and "[NETWORK_ERROR]" in err
    code, _, err = run(capsys, "activate", "--state-dir", str(tmp_path), "--server", "http://x")
    assert code == 2 and "[BAD_INPUT]" in err
    with pytest.raises(NotActivatedError):
        SdkClient(state_dir=tmp_path / "empty").heartbeat()


def test_activate_rejects_a_bad_key_before_calling_home(
    http: Http, signing_key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys,
        "activate",
        "--licence-key",
        "not-a-key",
        "--server",
        http.base,
        "--state-dir",
        str(tmp_path),
    )
    assert code == 3
    assert "[MALFORMED]" in err
    assert Activation.objects.count() == 0


def test_the_console_script_runs_as_a_subprocess(
    http: Http, acme_licence: Licence, tmp_path: Path, _machine: str
) -> None:
    env: dict[str, Any] = {
        **os.environ,
        "CODEC_ENGINE_HOME": str(tmp_path),
        "PYTHONPATH": str(REPO),
    }
    activate = subprocess.run(
        [
            sys.executable,
            "-m",
            "codec_engine.cli",
            "activate",
            "--licence-key",
            acme_licence.key,
            "--server",
            http.base,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert activate.returncode == 0, activate.stderr
    status = subprocess.run(
        [sys.executable, "-m", "codec_engine.cli", "status", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["code"] == "VALID"
