"""`manage.py demo_jobs` (chained into `make demo`): an encode job end to end.

For the demo customer (created, with a licence, when missing) a small image is submitted over
the real HTTP API with a customer token; with no broker configured the job runs in-process
when its row commits (the embedded default), otherwise a worker on the "encode" queue runs
it. Prints bytes in and out, the matched-quality baseline and the bytes saved.
"""

from __future__ import annotations

import io
import logging
import time
from typing import Any

import numpy as np
import requests
from customers.models import Customer
from customers.services import customer_create
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from licences.models import Licence, LicencePolicy, Product
from licences.services import licence_issue, policy_create, product_create, signing_key_ensure
from PIL import Image

from core.audit import Actor
from core.devserver import background_server
from core.models import ApiToken
from core.services import api_token_create, api_token_revoke

DEMO_SLUG = "demo-streaming"
DEMO_TOKEN_NAME = "demo-jobs"  # noqa: S105 (a label, not a secret)


def demo_picture(width: int = 192, height: int = 128) -> bytes:
    """A natural photo the codec was not trained on (scikit-image's "chelsea", a test image
    of the training set), downscaled; a synthetic picture when scikit-image is absent."""
    try:
        import skimage
    except ImportError:
        return _synthetic_picture(width, height)
    from pathlib import Path

    with Image.open(Path(skimage.__file__).resolve().parent / "data" / "chelsea.png") as im:
        small = im.convert("RGB").resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS)
    left, top = (small.width - width) // 2, (small.height - height) // 2
    buf = io.BytesIO()
    small.crop((left, top, left + width, top + height)).save(buf, format="PNG")
    return buf.getvalue()


