"""The Django admin for operators: pages render, search works, and the licence actions (issue,
suspend, reinstate, revoke) go through the services (audit rows, revocation lists)."""

from __future__ import annotations

import base64

import pytest
from activation.models import Activation
from activation.services import activation_activate
from customers.models import Customer
from django.test import Client
from licences import keys
from licences.models import Licence, LicencePolicy, RevocationList, SigningKey

from core.models import AuditLog
from tests.core.fixtures import Device

pytestmark = pytest.mark.django_db(transaction=True)

PAGES = [
    "core/auditlog",
    "core/apitoken",
    "customers/customer",
    "customers/contractterms",
    "licences/product",
    "licences/licencepolicy",
    "licences/licence",
    "licences/signingkey",
    "licences/revocationlist",
    "activation/activation",
    "activation/activationevent",
]


def test_changelists_render_and_search(admin_client: Client, acme_licence: Licence) -> None:
    for page in PAGES:
        response = admin_client.get(f"/admin/{page}/", {"q": "acme"})
        assert response.status_code == 200, page
    found = admin_client.get("/admin/licences/licence/", {"q": "acme"})
    assert str(acme_licence.pk) in found.content.decode()
    filtered = admin_client.get("/admin/licences/licence/", {"state__exact": "revoked"})
    assert str(acme_licence.pk) not in filtered.content.decode()
    detail = admin_client.get(f"/admin/licences/licence/{acme_licence.pk}/change/")
    assert detail.status_code == 200


def test_issue_from_the_admin_goes_through_the_service(
    admin_client: Client, acme: Customer, policy: LicencePolicy, signing_key: str
) -> None:
    response = admin_client.post(
        "/admin/licences/licence/add/",
        {
            "customer": str(acme.pk),
            "policy": str(policy.pk),
            "max_activations": "5",
            "expires_at_0": "",
            "expires_at_1": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    licence = Licence.objects.get()
    assert (licence.max_activations, licence.state) == (5, "active")
    assert licence.key.startswith("NCL1.")
    audit = AuditLog.objects.get(action="licence.issue")
    assert audit.actor_kind == "admin"


@pytest.mark.parametrize(("action", "state"), [("suspend", "suspended"), ("revoke", "revoked")])
def test_state_actions_use_the_services(
    admin_client: Client, acme_licence: Licence, action: str, state: str
) -> None:
    serials = RevocationList.objects.count()
    response = admin_client.post(
        "/admin/licences/licence/",
        {"action": action, "_selected_action": [str(acme_licence.pk)]},
    )
    assert response.status_code == 302
    acme_licence.refresh_from_db()
    assert acme_licence.state == state
    assert AuditLog.objects.filter(action=f"licence.{action}", actor_kind="admin").count() == 1
    assert RevocationList.objects.count() == serials + 1
    if action == "suspend":
        admin_client.post(
            "/admin/licences/licence/",
            {"action": "reinstate", "_selected_action": [str(acme_licence.pk)]},
        )
        acme_licence.refresh_from_db()
        assert acme_licence.state == "active"


def test_refused_actions_show_a_message_and_change_nothing(
    admin_client: Client, acme_licence: Licence
) -> None:
    response = admin_client.post(
        "/admin/licences/licence/",
        {"action": "reinstate", "_selected_action": [str(acme_licence.pk)]},
        follow=True,
    )
    assert "INVALID_STATE_TRANSITION" in response.content.decode()
    acme_licence.refresh_from_db()
    assert acme_licence.state == "active"


def test_signing_key_pages_never_show_the_private_key(
    admin_client: Client, signing_key: str
) -> None:
    row = SigningKey.objects.get(key_id=signing_key)
    raw = keys.open_private_key(signing_key, bytes(row.encrypted_private_key)).private_bytes()
    for url in ("/admin/licences/signingkey/", f"/admin/licences/signingkey/{row.pk}/change/"):
        page = admin_client.get(url).content.decode()
        for secret in (
            raw.hex(),
            base64.b64encode(raw).decode(),
            base64.b64encode(bytes(row.encrypted_private_key)).decode(),
        ):
            assert secret not in page
    admin_client.post(
        "/admin/licences/signingkey/", {"action": "rotate", "_selected_action": [str(row.pk)]}
    )
    assert SigningKey.objects.count() == 2


def test_deactivate_action(admin_client: Client, acme_licence: Licence) -> None:
    device = Device()
    body = device.activation_body(acme_licence.key)
    grant = activation_activate(
        licence_key=body["licence_key"],
        fingerprint=body["fingerprint"],
        device_public_key=device.public_key,
        platform=body["platform"],
        hostname=body["hostname"],
        timestamp=body["timestamp"],
        signature=base64.urlsafe_b64decode(body["signature"] + "=="),
    )
    admin_client.post(
        "/admin/activation/activation/",
        {"action": "deactivate", "_selected_action": [str(grant.activation.pk)]},
    )
    assert Activation.objects.get().state == "deactivated"


def test_a_refused_issue_in_the_admin_is_a_message_not_a_500(
    admin_client: Client, acme: Customer, policy: LicencePolicy
) -> None:
    # No signing key exists: the service refuses, and the operator is told so on the form.
    response = admin_client.post(
        "/admin/licences/licence/add/",
        {
            "customer": str(acme.pk),
            "policy": str(policy.pk),
            "max_activations": "5",
            "expires_at_0": "",
            "expires_at_1": "",
        },
        follow=True,
    )
    assert response.status_code == 200
    assert "NO_SIGNING_KEY" in response.content.decode()
    assert not Licence.objects.exists()
    assert not AuditLog.objects.filter(action="licence.issue").exists()
