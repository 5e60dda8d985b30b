"""Activations (a device or server holding a seat of a licence) and the event rows that rate
limits count."""

from __future__ import annotations

import uuid

from django.db import models


class Activation(models.Model):
    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        DEACTIVATED = "deactivated", "Deactivated"  # by the device, the customer or an operator
        RELEASED = "released", "Released"  # heartbeats stopped for longer than the policy window
        REVOKED = "revoked", "Revoked"  # its licence was revoked

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index of its own: activation_licence_state_idx starts with licence_id.
    licence = models.ForeignKey(
        "licences.Licence", on_delete=models.PROTECT, related_name="activations", db_index=False
    )
    fingerprint = models.TextField(help_text="licensing.Fingerprint string.")
    device_public_key = models.BinaryField(max_length=32)
    platform = models.CharField(max_length=64)
    hostname = models.CharField(max_length=255, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.ACTIVE)
    activated_at = models.DateTimeField()
    first_heartbeat_at = models.DateTimeField(null=True, blank=True)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The later of activation and last heartbeat: what the stale-activation task compares.
    last_seen_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    certificate_key_id = models.CharField(max_length=64)
    certificate_expires_at = models.DateTimeField()
    # certificate expiry + offline grace: until then a revoked activation must stay listed.
    certificate_valid_until = models.DateTimeField()

    class Meta:
        ordering = ["-activated_at"]
        indexes = [
            models.Index(fields=["licence", "state"], name="activation_licence_state_idx"),
            # Partial, for the stale-activation sweep (active, by last heartbeat): a
            # (state, last_seen_at) index also matched `state = %s`, and on a young table's
            # statistics the planner counted a licence's seats through it (every active
            # activation of every licence).
            models.Index(
                fields=["last_seen_at"],
                name="activation_active_seen_idx",
                condition=models.Q(state="active"),
            ),
            models.Index(
                fields=["certificate_valid_until"],
                name="activation_revocable_idx",
                condition=models.Q(state__in=["deactivated", "revoked"]),
            ),
        ]

    def __str__(self) -> str:
        return f"activation {self.pk} ({self.hostname or self.platform})"

    def __repr__(self) -> str:
        return f"<Activation {self.pk} {self.state}>"


class ActivationEvent(models.Model):
    """Append-only log of seat changes per licence; rate limits count these rows in the same
    transaction (under the licence row lock), so the limit holds across processes."""

    class Kind(models.TextChoices):
        ACTIVATE = "activate", "Activate"
        DEACTIVATE = "deactivate", "Deactivate"

    id = models.BigAutoField(primary_key=True)
    # No index of its own: activation_event_rate_idx starts with licence_id.
    licence = models.ForeignKey(
        "licences.Licence",
        on_delete=models.CASCADE,
        related_name="activation_events",
        db_index=False,
    )
    activation = models.ForeignKey(
        Activation, null=True, on_delete=models.SET_NULL, related_name="events"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    created_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["licence", "kind", "created_at"], name="activation_event_rate_idx")
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.licence_id} {self.created_at:%Y-%m-%d %H:%M:%S}"
