"""Create an operator API token (printed once) and, optionally, a Django superuser."""

from __future__ import annotations

import os
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.audit import Actor
from core.models import ApiToken
from core.services import api_token_create


class Command(BaseCommand):
    help = "Create an operator API token (shown once); --superuser also creates an admin login."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", default="operator", help="a label for the token")
        parser.add_argument("--superuser", metavar="USERNAME", help="also create this superuser")
        parser.add_argument("--email", default="", help="the superuser's e-mail")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = Actor.cli("createoperator")
        if options["superuser"]:
            self._superuser(options["superuser"], options["email"])
        issued = api_token_create(actor=actor, name=options["name"], scope=ApiToken.Scope.OPERATOR)
        self.stderr.write(
            f"Operator token {issued.token.prefix} ({options['name']}) created. It is shown once:"
        )
        self.stdout.write(issued.secret)

    def _superuser(self, username: str, email: str) -> None:
        users = get_user_model()
        if users.objects.filter(username=username).exists():
            raise CommandError(f"user {username!r} exists")
        # The password comes from the environment (never the command line, never printed).
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
        user = users.objects.create_superuser(username=username, email=email, password=password)
        if password is None:
            self.stderr.write(
                f"Superuser {user.get_username()} created without a password: "
                f"run `manage.py changepassword {username}`."
            )
        else:
            self.stderr.write(f"Superuser {user.get_username()} created.")
