"""Products, licence policies, licences, signing keys and the signed revocation lists."""

from __future__ import annotations

import uuid

from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone


class Product(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    code = models.SlugField(max_length=64, unique=True, help_text="Put in licence keys.")
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.name


class LicencePolicy(models.Model):
    """The licence "type": what a licence issued from it allows, and its timing rules."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="policies")
    code = models.SlugField(max_length=64)
    name = models.CharField(max_length=200)
    # licensing.Entitlements without max_activations (that is the field below): features,
    # max_width, max_height, max_fps, platforms, model_versions.
    entitlements = models.JSONField(default=dict, blank=True)
    max_activations = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    licence_validity_days = models.PositiveIntegerField(
        default=365, validators=[MinValueValidator(1)]
    )
    certificate_lifetime_s = models.PositiveIntegerField(
        default=7 * 86400, validators=[MinValueValidator(300)]
    )
    heartbeat_window_s = models.PositiveIntegerField(
        default=3600,
        validators=[MinValueValidator(60)],
        help_text="An activation with no heartbeat for this long is released (its seat freed).",
    )
    offline_grace_s = models.PositiveIntegerField(
        default=3 * 86400,
        help_text="How long past certificate expiry an offline device keeps working.",
    )
    activation_rate_limit = models.PositiveIntegerField(
        default=20, validators=[MinValueValidator(1)]
    )
    activation_rate_window_s = models.PositiveIntegerField(
        default=3600, validators=[MinValueValidator(1)]
    )
    deactivation_rate_limit = models.PositiveIntegerField(
        default=10, validators=[MinValueValidator(1)]
    )
    deactivation_rate_window_s = models.PositiveIntegerField(
        default=3600, validators=[MinValueValidator(1)]
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["product", "code"]
        verbose_name_plural = "licence policies"
        constraints = [
            models.UniqueConstraint(fields=["product", "code"], name="policy_code_per_product"),
            models.CheckConstraint(
                name="policy_limits_positive",
                condition=models.Q(
                    max_activations__gte=1,
                    licence_validity_days__gte=1,
                    certificate_lifetime_s__gte=300,
                    heartbeat_window_s__gte=60,
                    activation_rate_limit__gte=1,
                    activation_rate_window_s__gte=1,
                    deactivation_rate_limit__gte=1,
                    deactivation_rate_window_s__gte=1,
                ),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.product.code}/{self.code}"


class SigningKey(models.Model):
    """An Ed25519 signing key. The private half is stored only as an AES-GCM envelope under
    settings.SIGNING_KEY_KEK (see licences.keys); it never appears in repr, admin or API."""

    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        RETIRED = "retired", "Retired"

    id = models.BigAutoField(primary_key=True)
    key_id = models.CharField(max_length=64, unique=True)
    public_key = models.BinaryField(max_length=32)
    encrypted_private_key = models.BinaryField(editable=False)
    state = models.CharField(max_length=16, choices=State.choices, default=State.ACTIVE)
    created_at = models.DateTimeField(default=timezone.now)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.key_id} ({self.state})"

    def __repr__(self) -> str:
        return f"<SigningKey {self.key_id} {self.state}>"


class Licence(models.Model):
    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"
        REVOKED = "revoked", "Revoked"
        # Never stored: derived from expires_at by `effective_state`.
        EXPIRED = "expired", "Expired"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.PROTECT, related_name="licences"
    )
    policy = models.ForeignKey(LicencePolicy, on_delete=models.PROTECT, related_name="licences")
    state = models.CharField(max_length=16, choices=State.choices, default=State.ACTIVE)
    state_reason = models.CharField(max_length=500, blank=True)
    key = models.TextField(help_text="The signed licence key given to the customer.")
    key_sha256 = models.CharField(max_length=64, unique=True)
    signing_key = models.ForeignKey(SigningKey, on_delete=models.PROTECT, related_name="licences")
    max_activations = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    entitlements = models.JSONField(default=dict, help_text="Snapshot signed into the key.")
    not_before = models.DateTimeField()
    expires_at = models.DateTimeField()
    issued_at = models.DateTimeField(default=timezone.now)
    suspended_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-issued_at"]
        indexes = [models.Index(fields=["customer", "state"], name="licence_customer_state_idx")]
        constraints = [
            models.CheckConstraint(
                name="licence_stored_state",
                condition=models.Q(state__in=["active", "suspended", "revoked"]),
            ),
            models.CheckConstraint(
                name="licence_window_ordered",
                condition=models.Q(expires_at__gt=models.F("not_before")),
            ),
        ]

    def __str__(self) -> str:
        return f"licence {self.pk}"

    def __repr__(self) -> str:
        return f"<Licence {self.pk} {self.state}>"

    @property
    def effective_state(self) -> str:
        """The state callers see: an active licence past its expiry is `expired`."""
        if self.state == self.State.ACTIVE and self.expires_at <= timezone.now():
            return self.State.EXPIRED
        return self.state


class RevocationList(models.Model):
    """One signed revocation list per serial; the newest serial is the one served."""

    serial = models.PositiveBigIntegerField(unique=True)
    issued_at = models.DateTimeField()
    token = models.TextField()
    signing_key_id = models.CharField(max_length=64)
    licence_count = models.PositiveIntegerField(default=0)
    activation_count = models.PositiveIntegerField(default=0)
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-serial"]

    def __str__(self) -> str:
        return f"revocation list #{self.serial}"
