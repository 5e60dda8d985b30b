"""Bootstrap and operations from the command line, and `manage.py demo` end to end."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from customers.models import Customer, CustomerUser
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from licences import keys
from licences.models import Licence, LicencePolicy, SigningKey

import licensing
from core.models import ApiToken

REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue().strip(), err.getvalue().strip()


@pytest.mark.django_db
def test_createoperator_prints_a_working_token_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a-long-admin-password")
    out, err = run("createoperator", "--name", "ops", "--superuser", "root", "--email", "r@x.io")
    assert out.startswith("ncp_")
    token = ApiToken.objects.get()
    assert (token.scope, token.name) == ("operator", "ops")
    assert out not in (token.token_hash, token.prefix)
    assert "shown once" in err
    user = get_user_model().objects.get(username="root")
    assert user.is_superuser and user.check_password("a-long-admin-password")
    with pytest.raises(CommandError, match="exists"):
        run("createoperator", "--superuser", "root")


@pytest.mark.django_db
def test_create_customer_with_admin_and_token() -> None:
    out, _ = run(
        "create_customer", "--name", "Acme", "--slug", "acme", "--admin-user", "alice", "--token"
    )
    customer_id, token = out.splitlines()
    customer = Customer.objects.get(pk=customer_id)
    assert customer.slug == "acme"
    assert CustomerUser.objects.get().role == "admin"
    assert ApiToken.objects.get(customer=customer).scope == "customer"
    assert token.startswith("ncp_")
    with pytest.raises(CommandError, match="CUSTOMER_EXISTS"):
        run("create_customer", "--name", "Again", "--slug", "acme")


def test_issue_licence_and_rotate_signing_key(
    transactional_db: None, acme: Customer, policy: LicencePolicy
) -> None:
    out, _ = run("rotate_signing_key")
    key_id, public_hex = out.split()
    assert SigningKey.objects.get(key_id=key_id).public_key == bytes.fromhex(public_hex)
    key, err = run(
        "issue_licence",
        "--customer",
        "acme",
        "--policy",
        "standard",
        "--days",
        "30",
        "--max-activations",
        "4",
    )
    licence = Licence.objects.get()
    assert key == licence.key
    assert "4 seat(s)" in err
    keyring = keys.keyring_snapshot(max_age_s=0).keyring
    claims = licensing.verify_licence_key(key, keyring)
    assert claims.expires_at - claims.not_before == 30 * 86400
    with pytest.raises(CommandError, match="no such customer"):
        run("issue_licence", "--customer", "nobody", "--policy", "standard")
    with pytest.raises(CommandError, match="LAST_ACTIVE_KEY"):
        run("rotate_signing_key", "--retire", key_id)
    new_id = run("rotate_signing_key")[0].split()[0]
    with pytest.raises(CommandError, match="SIGNING_KEY_IN_USE"):
        run("rotate_signing_key", "--retire", key_id)
    assert new_id != key_id


@pytest.mark.slow
def test_make_demo_runs_end_to_end_and_is_rerunnable(tmp_path: Path) -> None:
    env = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")
    }
    env["CONTROLPLANE_VAR_DIR"] = str(tmp_path)
    for attempt in range(2):
        result = subprocess.run(
            [sys.executable, "manage.py", "demo"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        out = result.stdout
        assert "$ codec-engine activate --licence-key <licence key>" in out, attempt
        assert "status       OK (VALID)" in out
        assert "heartbeat ok  licence active" in out
        assert "error [LICENCE_REVOKED]" in out
        assert "status       REFUSED (REVOKED)" in out
        assert "Demo complete" in out
