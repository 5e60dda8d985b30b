"""Create a customer, optionally with an admin user and a customer API token."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.audit import Actor
from core.errors import DomainError
from core.models import ApiToken
from core.services import api_token_create
from customers.models import CustomerUser
from customers.services import customer_create, customer_user_add


class Command(BaseCommand):
    help = "Create a customer (prints its id); --token also prints a customer API token once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True)
        parser.add_argument("--slug", required=True)
        parser.add_argument("--email", default="", help="contact e-mail")
        parser.add_argument("--admin-user", metavar="USERNAME", help="add this user as admin")
        parser.add_argument("--token", action="store_true", help="create a customer API token")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = Actor.cli("create_customer")
        try:
            customer = customer_create(
                actor=actor,
                name=options["name"],
                slug=options["slug"],
                contact_email=options["email"],
            )
            if options["admin_user"]:
                customer_user_add(
                    actor=actor,
                    customer_id=customer.pk,
                    username=options["admin_user"],
                    role=CustomerUser.Role.ADMIN,
                )
            self.stdout.write(str(customer.pk))
            if options["token"]:
                issued = api_token_create(
                    actor=actor,
                    name=f"{customer.slug}-api",
                    scope=ApiToken.Scope.CUSTOMER,
                    customer_id=customer.pk,
                )
                self.stderr.write("Customer API token (shown once):")
                self.stdout.write(issued.secret)
        except DomainError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