def _synthetic_picture(width: int, height: int) -> bytes:
    """Smooth gradients, a few shapes, light texture (deterministic)."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.stack(
        [
            120 + 80 * np.sin(x / 23.0) * np.cos(y / 31.0),
            110 + 70 * np.cos((x + 2 * y) / 37.0),
            140 + 60 * np.sin((2 * x - y) / 29.0),
        ],
        axis=-1,
    )
    img[(x - width * 0.3) ** 2 + (y - height * 0.5) ** 2 < (height / 4) ** 2] = (230, 200, 60)
    img[int(height * 0.2) : int(height * 0.8), int(width * 0.6) : int(width * 0.85)] = (40, 90, 160)
    img += rng.normal(0, 3, img.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


class Command(BaseCommand):
    help = "Submit a small image encode job over the API for the demo customer; show bytes saved."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--quality", type=int, default=4, help="1 (smallest) .. 8 (best)")
        parser.add_argument("--baseline", default="x265", help="baseline codec (default x265)")
        parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for it")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = Actor.cli("demo_jobs")
        customer, licence = _demo_customer_and_licence(actor)
        self.say(f"customer {customer.name} ({customer.slug}), licence {licence.pk}")
        for old in ApiToken.objects.filter(name=DEMO_TOKEN_NAME, revoked_at__isnull=True):
            api_token_revoke(actor=actor, token_id=old.pk)
        token = api_token_create(
            actor=actor,
            name=DEMO_TOKEN_NAME,
            scope=ApiToken.Scope.CUSTOMER,
            customer_id=customer.pk,
        )
        mode = (
            "in-process (no CELERY_BROKER_URL: the embedded default)"
            if settings.CELERY_TASK_ALWAYS_EAGER
            else "by a worker on the 'encode' queue"
        )
        picture = demo_picture()
        try:
            with background_server() as base:
                # Refusals and celery's per-task lines are not part of the story.
                for name in ("django.request", "celery", "kombu"):
                    logging.getLogger(name).setLevel(logging.ERROR)
                session = requests.Session()
                session.headers["Authorization"] = f"Bearer {token.secret}"
                started = time.perf_counter()
                response = session.post(
                    f"{base}/api/v1/jobs/",
                    files={"input": ("demo.png", picture, "image/png")},
                    data={"quality": options["quality"], "baseline": options["baseline"]},
                    timeout=options["timeout"],
                )
                if response.status_code != 202:
                    raise CommandError(
                        f"POST /api/v1/jobs/ → {response.status_code} {response.text[:300]}"
                    )
                job = response.json()
                self.say(f"POST /api/v1/jobs/ → 202, job {job['id']}; it runs {mode}")
                deadline = time.monotonic() + options["timeout"]
                while job["state"] in ("queued", "running") and time.monotonic() < deadline:
                    time.sleep(0.2)
                    job = session.get(f"{base}/api/v1/jobs/{job['id']}/", timeout=30).json()
                elapsed = time.perf_counter() - started
                if job["state"] == "succeeded":
                    output = session.get(f"{base}{job['links']['output']}", timeout=30)
                    preview = session.get(f"{base}{job['links']['preview']}", timeout=30)
                    self.say(
                        f"downloaded {len(output.content):,} bytes of bitstream and a "
                        f"{len(preview.content):,}-byte PNG preview"
                    )
        finally:
            api_token_revoke(actor=actor, token_id=token.token.pk)
        self._report(job, elapsed)

    def _report(self, job: dict[str, Any], elapsed: float) -> None:
        if job["state"] != "succeeded":
            failure = job.get("failure") or {}
            raise CommandError(
                f"job {job['id']} is {job['state']}: {failure.get('code', '')} "
                f"{failure.get('message', '')}".strip()
            )
        m = job["metrics"]
        ours, theirs = m["quality"]["ours"], m["quality"]["baseline"]
        base = m["baseline"]
        note = "" if base["matched"] else " (never reached our quality: an underestimate)"
        self.say(f"job {job['id']} succeeded in {elapsed:.2f} s (attempt {job['attempts']})")
        rows = [
            ("input", m["input_bytes"], f"PNG {m['width']}x{m['height']}"),
            (
                "output",
                m["output_bytes"],
                f"{m['model']['version']} quality {m['model']['quality']}, "
                f"PSNR {ours['psnr']:.2f} dB, {m['bpp']:.3f} bpp",
            ),
            (
                "baseline",
                m["baseline_bytes"],
                f"{base['codec']} {base['parameter']['name']} {base['parameter']['value']}, "
                f"PSNR {theirs['psnr']:.2f} dB, matched on {base['matched_metric']}{note}",
            ),
            ("saved", m["bytes_saved"], f"{m['saving'] * 100:+.1f}% of the baseline bytes"),
        ]
        for label, value, detail in rows:
            self.say(f"  {label:<9}{value:>10,} bytes  {detail}")

    def say(self, text: str) -> None:
        self.stdout.write(f"    {text}")


def _demo_customer_and_licence(actor: Actor) -> tuple[Customer, Licence]:
    """The demo customer and an active licence of it that allows encoding (created if none)."""
    customer = Customer.objects.filter(slug=DEMO_SLUG).first() or customer_create(
        actor=actor, name="Demo Streaming Co", slug=DEMO_SLUG, contact_email="ops@demo.example"
    )
    now = timezone.now()
    for licence in Licence.objects.filter(
        customer=customer, state=Licence.State.ACTIVE, not_before__lte=now, expires_at__gt=now
    ).order_by("-issued_at"):
        if "encode" in (licence.entitlements or {}).get("features", []):
            return customer, licence
    signing_key_ensure(actor=actor)
    product = Product.objects.filter(code="ncodec").first() or product_create(
        actor=actor, code="ncodec", name="Neural codec SDK"
    )
    policy = LicencePolicy.objects.filter(product=product, code="demo-edge").first()
    if policy is None:
        policy = policy_create(
            actor=actor,
            product_id=product.pk,
            code="demo-edge",
            name="Edge servers (demo)",
            entitlements={"features": ["encode", "decode"], "max_width": 3840, "max_height": 2160},
            max_activations=2,
            licence_validity_days=365,
            certificate_lifetime_s=86400,
            heartbeat_window_s=3600,
            offline_grace_s=3 * 86400,
            activation_rate_limit=100,
            deactivation_rate_limit=100,
        )
    return customer, licence_issue(actor=actor, customer_id=customer.pk, policy_id=policy.pk)
