"""`manage.py demo` (what `make demo` runs): the licensing story end to end, on the embedded
SQLite database, with no external service.

An operator creates a customer and issues a licence over the API; the licence key is verified
with `licensing`; a device activates with the real `codec-engine activate` (a subprocess with a
temporary SDK state directory), shows its status and heartbeats; the operator revokes the
licence and the device's next heartbeat is refused. Re-runnable on the same database.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import requests
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone
from licences.services import signing_key_ensure

import licensing
from core.audit import Actor
from core.devserver import background_server
from core.models import ApiToken
from core.services import api_token_create, api_token_revoke

DEMO_TOKEN_NAME = "demo-operator"  # noqa: S105 (a label, not a secret)


class Command(BaseCommand):
    help = "Run the end-to-end licensing demo (operator → licence → device → revocation)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--keep-state", action="store_true", help="keep the SDK state dir")

    def handle(self, *args: Any, **options: Any) -> None:
        self.step_no = 0
        self._migrate_if_needed()
        actor = Actor.cli("demo")

        self.step("Signing key")
        key = signing_key_ensure(actor=actor)
        self.say(f"newest signing key {key.key_id} (private half sealed under SIGNING_KEY_KEK)")

        self.step("Operator API token")
        for old in ApiToken.objects.filter(name=DEMO_TOKEN_NAME, revoked_at__isnull=True):
            api_token_revoke(actor=actor, token_id=old.pk)
        token = api_token_create(actor=actor, name=DEMO_TOKEN_NAME, scope=ApiToken.Scope.OPERATOR)
        self.say(f"created operator token ncp_{token.token.prefix}_… (shown once, stored hashed)")

        state_dir = Path(tempfile.mkdtemp(prefix="codec-engine-demo-"))
        try:
            with background_server() as base:
                # Refused requests are part of the story: keep Django's 4xx warnings out of the
                # output (set after the server loaded the WSGI app, which reconfigures logging).
                logging.getLogger("django.request").setLevel(logging.ERROR)
                self.say(f"control plane serving on {base} (background thread)")
                self._story(base, token.secret, state_dir)
        finally:
            if options["keep_state"]:
                self.say(f"SDK state kept in {state_dir}")
            else:
                shutil.rmtree(state_dir, ignore_errors=True)

    # --- the story ---------------------------------------------------------------------------

    def _story(self, base: str, operator_token: str, state_dir: Path) -> None:
        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {operator_token}"

        def call(method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201)) -> Any:
            response = api.request(method, base + path, json=body, timeout=30)
            if response.status_code not in ok:
                raise CommandError(
                    f"{method} {path} → {response.status_code} {response.text[:300]}"
                )
            return response.json()

        self.step("Operator creates the customer (with contract terms)")
        customer = self._get_or_create(
            call,
            "/api/v1/customers/",
            "slug",
            "demo-streaming",
            {
                "name": "Demo Streaming Co",
                "slug": "demo-streaming",
                "contact_email": "ops@demo.example",
            },
        )
        terms_url = f"/api/v1/customers/{customer['id']}/contract-terms/"
        if not call("GET", terms_url)["count"]:
            call(
                "POST",
                terms_url,
                {
                    "effective_from": timezone.now().date().replace(day=1).isoformat(),
                    "revenue_share_percent": "30.00",
                    "value_per_gb": "0.020000",
                    "currency": "EUR",
                    "minimum_monthly_fee": 50000,
                    "billing_time_zone": "Europe/Paris",
                },
            )
        terms = call("GET", terms_url + "in-force/")
        self.say(
            f"customer {customer['name']} ({customer['id']}); "
            f"terms: {terms['revenue_share_percent']}% "
            f"of {terms['value_per_gb']} {terms['currency']}/GB saved, minimum "
            f"{terms['minimum_monthly_fee'] / 100:.2f} {terms['currency']}/month"
        )

        product = self._get_or_create(
            call,
            "/api/v1/products/",
            "code",
            "ncodec",
            {"code": "ncodec", "name": "Neural codec SDK"},
        )
        policy = self._get_or_create(
            call,
            "/api/v1/policies/",
            "code",
            "demo-edge",
            {
                "product_id": product["id"],
                "code": "demo-edge",
                "name": "Edge servers (demo)",
                "entitlements": {
                    "features": ["encode", "decode"],
                    "max_width": 3840,
                    "max_height": 2160,
                },
                "max_activations": 2,
                "licence_validity_days": 365,
                "certificate_lifetime_s": 86400,
                "heartbeat_window_s": 3600,
                "offline_grace_s": 3 * 86400,
                "activation_rate_limit": 100,
                "deactivation_rate_limit": 100,
            },
        )

        self.step("Operator issues a licence")
        licence = call(
            "POST", "/api/v1/licences/", {"customer_id": customer["id"], "policy_id": policy["id"]}
        )
        self.say(
            f"licence {licence['id']} ({policy['code']}, {licence['max_activations']} seats), key:"
        )
        self.stdout.write(f"    {licence['key']}")
        keyring = licensing.Keyring.from_json(
            requests.get(base + "/.well-known/codec-licensing/keyring.json", timeout=30).text
        )
        claims = licensing.verify_licence_key(licence["key"], keyring)
        self.say(
            f"verified with licensing against the public keyring: key {claims.key_id}, product "
            f"{claims.product}, features {','.join(claims.entitlements.features)}, expires "
            f"{dt.datetime.fromtimestamp(claims.expires_at, tz=dt.UTC):%Y-%m-%d}"
        )

        env = {
            **os.environ,
            "CODEC_ENGINE_HOME": str(state_dir),
            "CODEC_ENGINE_SERVER": base,
            "PYTHONPATH": os.pathsep.join(
                [str(settings.BASE_DIR), os.environ.get("PYTHONPATH", "")]
            ),
        }
        self.step("Device: codec-engine activate")
        self.engine(
            ["activate", "--licence-key", licence["key"], "--hostname", "demo-edge-01"], env
        )
        self.step("Device: codec-engine status (offline check)")
        self.engine(["status"], env)
        self.step("Device: codec-engine heartbeat")
        self.engine(["heartbeat"], env)
        seats = call("GET", f"/api/v1/licences/{licence['id']}/")["active_activations"]
        self.say(f"the operator sees {seats} active activation(s) on the licence")

        self.step("Operator revokes the licence")
        revoked = call("POST", f"/api/v1/licences/{licence['id']}/revoke/", {"reason": "demo"})
        serial = requests.get(base + "/api/v1/sdk/revocations", timeout=30).json()["serial"]
        self.say(f"licence state: {revoked['state']}; revocation list now at serial {serial}")

        self.step("Device: codec-engine heartbeat (refused)")
        code = self.engine(["heartbeat"], env, expect_failure=True)
        self.step("Device: codec-engine status (refused offline too)")
        self.engine(["status"], env, expect_failure=True)

        self.stdout.write("")
        self.stdout.write(
            self.style.SUCCESS(
                "Demo complete: customer → licence → activation → heartbeat → revocation "
                f"(refused heartbeat exit code {code})."
            )
        )

    # --- helpers -----------------------------------------------------------------------------

    def _get_or_create(
        self, call: Any, url: str, field: str, value: str, body: dict[str, Any]
    ) -> Any:
        existing = [x for x in call("GET", url + "?limit=500")["results"] if x[field] == value]
        return existing[0] if existing else call("POST", url, body)

    def engine(self, argv: list[str], env: dict[str, str], *, expect_failure: bool = False) -> int:
        command = _engine_command() + argv
        shown = [
            "<licence key>" if i and argv[i - 1] == "--licence-key" else a
            for i, a in enumerate(argv)
        ]
        self.stdout.write(f"  $ codec-engine {' '.join(shown)}")
        result = subprocess.run(
            command,
            env=env,
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        for line in (result.stdout + result.stderr).strip().splitlines():
            self.stdout.write(f"    {line}")
        failed = result.returncode != 0
        if failed != expect_failure:
            raise CommandError(f"codec-engine {argv[0]} exited {result.returncode} unexpectedly")
        self.stdout.write(f"    (exit code {result.returncode})")
        return result.returncode

    def step(self, title: str) -> None:
        self.step_no += 1
        self.stdout.write("")
        self.stdout.write(self.style.MIGRATE_HEADING(f"[{self.step_no}] {title}"))

    def say(self, text: str) -> None:
        self.stdout.write(f"    {text}")

    def _migrate_if_needed(self) -> None:
        executor = MigrationExecutor(connection)
        if executor.migration_plan(executor.loader.graph.leaf_nodes()):
            self.say("applying migrations")
            call_command("migrate", interactive=False, verbosity=0)


def _engine_command() -> list[str]:
    """The installed `codec-engine` console script, else the same entry point via -m."""
    script = shutil.which("codec-engine", path=str(Path(sys.executable).parent))
    if script:
        return [script]
    return [sys.executable, "-m", "codec_engine.cli"]
