"""Sign-in security records of the portal: failed sign-in attempts and TOTP second factors."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class LoginFailure(models.Model):
    """One failed sign-in (wrong password or wrong second-factor code). Lockout counts the rows
    of a username+IP pair inside a sliding window; a successful sign-in deletes them. Kept in
    the database rather than a per-process cache so every web worker sees the same count."""

    id = models.BigAutoField(primary_key=True)
    username = models.CharField(max_length=150)
    ip = models.GenericIPAddressField()
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [
            models.Index(fields=["username", "ip", "created_at"], name="portal_login_fail_idx"),
            models.Index(fields=["ip", "created_at"], name="portal_login_fail_ip_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.username}@{self.ip} {self.created_at:%Y-%m-%d %H:%M:%S}"


class PasswordResetRequest(models.Model):
    """One password-reset form submission (sent or not). Caps how many reset mails one address
    receives and one IP can trigger inside a window (portal.services), so the form cannot be
    used to flood an inbox; the page answers the same either way."""

    id = models.BigAutoField(primary_key=True)
    email = models.CharField(max_length=254)
    ip = models.GenericIPAddressField()
    created_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["email", "created_at"], name="portal_reset_email_idx"),
            models.Index(fields=["ip", "created_at"], name="portal_reset_ip_idx"),
        ]

    def __str__(self) -> str:
        return f"reset {self.email} from {self.ip} {self.created_at:%Y-%m-%d %H:%M:%S}"


class TotpDevice(models.Model):
    """A user's authenticator app (RFC 6238, 30 s steps, 6 digits). Unconfirmed until the
    user has typed one valid code; only a confirmed device is asked for at sign-in."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="portal_totp"
    )
    # The base32 seed, sealed under the KEK and bound to this user (portal.services); a
    # database dump alone does not let anyone compute codes.
    sealed_secret = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    # The last accepted time step: a code is never accepted twice (replay of a seen code).
    last_step = models.BigIntegerField(default=0)
    # Keyed digests (core.sealing.keyed_digest) of the unused one-time recovery codes.
    recovery_code_digests = models.JSONField(default=list, blank=True)

    class Meta:
        verbose_name = "TOTP device"

    def __str__(self) -> str:
        state = "confirmed" if self.confirmed_at else "pending"
        return f"TOTP of {self.user} ({state})"

    @property
    def confirmed(self) -> bool:
        return self.confirmed_at is not None
