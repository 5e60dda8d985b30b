"""Issue a licence from a policy for a customer and print its key."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from customers.models import Customer
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from core.audit import Actor
from core.errors import DomainError
from licences.models import LicencePolicy
from licences.services import licence_issue


class Command(BaseCommand):
    help = "Issue a licence (customer slug, policy code) and print the licence key on stdout."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--customer", required=True, help="customer slug or id")
        parser.add_argument("--policy", required=True, help="policy code (or id)")
        parser.add_argument("--product", help="product code, when the policy code is ambiguous")
        parser.add_argument("--max-activations", type=int, help="override the policy's seats")
        parser.add_argument("--days", type=int, help="override the policy's validity")

    def handle(self, *args: Any, **options: Any) -> None:
        customer = _one(Customer.objects.all(), options["customer"], "slug", "customer")
        policies = LicencePolicy.objects.all()
        if options["product"]:
            policies = policies.filter(product__code=options["product"])
        policy = _one(policies, options["policy"], "code", "policy")
        expires_at = None
        if options["days"] is not None:
            if options["days"] < 1:
                raise CommandError("--days must be at least 1")
            expires_at = timezone.now() + dt.timedelta(days=options["days"])
        if options["max_activations"] is not None and options["max_activations"] < 1:
            raise CommandError("--max-activations must be at least 1")
        try:
            licence = licence_issue(
                actor=Actor.cli("issue_licence"),
                customer_id=customer.pk,
                policy_id=policy.pk,
                expires_at=expires_at,
                max_activations=options["max_activations"],
            )
        except DomainError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        self.stderr.write(
            f"Licence {licence.pk} for {customer.slug} ({policy}), {licence.max_activations} "
            f"seat(s), valid until {licence.expires_at:%Y-%m-%d}. Key:"
        )
        self.stdout.write(licence.key)


def _one(qs: Any, value: str, field: str, what: str) -> Any:
    try:
        matches = list(qs.filter(pk=uuid.UUID(value)))
    except ValueError:
        matches = list(qs.filter(**{field: value}))
    if len(matches) != 1:
        raise CommandError(
            f"no such {what}: {value!r}" if not matches else f"{what} {value!r} is ambiguous"
        )
    return matches[0]
