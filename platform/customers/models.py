"""Customers (companies), their users, and the contract terms billing will use."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class Customer(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=64, unique=True)
    contact_email = models.EmailField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class CustomerUser(models.Model):
    """Membership of a Django user in a customer, with a role (portal permissions)."""

    class Role(models.TextChoices):
        ADMIN = "admin", "Admin"
        VIEWER = "viewer", "Viewer"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="customer_memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["customer", "user"], name="customer_user_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.customer} ({self.role})"


class ContractTerms(models.Model):
    """One version of a customer's commercial terms, in force from `effective_from` (a date in
    the billing time zone) until the next version's date. Versions are never edited in place."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="contract_terms")
    effective_from = models.DateField()
    revenue_share_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("100"))],
        help_text="Our share of the value of bandwidth saved, in percent.",
    )
    value_per_gb = models.DecimalField(
        max_digits=12,
        decimal_places=6,
        validators=[MinValueValidator(Decimal("0"))],
        help_text="What one GB delivered costs the customer (their CDN price), in `currency`.",
    )
    currency = models.CharField(max_length=3, help_text="ISO 4217 code, upper case.")
    minimum_monthly_fee = models.BigIntegerField(
        validators=[MinValueValidator(0)], help_text="In minor units of `currency`."
    )
    billing_time_zone = models.CharField(max_length=64, default="UTC")
    payment_terms_days = models.PositiveSmallIntegerField(default=30)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["customer", "-effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "effective_from"], name="contract_terms_one_per_date"
            ),
            models.CheckConstraint(
                name="contract_terms_share_0_100",
                condition=models.Q(revenue_share_percent__gte=0, revenue_share_percent__lte=100),
            ),
            models.CheckConstraint(
                name="contract_terms_amounts_non_negative",
                condition=models.Q(value_per_gb__gte=0, minimum_monthly_fee__gte=0),
            ),
            models.CheckConstraint(
                name="contract_terms_currency_iso",
                condition=models.Q(currency__regex=r"^[A-Z]{3}$"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.customer} terms from {self.effective_from}"
