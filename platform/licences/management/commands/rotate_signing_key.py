"""Rotate the signing key (the new key signs from now on); optionally retire an old one."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.audit import Actor
from core.errors import DomainError
from licences.services import signing_key_retire, signing_key_rotate


class Command(BaseCommand):
    help = "Create a new Ed25519 signing key (encrypted under SIGNING_KEY_KEK); --retire KEY_ID."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--retire", metavar="KEY_ID", help="retire this key instead")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = Actor.cli("rotate_signing_key")
        try:
            if options["retire"]:
                row = signing_key_retire(actor=actor, key_id=options["retire"])
                self.stdout.write(f"retired {row.key_id}")
                return
            row = signing_key_rotate(actor=actor)
        except DomainError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        self.stdout.write(f"{row.key_id} {bytes(row.public_key).hex()}")
