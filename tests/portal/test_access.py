"""Access control of the portal over Django's test client: sign-in and lockout, CSRF on every
form, viewers refused on every POST, and 404 for every object of another customer."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pyotp
import pytest
from activation.models import Activation
from customers.models import CustomerUser
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from django.utils import timezone
from jobs.models import EncodeJob
from portal import services as portal_services
from portal.models import LoginFailure, TotpDevice

from core import sealing
from core.models import ApiToken, AuditLog
from tests.portal.conftest import signed_in
from tests.portal.world import PASSWORD, World

pytestmark = pytest.mark.django_db

PAGES = [
    "/portal/",
    "/portal/licences/",
    "/portal/devices/",
    "/portal/tokens/",
    "/portal/jobs/",
    "/portal/invoices/",
    "/portal/team/",
    "/portal/account/",
]


def object_urls(world: World) -> list[tuple[str, str]]:
    """(method, url) of every page about one of Globex's objects."""
    g = world.globex
    member = g.members["bob"].pk
    return [
        ("get", f"/portal/licences/{g.licence.pk}/"),
        ("get", f"/portal/devices/{g.activation.pk}/deactivate/"),
        ("post", f"/portal/devices/{g.activation.pk}/deactivate/"),
        ("get", f"/portal/tokens/{g.token.pk}/revoke/"),
        ("post", f"/portal/tokens/{g.token.pk}/revoke/"),
        ("get", f"/portal/jobs/{g.job.pk}/"),
        ("get", f"/portal/jobs/{g.job.pk}/status/"),
        ("post", f"/portal/jobs/{g.job.pk}/cancel/"),
        ("get", f"/portal/jobs/{g.job.pk}/output/"),
        ("get", f"/portal/jobs/{g.job.pk}/preview.png"),
        ("get", f"/portal/jobs/{g.job.pk}/original.png"),
        ("get", f"/portal/invoices/{g.invoice.pk}/"),
        ("get", f"/portal/invoices/{g.invoice.pk}/invoice.pdf"),
        ("post", f"/portal/team/{member}/role/"),
        ("get", f"/portal/team/{member}/remove/"),
        ("post", f"/portal/team/{member}/remove/"),
    ]


# --- signing in --------------------------------------------------------------------------------


def test_pages_need_sign_in(world: World) -> None:
    client = Client()
    for url in PAGES:
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(f"/portal/sign-in/?next={url}")
    assert client.get("/").headers["Location"] == "/portal/"


def test_sign_in_shows_own_dashboard(world: World) -> None:
    client = Client()
    response = client.post(
        "/portal/sign-in/",
        {"username": "alice", "password": PASSWORD, "next": "/portal/licences/"},
    )
    assert response.status_code == 302 and response["Location"] == "/portal/licences/"
    page = client.get("/portal/").content.decode()
    assert "Acme Streaming" in page and "Globex" not in page
    assert "Bandwidth saved this month" in page and '<svg class="chart"' in page
    # This month: 40 GB saved of 120 GB baseline, at 0.02 EUR/GB; our 30% share of it.
    assert "40.00 GB" in page and "worth 0.80 EUR" in page and "33.3%" in page
    assert "0.24 EUR" in page


def test_sign_in_refuses_an_external_next(world: World) -> None:
    client = Client()
    response = client.post(
        "/portal/sign-in/",
        {"username": "alice", "password": PASSWORD, "next": "https://evil.example/"},
    )
    assert response["Location"] == "/portal/"


def test_lockout_after_repeated_failures(world: World) -> None:
    client = Client(REMOTE_ADDR="203.0.113.9")
    for _ in range(5):
        response = client.post("/portal/sign-in/", {"username": "alice", "password": "nope"})
    assert response.status_code == 429
    assert "sign-in is paused" in response.content.decode()
    # The right password is refused too while locked, and is not even checked.
    response = client.post("/portal/sign-in/", {"username": "Alice", "password": PASSWORD})
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
    assert LoginFailure.objects.filter(username="alice", ip="203.0.113.9").count() == 5
    # Another address is not locked out of the same account.
    signed_in("alice", REMOTE_ADDR="198.51.100.7")
    # Once the window has passed, the first address may sign in again; failures are cleared.
    LoginFailure.objects.update(created_at=timezone.now() - dt.timedelta(minutes=16))
    signed_in("alice", REMOTE_ADDR="203.0.113.9")
    assert not LoginFailure.objects.filter(username="alice", ip="203.0.113.9").exists()


