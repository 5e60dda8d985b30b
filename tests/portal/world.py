"""A small world for portal tests, built with the apps' own services.

Personas (healthchecks style): alice is an admin of Acme, victor a viewer of Acme, bob an
admin of Globex. Each customer has a licence with one active device (activated through the
real SDK endpoint), an API token, a finished encode job and a finalized invoice.
"""

from __future__ import annotations

import datetime as dt
import io
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from activation.models import Activation
from billing.models import Invoice
from billing.services import billing_period_close
from customers.models import Customer, CustomerUser
from customers.services import contract_terms_create, customer_create, customer_user_add
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client
from django.utils import timezone
from jobs.models import EncodeJob
from licences.models import Licence
from licences.services import licence_issue, policy_create, product_create, signing_key_ensure
from metering.services import usage_record_for_job
from PIL import Image
from portal.selectors import month_start

from core.models import ApiToken
from core.services import api_token_create
from tests.core.fixtures import TEST_ACTOR, Device

PASSWORD = "correct horse battery staple 42"
GB = 10**9


@dataclass
class Tenant:
    customer: Customer
    licence: Licence
    activation: Activation
    token: ApiToken
    job: EncodeJob
    invoice: Invoice
    members: dict[str, CustomerUser] = field(default_factory=dict)


@dataclass
class World:
    acme: Tenant
    globex: Tenant


def png(width: int = 64, height: int = 48, shade: int = 0) -> bytes:
    image = Image.new("RGB", (width, height))
    image.putdata(
        [((x * 4 + shade) % 256, (y * 5) % 256, 128) for y in range(height) for x in range(width)]
    )
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def photo(width: int, height: int) -> bytes:
    """A smooth synthetic picture with some texture (compresses like a photo, not noise)."""
    import numpy as np

    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    base = np.stack(
        [
            128 + 90 * np.sin(x / 17),
            128 + 80 * np.cos(y / 13) * np.sin(x / 29),
            128 + 60 * np.sin((x + y) / 21),
        ],
        axis=-1,
    )
    pixels = np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def add_user(customer: Customer, username: str, role: str) -> CustomerUser:
    membership = customer_user_add(
        actor=TEST_ACTOR,
        customer_id=customer.pk,
        username=username,
        email=f"{username}@example.com",
        role=role,
    )
    membership.user.set_password(PASSWORD)
    membership.user.save(update_fields=["password"])
    return membership


def _activate(licence: Licence, hostname: str) -> Activation:
    device = Device(hostname=hostname)
    response = Client().post(
        "/api/v1/sdk/activate",
        device.activation_body(licence.key),
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    return Activation.objects.get(pk=response.json()["activation_id"])


def _finished_job(customer: Customer, licence: Licence, name: str) -> EncodeJob:
    """A succeeded job as the worker leaves it (files in storage, metrics), without running
    the codec: the client-level tests are about pages and access, not encoding."""
    job = EncodeJob(
        customer=customer,
        licence=licence,
        created_by="tests",
        kind=EncodeJob.Kind.IMAGE,
        quality=4,
        input_name=name,
        input_bytes=5000,
        width=64,
        height=48,
        frame_count=1,
    )
    folder = f"jobs/{customer.pk}/{job.pk}"
    job.input_file.name = default_storage.save(f"{folder}/input.png", ContentFile(png()))
    job.output_file.name = default_storage.save(f"{folder}/output.nce", ContentFile(b"NCE" * 100))
    job.preview_file.name = default_storage.save(f"{folder}/preview.png", ContentFile(png(shade=9)))
    job.state = EncodeJob.State.SUCCEEDED
    job.progress = 100
    job.frames_done = 1
    job.output_bytes = 300
    job.finished_at = timezone.now()
    job.metrics = {
        "output_bytes": 300,
        "baseline_bytes": 900,
        "bytes_saved": 600,
        "saving": 0.666667,
        "bpp": 0.78,
        "quality": {
            "ours": {"psnr": 36.1, "psnr_y": 37.2, "ms_ssim": 0.981},
            "baseline": {"psnr": 36.3, "psnr_y": 37.0, "ms_ssim": 0.975},
        },
        "baseline": {"codec": "x265", "parameter": {"name": "qp", "value": 30}, "matched": True},
    }
    job.save(force_insert=True)
    return job


def _usage(customer: Customer, at: dt.datetime, saved_gb: int) -> None:
    usage_record_for_job(
        actor=TEST_ACTOR,
        job_id=uuid.uuid4(),
        customer_id=customer.pk,
        event_time=at,
        frames=100,
        pixels=100 * 1920 * 1080,
        duration_ms=4000,
        bytes_delivered=2 * saved_gb * GB,
        baseline_bytes=3 * saved_gb * GB,
        baseline_method="x265.psnr.matched",
        now=at + dt.timedelta(minutes=5),
    )


def _tenant(slug: str, name: str, policy_id: Any, admin: str, shade: int) -> Tenant:
    customer = customer_create(actor=TEST_ACTOR, name=name, slug=slug)
    contract_terms_create(
        actor=TEST_ACTOR,
        customer_id=customer.pk,
        effective_from=dt.date(2025, 1, 1),
        revenue_share_percent=Decimal("30.00"),
        value_per_gb=Decimal("0.020000"),
        currency="EUR",
        minimum_monthly_fee=10_000,
        billing_time_zone="UTC",
    )
    licence = licence_issue(actor=TEST_ACTOR, customer_id=customer.pk, policy_id=policy_id)
    activation = _activate(licence, hostname=f"{slug}-edge-01")
    token = api_token_create(
        actor=TEST_ACTOR, name=f"{slug} pipeline", scope="customer", customer_id=customer.pk
    ).token
    job = _finished_job(customer, licence, f"{slug}-poster.png")
    now = timezone.now()
    this_month = now.replace(day=1, hour=12, minute=0, second=0, microsecond=0)
    for back, gb in enumerate((40 + shade, 120, 95, 140, 60, 75, 30)):
        first = month_start(this_month.date(), back)
        at = this_month.replace(year=first.year, month=first.month, day=1 if back == 0 else 3)
        _usage(customer, min(at, now - dt.timedelta(minutes=10)), gb)
    closed = (this_month - dt.timedelta(days=40)).date().replace(day=1)
    report = billing_period_close(
        actor=TEST_ACTOR, month=closed, customer_ids=[customer.pk], now=now
    )
    assert report.created, report
    tenant = Tenant(customer, licence, activation, token, job, report.created[0])
    tenant.members[admin] = add_user(customer, admin, CustomerUser.Role.ADMIN)
    return tenant


def build_world() -> World:
    signing_key_ensure(actor=TEST_ACTOR)
    product = product_create(actor=TEST_ACTOR, code="ncodec", name="Neural codec SDK")
    policy = policy_create(
        actor=TEST_ACTOR,
        product_id=product.pk,
        code="broadcast",
        name="Broadcast",
        entitlements={"features": ["encode", "decode"], "max_width": 3840, "max_height": 2160},
        max_activations=5,
        licence_validity_days=365,
        certificate_lifetime_s=86400,
        heartbeat_window_s=3600,
        offline_grace_s=3 * 86400,
        activation_rate_limit=20,
        activation_rate_window_s=3600,
        deactivation_rate_limit=10,
        deactivation_rate_window_s=3600,
    )
    acme = _tenant("acme", "Acme Streaming", policy.pk, "alice", 0)
    acme.members["victor"] = add_user(acme.customer, "victor", CustomerUser.Role.VIEWER)
    globex = _tenant("globex", "Globex Video", policy.pk, "bob", 7)
    return World(acme=acme, globex=globex)
