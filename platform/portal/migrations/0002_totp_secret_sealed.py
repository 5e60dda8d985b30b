"""TOTP seeds sealed under the KEK (core.sealing) instead of stored in clear.

Existing seeds are sealed in place, so enrolled authenticator apps keep working; the clear
column is then dropped. Needs SIGNING_KEY_KEK, like every process of the control plane.
"""

from typing import Any

from django.db import migrations, models


def seal_existing(apps: Any, schema_editor: Any) -> None:
    from portal.services import totp_seal_secret

    TotpDevice = apps.get_model("portal", "TotpDevice")
    for device in TotpDevice.objects.all():
        device.sealed_secret = totp_seal_secret(device.user_id, device.secret)
        device.save(update_fields=["sealed_secret"])


def refuse_to_unseal(apps: Any, schema_editor: Any) -> None:
    if apps.get_model("portal", "TotpDevice").objects.exists():
        raise RuntimeError(
            "portal 0002 cannot be reversed with TOTP devices enrolled: their seeds are sealed"
        )


class Migration(migrations.Migration):
    dependencies = [("portal", "0001_login_failures_and_totp_devices")]

    operations = [
        migrations.AddField(
            model_name="totpdevice",
            name="sealed_secret",
            field=models.BinaryField(null=True),
        ),
        migrations.RunPython(seal_existing, refuse_to_unseal),
        migrations.RemoveField(model_name="totpdevice", name="secret"),
        migrations.AlterField(
            model_name="totpdevice",
            name="sealed_secret",
            field=models.BinaryField(),
        ),
    ]