def test_csrf_is_enforced_and_present_in_every_form(world: World) -> None:
    client = Client(enforce_csrf_checks=True)
    refused = client.post("/portal/sign-in/", {"username": "alice", "password": PASSWORD})
    assert refused.status_code == 403
    page = client.get("/portal/sign-in/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token is not None
    response = client.post(
        "/portal/sign-in/",
        {"username": "alice", "password": PASSWORD, "csrfmiddlewaretoken": token.group(1)},
    )
    assert response.status_code == 302
    w = world
    pages = [
        *PAGES,
        f"/portal/licences/{w.acme.licence.pk}/",
        f"/portal/devices/{w.acme.activation.pk}/deactivate/",
        f"/portal/tokens/{w.acme.token.pk}/revoke/",
        f"/portal/jobs/{w.acme.job.pk}/",
        f"/portal/team/{w.acme.members['victor'].pk}/remove/",
        "/portal/password-reset/",
    ]
    forms_seen = 0
    for url in pages:
        html = client.get(url).content.decode()
        for form in re.findall(r"<form[^>]*method=\"post\"[^>]*>(.*?)</form>", html, re.S):
            forms_seen += 1
            assert "csrfmiddlewaretoken" in form, url
    assert forms_seen >= 15


# --- viewers change nothing --------------------------------------------------------------------


def _state(world: World) -> tuple[object, ...]:
    a = world.acme
    return (
        ApiToken.objects.filter(customer=a.customer, revoked_at__isnull=True).count(),
        Activation.objects.get(pk=a.activation.pk).state,
        EncodeJob.objects.filter(customer=a.customer).count(),
        sorted(CustomerUser.objects.filter(customer=a.customer).values_list("user_id", "role")),
        get_user_model().objects.count(),
    )


def test_viewer_posts_are_refused(world: World, victor: Client) -> None:
    a = world.acme
    alice_member = a.members["alice"].pk
    queued = EncodeJob.objects.create(
        customer=a.customer,
        licence=a.licence,
        kind="image",
        quality=4,
        input_name="q.png",
        input_bytes=1,
        width=8,
        height=8,
        frame_count=1,
    )
    before = _state(world)
    audit_before = AuditLog.objects.count()
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.portal.world import png

    posts: list[tuple[str, dict[str, object]]] = [
        ("/portal/tokens/", {"name": "sneaky"}),
        (f"/portal/tokens/{a.token.pk}/revoke/", {}),
        (f"/portal/devices/{a.activation.pk}/deactivate/", {}),
        ("/portal/jobs/", {"input": SimpleUploadedFile("x.png", png()), "quality": 4}),
        (f"/portal/jobs/{queued.pk}/cancel/", {}),
        ("/portal/team/", {"username": "mallory", "email": "m@example.com", "role": "admin"}),
        (f"/portal/team/{alice_member}/role/", {"role": "viewer"}),
        (f"/portal/team/{alice_member}/remove/", {}),
    ]
    for url, data in posts:
        response = victor.post(url, data)
        assert response.status_code == 403, url
        assert "You cannot change this" in response.content.decode()
    assert _state(world) == before
    assert EncodeJob.objects.get(pk=queued.pk).state == EncodeJob.State.QUEUED
    assert AuditLog.objects.count() == audit_before
    # …and the pages offer them no buttons to begin with.
    for url in (
        "/portal/tokens/",
        "/portal/jobs/",
        "/portal/team/",
        f"/portal/licences/{a.licence.pk}/",
    ):
        html = victor.get(url).content.decode()
        assert "Create token" not in html and "Upload and encode" not in html
        assert "Deactivate" not in html and "Send invitation" not in html and "Remove" not in html


# --- no cross-customer data --------------------------------------------------------------------


def test_another_customers_objects_are_404(world: World, alice: Client) -> None:
    before = (
        Activation.objects.get(pk=world.globex.activation.pk).state,
        ApiToken.objects.get(pk=world.globex.token.pk).revoked_at,
        CustomerUser.objects.filter(customer=world.globex.customer).count(),
    )
    for method, url in object_urls(world):
        data = {"role": "viewer"} if url.endswith("/role/") else {}
        response = getattr(alice, method)(url, data)
        assert response.status_code == 404, (method, url, response.status_code)
    after = (
        Activation.objects.get(pk=world.globex.activation.pk).state,
        ApiToken.objects.get(pk=world.globex.token.pk).revoked_at,
        CustomerUser.objects.filter(customer=world.globex.customer).count(),
    )
    assert after == before


def test_lists_show_only_own_data(world: World, alice: Client) -> None:
    g = world.globex
    secrets_of_globex = [
        "Globex",
        "globex",
        str(g.licence.pk),
        str(g.activation.pk),
        g.token.prefix,
        str(g.job.pk),
        str(g.invoice.pk),
        g.invoice.number or "",
        "bob",
    ]
    for url in PAGES:
        html = alice.get(url).content.decode()
        for needle in secrets_of_globex:
            assert needle not in html, (url, needle)


def test_user_without_customer_sees_no_portal(world: World) -> None:
    user = get_user_model().objects.create_user("olga", password=PASSWORD, is_staff=True)
    client = Client()
    client.force_login(user)
    response = client.get("/portal/")
    assert response.status_code == 403
    assert "not linked to a customer" in response.content.decode()


# --- the admin's own actions -------------------------------------------------------------------


def test_token_is_shown_once_and_revocable(world: World, alice: Client) -> None:
    response = alice.post("/portal/tokens/", {"name": "CI pipeline"})
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    secret = re.search(r'<code id="token-secret">([^<]+)</code>', response.content.decode())
    assert secret is not None
    token = ApiToken.objects.get(name="CI pipeline")
    assert token.customer_id == world.acme.customer.pk and token.created_by == "portal:alice"
    assert secret.group(1) not in alice.get("/portal/tokens/").content.decode()
    assert secret.group(1) not in str(ApiToken.objects.filter(pk=token.pk).values().get())
    # The new token works against the API as Acme.
    api = Client(HTTP_AUTHORIZATION=f"Bearer {secret.group(1)}")
    assert api.get("/api/v1/jobs/").status_code == 200
    assert alice.get(f"/portal/tokens/{token.pk}/revoke/").status_code == 200
    assert alice.post(f"/portal/tokens/{token.pk}/revoke/").status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert api.get("/api/v1/jobs/").status_code == 401
    assert AuditLog.objects.filter(action="api_token.revoke", actor_label="portal:alice").exists()


def test_deactivate_device_after_confirmation(world: World, alice: Client) -> None:
    url = f"/portal/devices/{world.acme.activation.pk}/deactivate/"
    page = alice.get(url).content.decode()
    assert "Deactivate this device?" in page and "acme-edge-01" in page
    assert Activation.objects.get(pk=world.acme.activation.pk).state == "active"
    response = alice.post(url)
    assert response.status_code == 302
    assert Activation.objects.get(pk=world.acme.activation.pk).state == "deactivated"
    again = alice.post(url, follow=True).content.decode()
    assert "deactivated" in again.lower()


def test_invite_set_password_change_role_and_remove(
    world: World, alice: Client, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = alice.post(
            "/portal/team/", {"username": "carol", "email": "carol@example.com", "role": "viewer"}
        )
    html = response.content.decode()
    link = re.search(r'<code id="invite-link">([^<]+)</code>', html)
    assert link is not None
    carol = get_user_model().objects.get(username="carol")
    assert not carol.has_usable_password()
    assert len(mail.outbox) == 1 and link.group(1) in mail.outbox[0].body
    # Inviting an existing username never adopts that account.
    taken = alice.post("/portal/team/", {"username": "bob", "email": "b@x.com", "role": "admin"})
    assert "That username is taken." in taken.content.decode()
    # Carol sets her password through the link and signs in.
    client = Client()
    form_page = client.get(link.group(1).replace("http://testserver", ""), follow=True)
    assert "Choose your password" in form_page.content.decode()
    set_url = form_page.redirect_chain[-1][0]
    done = client.post(
        set_url, {"new_password1": "An0ther-long-secret", "new_password2": "An0ther-long-secret"}
    )
    assert done.status_code == 302
    assert (
        client.post(
            "/portal/sign-in/", {"username": "carol", "password": "An0ther-long-secret"}
        ).status_code
        == 302
    )
    member = CustomerUser.objects.get(user=carol)
    assert alice.post(f"/portal/team/{member.pk}/role/", {"role": "admin"}).status_code == 302
    member.refresh_from_db()
    assert member.role == "admin"
    # Alice cannot remove herself; she can remove carol, whose account is switched off.
    own = world.acme.members["alice"].pk
    refused = alice.post(f"/portal/team/{own}/remove/", follow=True).content.decode()
    assert "You cannot remove yourself." in refused
    assert alice.post(f"/portal/team/{member.pk}/remove/").status_code == 302
    carol.refresh_from_db()
    assert not carol.is_active and not CustomerUser.objects.filter(user=carol).exists()
    assert client.get("/portal/").status_code == 302  # her session no longer works


def test_last_admin_cannot_be_demoted(world: World, alice: Client) -> None:
    own = world.acme.members["alice"]
    page = alice.post(f"/portal/team/{own.pk}/role/", {"role": "viewer"}, follow=True)
    assert "The team needs at least one admin." in page.content.decode()
    own.refresh_from_db()
    assert own.role == CustomerUser.Role.ADMIN


def test_password_reset_sends_a_link(world: World) -> None:
    client = Client()
    response = client.post("/portal/password-reset/", {"email": "alice@example.com"})
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    assert "/portal/password-reset/" in mail.outbox[0].body


def test_password_reset_mails_are_capped_per_address_and_per_ip(
    world: World, settings: Any
) -> None:
    settings.PORTAL_RESET_EMAIL_MAX, settings.PORTAL_RESET_IP_MAX = 3, 5
    client = Client()
    pages = [
        client.post("/portal/password-reset/", {"email": "alice@example.com"}, follow=True)
        for _ in range(4)
    ]
    # Every answer is the same "sent" page; only three mails went out to the address.
    assert {page.redirect_chain[-1][0] for page in pages} == {"/portal/password-reset/sent/"}
    assert len(mail.outbox) == 3
    # The same IP asking for another address is capped too: its 5th request is mailed, the
    # 6th is not.
    client.post("/portal/password-reset/", {"email": "bob@example.com"})
    assert len(mail.outbox) == 4
    client.post("/portal/password-reset/", {"email": "bob@example.com"})
    assert len(mail.outbox) == 4
    # Another IP may still help bob; alice stays capped whatever the IP.
    other = Client(REMOTE_ADDR="203.0.113.9")
    other.post("/portal/password-reset/", {"email": "bob@example.com"})
    other.post("/portal/password-reset/", {"email": "alice@example.com"})
    assert [m.to for m in mail.outbox[3:]] == [["bob@example.com"], ["bob@example.com"]]


def _enable_two_factor(alice: Client) -> tuple[pyotp.TOTP, list[str]]:
    alice.post("/portal/account/", {"action": "begin"})
    page = alice.get("/portal/account/").content.decode()
    seed = re.search(r'<code id="totp-secret">([A-Z2-7]+)</code>', page)
    assert seed is not None
    totp = pyotp.TOTP(seed.group(1))
    done = alice.post("/portal/account/", {"action": "confirm", "code": totp.now()})
    codes = re.search(r'<code id="recovery-codes">([^<]+)</code>', done.content.decode())
    assert done.status_code == 200 and codes is not None
    return totp, codes.group(1).split()


def _second_step(code: str) -> Any:
    client = Client()
    step1 = client.post("/portal/sign-in/", {"username": "alice", "password": PASSWORD})
    assert step1["Location"] == "/portal/sign-in/verify/"
    return client, client.post("/portal/sign-in/verify/", {"code": code})


def test_recovery_codes_sign_in_once_each_and_can_be_replaced(world: World, alice: Client) -> None:
    _, codes = _enable_two_factor(alice)
    assert len(codes) == len(set(codes)) == 10
    assert all(re.fullmatch(r"[a-z2-9]{5}-[a-z2-9]{5}", code) for code in codes)
    # Shown once: the page afterwards only counts them, and the database keeps digests.
    later = alice.get("/portal/account/").content.decode()
    assert codes[0] not in later and "10 unused recovery codes" in later
    stored = json.dumps(TotpDevice.objects.values_list("recovery_code_digests", flat=True).get())
    assert not any(code in stored or code.replace("-", "") in stored for code in codes)

    client, response = _second_step(codes[3].upper())  # typed in capitals: still fine
    assert response["Location"] == "/portal/"
    assert client.get("/portal/").status_code == 200
    assert AuditLog.objects.filter(action="portal.totp_recovery_code_use").count() == 1
    _, again = _second_step(codes[3])
    assert again.status_code == 200 and "not valid" in again.content.decode()
    assert "9 unused recovery codes" in alice.get("/portal/account/").content.decode()

    # New codes need the password and void the old ones.
    wrong = alice.post("/portal/account/", {"action": "recovery", "recovery-password": "nope"})
    assert "That is not your password." in wrong.content.decode()
    renewed = alice.post(
        "/portal/account/", {"action": "recovery", "recovery-password": PASSWORD}
    ).content.decode()
    fresh = re.search(r'<code id="recovery-codes">([^<]+)</code>', renewed)
    assert fresh is not None and not set(fresh.group(1).split()) & set(codes)
    _, old = _second_step(codes[4])
    assert "not valid" in old.content.decode()
    _, new = _second_step(fresh.group(1).split()[0])
    assert new["Location"] == "/portal/"


def test_totp_seed_is_sealed_at_rest_and_bound_to_its_user(world: World, alice: Client) -> None:
    alice.post("/portal/account/", {"action": "begin"})
    page = alice.get("/portal/account/").content.decode()
    shown = re.search(r'<code id="totp-secret">([A-Z2-7]+)</code>', page)
    assert shown is not None
    row = TotpDevice.objects.values().get()
    assert "secret" not in row
    stored = bytes(row["sealed_secret"])
    assert shown.group(1).encode() not in stored and len(stored) > 28
    device = TotpDevice.objects.get()
    assert portal_services.totp_secret(device) == shown.group(1)
    # The envelope copied onto another user's row does not open there.
    bob = get_user_model().objects.exclude(pk=device.user_id).first()
    assert bob is not None
    moved = TotpDevice.objects.create(user=bob, sealed_secret=stored)
    with pytest.raises(sealing.SealedValueUnreadable):
        portal_services.totp_secret(moved)


def test_two_factor_sign_in(world: World, alice: Client) -> None:
    alice.post("/portal/account/", {"action": "begin"})
    page = alice.get("/portal/account/").content.decode()
    secret = re.search(r'<code id="totp-secret">([A-Z2-7]+)</code>', page)
    assert secret is not None and "<svg" in page
    totp = pyotp.TOTP(secret.group(1))
    assert (
        alice.post("/portal/account/", {"action": "confirm", "code": "000000"}).status_code == 200
    )
    code = totp.now()
    response = alice.post("/portal/account/", {"action": "confirm", "code": code})
    assert response.status_code == 200  # the page with the recovery codes, shown once
    assert 'id="recovery-codes"' in response.content.decode()
    # Signing in now needs the code after the password.
    client = Client()
    step1 = client.post("/portal/sign-in/", {"username": "alice", "password": PASSWORD})
    assert step1["Location"] == "/portal/sign-in/verify/"
    assert client.get("/portal/").status_code == 302  # not signed in yet
    assert client.post("/portal/sign-in/verify/", {"code": "123456"}).status_code == 200
    # The code already used to confirm cannot be replayed.
    replay = client.post("/portal/sign-in/verify/", {"code": code})
    assert "not valid" in replay.content.decode()
    later = totp.at(timezone.now() + dt.timedelta(seconds=30))
    assert client.post("/portal/sign-in/verify/", {"code": later})["Location"] == "/portal/"
    assert client.get("/portal/").status_code == 200


# --- read pages --------------------------------------------------------------------------------


def test_invoice_page_and_pdf(world: World, alice: Client) -> None:
    inv = world.acme.invoice
    html = alice.get("/portal/invoices/").content.decode()
    assert inv.number is not None and inv.number in html
    detail = alice.get(f"/portal/invoices/{inv.pk}/").content.decode()
    assert "Lines and the usage behind them" in detail and "Bytes saved (net)" in detail
    pdf = alice.get(f"/portal/invoices/{inv.pk}/invoice.pdf")
    assert pdf["Content-Type"] == "application/pdf" and pdf.content.startswith(b"%PDF")


def test_job_pages(world: World, alice: Client) -> None:
    job = world.acme.job
    html = alice.get(f"/portal/jobs/{job.pk}/").content.decode()
    assert "Original and decoded, side by side" in html and "66.7%" in html
    assert "hx-trigger" not in html  # a finished job is not polled
    for suffix in ("preview.png", "original.png"):
        image = alice.get(f"/portal/jobs/{job.pk}/{suffix}")
        assert image.status_code == 200 and image["Content-Type"] == "image/png"
    output = alice.get(f"/portal/jobs/{job.pk}/output/")
    assert output.status_code == 200 and output.getvalue() == b"NCE" * 100
    assert output["Content-Disposition"] == f'attachment; filename="{job.pk}.nce"'


def test_admin_changelists_load(world: World, admin_client: Client) -> None:
    for url in (
        "/admin/billing/invoice/",
        "/admin/metering/usagerecord/",
        "/admin/metering/usagedailyrollup/",
        "/admin/jobs/encodejob/",
        "/admin/customers/customeruser/",
        "/admin/portal/loginfailure/",
        "/admin/portal/totpdevice/",
    ):
        response = admin_client.get(url + "?q=acme")
        assert response.status_code == 200, url
