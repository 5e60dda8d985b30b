"""Products, policies and licences over HTTP: issue (a verifiable signed key), suspend,
reinstate, revoke, the revocation list, and tenant isolation of licence reads."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from customers.models import Customer
from django.utils import timezone
from licences.models import Licence, LicencePolicy, Product, RevocationList

import licensing
from core.models import AuditLog
from tests.core.fixtures import Http, Persona, error_code, keyring_of, unused_uuid


def test_operator_creates_products_and_policies(operator: Persona) -> None:
    product = operator.http.post("/api/v1/products/", {"code": "ncodec", "name": "Neural codec"})
    assert product.status_code == 201
    policy = operator.http.post(
        "/api/v1/policies/",
        {
            "product_id": product.json()["id"],
            "code": "edge",
            "name": "Edge devices",
            "entitlements": {"features": ["decode"], "platforms": ["android-arm64"]},
            "max_activations": 5,
            "offline_grace_s": 3600,
        },
    )
    assert policy.status_code == 201, policy.text
    body = policy.json()
    assert body["product_code"] == "ncodec"
    assert body["entitlements"] == {"features": ["decode"], "platforms": ["android-arm64"]}
    assert (body["max_activations"], body["offline_grace_s"], body["heartbeat_window_s"]) == (
        5,
        3600,
        3600,
    )
    assert operator.http.get(f"/api/v1/policies/{body['id']}/").json()["code"] == "edge"
    dup = operator.http.post("/api/v1/products/", {"code": "ncodec", "name": "Again"})
    assert dup.status_code == 409
    assert Product.objects.count() == 1


INVALID_POLICIES: list[dict[str, Any]] = [
    {"max_activations": 0},
    {"heartbeat_window_s": 10},
    {"certificate_lifetime_s": 1},
    {"entitlements": {"unknown_field": 1}},
    {"entitlements": {"features": "encode"}},
    {"entitlements": {"max_width": -1}},
    {"entitlements": []},
    {"activation_rate_limit": 0},
    {"product_id": "not-a-uuid"},
]


def test_invalid_policies_are_400(operator: Persona, product: Product) -> None:
    for override in INVALID_POLICIES:
        response = operator.http.post(
            "/api/v1/policies/",
            {
                "product_id": str(product.pk),
                "code": "x",
                "name": "x",
                "max_activations": 1,
                **override,
            },
        )
        assert response.status_code == 400, (override, response.text)
    assert LicencePolicy.objects.count() == 0


def test_issue_licence_returns_a_key_that_verifies_with_the_public_keyring(
    operator: Persona, acme: Customer, policy: LicencePolicy, signing_key: str
) -> None:
    response = operator.http.post(
        "/api/v1/licences/",
        {"customer_id": str(acme.pk), "policy_id": str(policy.pk), "max_activations": 7},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["state"], body["max_activations"], body["active_activations"]) == ("active", 7, 0)
    claims = licensing.verify_licence_key(body["key"], keyring_of(operator.http))
    assert claims.licence_id == body["id"]
    assert claims.customer_id == str(acme.pk)
    assert claims.product == "ncodec"
    assert claims.key_id == signing_key
    assert claims.entitlements.features == ("encode", "decode")
    assert claims.entitlements.max_width == 3840
    assert claims.entitlements.max_activations == 7
    assert claims.expires_at - claims.not_before == 365 * 86400
    assert claims.offline_grace_s == 3 * 86400
    audit = AuditLog.objects.get(action="licence.issue")
    assert audit.object_id == body["id"]
    assert audit.customer_id == acme.pk


def test_issue_refuses_unknown_customer_and_bad_window(
    operator: Persona, policy: LicencePolicy, acme: Customer, signing_key: str
) -> None:
    unknown = operator.http.post(
        "/api/v1/licences/", {"customer_id": unused_uuid(), "policy_id": str(policy.pk)}
    )
    assert unknown.status_code == 404
    assert error_code(unknown) == "CUSTOMER_NOT_FOUND"
    backwards = operator.http.post(
        "/api/v1/licences/",
        {
            "customer_id": str(acme.pk),
            "policy_id": str(policy.pk),
            "not_before": "2030-01-01T00:00:00Z",
            "expires_at": "2029-01-01T00:00:00Z",
        },
    )
    assert backwards.status_code == 400
    assert Licence.objects.count() == 0


def test_licence_reads_are_tenant_isolated(
    operator: Persona, alice: Persona, bob: Persona, acme_licence: Licence, globex_licence: Licence
) -> None:
    assert [x["id"] for x in alice.http.get("/api/v1/licences/").json()["results"]] == [
        str(acme_licence.pk)
    ]
    assert [x["id"] for x in bob.http.get("/api/v1/licences/").json()["results"]] == [
        str(globex_licence.pk)
    ]
    assert operator.http.get("/api/v1/licences/").json()["count"] == 2
    own = alice.http.get(f"/api/v1/licences/{acme_licence.pk}/")
    assert own.status_code == 200
    assert own.json()["key"] == acme_licence.key
    other = alice.http.get(f"/api/v1/licences/{globex_licence.pk}/")
    assert other.status_code == 404
    assert error_code(other) == "LICENCE_NOT_FOUND"
    # A customer's filter cannot widen its scope.
    assert bob.customer
    widened = alice.http.get("/api/v1/licences/", params={"customer_id": str(bob.customer.pk)})
    assert widened.json()["count"] == 0


def test_customers_cannot_issue_or_change_licences(
    alice: Persona, acme: Customer, policy: LicencePolicy, acme_licence: Licence
) -> None:
    issue = alice.http.post(
        "/api/v1/licences/", {"customer_id": str(acme.pk), "policy_id": str(policy.pk)}
    )
    assert issue.status_code == 403
    for action in ("suspend", "reinstate", "revoke"):
        response = alice.http.post(f"/api/v1/licences/{acme_licence.pk}/{action}/")
        assert response.status_code == 403, action
    assert Licence.objects.count() == 1
    acme_licence.refresh_from_db()
    assert acme_licence.state == "active"


def _latest_revocations(http: Http) -> licensing.RevocationList:
    body = http.get("/api/v1/sdk/revocations").json()
    rl = licensing.verify_revocation_list(body["token"], keyring_of(http))
    assert rl.serial == body["serial"]
    return rl


def test_suspend_reinstate_revoke_lifecycle_and_revocation_list(
    operator: Persona, acme_licence: Licence
) -> None:
    url = f"/api/v1/licences/{acme_licence.pk}"
    lid = str(acme_licence.pk)
    start = _latest_revocations(operator.http)
    assert not start.is_revoked(licence_id=lid)

    suspended = operator.http.post(f"{url}/suspend/", {"reason": "unpaid invoice"})
    assert suspended.status_code == 200
    assert (suspended.json()["state"], suspended.json()["state_reason"]) == (
        "suspended",
        "unpaid invoice",
    )
    after_suspend = _latest_revocations(operator.http)
    assert after_suspend.serial == start.serial + 1
    assert after_suspend.is_revoked(licence_id=lid)

    again = operator.http.post(f"{url}/suspend/")
    assert again.status_code == 409
    assert error_code(again) == "INVALID_STATE_TRANSITION"

    reinstated = operator.http.post(f"{url}/reinstate/")
    assert reinstated.json()["state"] == "active"
    after_reinstate = _latest_revocations(operator.http)
    assert after_reinstate.serial == start.serial + 2
    assert not after_reinstate.is_revoked(licence_id=lid)

    revoked = operator.http.post(f"{url}/revoke/", {"reason": "contract ended"})
    assert revoked.json()["state"] == "revoked"
    assert _latest_revocations(operator.http).is_revoked(licence_id=lid)
    serial = RevocationList.objects.order_by("-serial").first()
    assert serial is not None
    for action in ("reinstate", "suspend", "revoke"):
        refused = operator.http.post(f"{url}/{action}/")
        assert refused.status_code == 409, action
    acme_licence.refresh_from_db()
    assert acme_licence.state == "revoked"
    assert RevocationList.objects.order_by("-serial").first() == serial  # nothing published
    actions = list(
        AuditLog.objects.filter(object_id=lid).order_by("id").values_list("action", flat=True)
    )
    assert actions == ["licence.issue", "licence.suspend", "licence.reinstate", "licence.revoke"]


def test_unknown_licence_is_404(operator: Persona) -> None:
    for path in ("", "suspend/", "revoke/"):
        method = operator.http.get if not path else operator.http.post
        response = method(f"/api/v1/licences/{unused_uuid()}/{path}")
        assert response.status_code == 404
        assert error_code(response) == "LICENCE_NOT_FOUND"


def test_expired_is_derived_from_expiry(
    operator: Persona,
    make_licence: Callable[..., Licence],
    acme: Customer,
    policy: LicencePolicy,
) -> None:
    now = timezone.now()
    old = make_licence(
        acme, policy, not_before=now - dt.timedelta(days=30), expires_at=now - dt.timedelta(days=1)
    )
    fresh = make_licence(acme, policy)
    assert operator.http.get(f"/api/v1/licences/{old.pk}/").json()["state"] == "expired"
    expired = operator.http.get("/api/v1/licences/", params={"state": "expired"}).json()
    assert [x["id"] for x in expired["results"]] == [str(old.pk)]
    active = operator.http.get("/api/v1/licences/", params={"state": "active"}).json()
    assert [x["id"] for x in active["results"]] == [str(fresh.pk)]
    bad = operator.http.get("/api/v1/licences/", params={"state": "bogus"})
    assert bad.status_code == 400


def test_keyring_is_public_and_identical_at_both_urls(http: Http, signing_key: str) -> None:
    well_known = http.get("/.well-known/codec-licensing/keyring.json")
    sdk = http.get("/api/v1/sdk/keyring")
    assert well_known.status_code == sdk.status_code == 200
    assert well_known.headers["Content-Type"] == "application/json"
    assert well_known.json() == sdk.json()
    assert [k["key_id"] for k in well_known.json()["keys"]] == [signing_key]
    assert "private" not in well_known.text.lower()
