"""portal 0002 seals the TOTP seeds already enrolled: the same authenticator app keeps working."""

from __future__ import annotations

import pyotp
import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from portal.models import TotpDevice
from portal.services import totp_secret

BEFORE = [("portal", "0001_login_failures_and_totp_devices")]


@pytest.mark.django_db(transaction=True)
def test_migration_seals_existing_seeds_in_place() -> None:
    user = get_user_model().objects.create_user("dora", password="x" * 16)
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes("portal")
    executor.migrate(BEFORE)
    seed = pyotp.random_base32()
    old_model = executor.loader.project_state(BEFORE).apps.get_model("portal", "TotpDevice")
    old_model.objects.create(user_id=user.pk, secret=seed)

    executor = MigrationExecutor(connection)  # reload the graph at its new state
    executor.migrate(latest)
    device = TotpDevice.objects.get(user=user)
    assert totp_secret(device) == seed
    assert seed.encode() not in bytes(device.sealed_secret)
