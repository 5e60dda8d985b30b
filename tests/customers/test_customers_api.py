"""Customers, memberships and versioned contract terms over HTTP, with tenant isolation:
alice (Acme) and bob (Globex) never see each other's objects (404, not 403)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from customers.models import ContractTerms, Customer, CustomerUser

from core.models import AuditLog
from tests.core.fixtures import Persona, error_code

TERMS = {
    "effective_from": "2026-01-01",
    "revenue_share_percent": "30.00",
    "value_per_gb": "0.020000",
    "currency": "EUR",
    "minimum_monthly_fee": 50000,
    "billing_time_zone": "Europe/Paris",
    "payment_terms_days": 30,
}


def test_operator_creates_and_lists_customers(operator: Persona) -> None:
    created = operator.http.post(
        "/api/v1/customers/",
        {"name": "Initech", "slug": "initech", "contact_email": "ops@initech.example"},
    )
    assert created.status_code == 201
    body = created.json()
    assert (body["name"], body["slug"], body["contact_email"]) == (
        "Initech",
        "initech",
        "ops@initech.example",
    )
    assert AuditLog.objects.filter(action="customer.create", object_id=body["id"]).count() == 1
    listed = operator.http.get("/api/v1/customers/").json()
    assert [c["slug"] for c in listed["results"]] == ["initech"]


def test_duplicate_slug_is_409_and_changes_nothing(operator: Persona, acme: Customer) -> None:
    response = operator.http.post("/api/v1/customers/", {"name": "Other", "slug": "acme"})
    assert response.status_code == 409
    assert error_code(response) == "CUSTOMER_EXISTS"
    assert list(Customer.objects.values_list("name", flat=True)) == ["Acme Streaming"]


def test_customer_list_is_scoped_to_the_callers_customer(
    operator: Persona, alice: Persona, bob: Persona
) -> None:
    assert [c["slug"] for c in operator.http.get("/api/v1/customers/").json()["results"]] == [
        "acme",
        "globex",
    ]
    assert [c["slug"] for c in alice.http.get("/api/v1/customers/").json()["results"]] == ["acme"]
    assert [c["slug"] for c in bob.http.get("/api/v1/customers/").json()["results"]] == ["globex"]


def test_customer_detail_is_404_across_tenants(alice: Persona, bob: Persona) -> None:
    assert alice.customer and bob.customer
    own = alice.http.get(f"/api/v1/customers/{alice.customer.pk}/")
    assert own.status_code == 200
    assert own.json()["slug"] == "acme"
    other = alice.http.get(f"/api/v1/customers/{bob.customer.pk}/")
    assert other.status_code == 404
    assert error_code(other) == "CUSTOMER_NOT_FOUND"


def test_customers_cannot_create_customers(alice: Persona) -> None:
    response = alice.http.post("/api/v1/customers/", {"name": "X", "slug": "x"})
    assert response.status_code == 403
    assert Customer.objects.filter(slug="x").count() == 0


def test_contract_terms_are_versioned_and_stored_exactly(operator: Persona, acme: Customer) -> None:
    url = f"/api/v1/customers/{acme.pk}/contract-terms/"
    first = operator.http.post(url, TERMS)
    assert first.status_code == 201, first.text
    second = operator.http.post(
        url, {**TERMS, "effective_from": "2026-07-01", "revenue_share_percent": "25.50"}
    )
    assert second.status_code == 201
    row = ContractTerms.objects.get(pk=first.json()["id"])
    assert row.revenue_share_percent == Decimal("30.00")
    assert row.value_per_gb == Decimal("0.020000")
    assert (
        row.currency,
        row.minimum_monthly_fee,
        row.billing_time_zone,
        row.payment_terms_days,
    ) == (
        "EUR",
        50000,
        "Europe/Paris",
        30,
    )
    listed = operator.http.get(url).json()["results"]
    assert [t["effective_from"] for t in listed] == ["2026-07-01", "2026-01-01"]
    in_force = operator.http.get(url + "in-force/", params={"on": "2026-06-30"}).json()
    assert in_force["revenue_share_percent"] == "30.00"
    in_force = operator.http.get(url + "in-force/", params={"on": "2026-07-01"}).json()
    assert in_force["revenue_share_percent"] == "25.50"
    before = operator.http.get(url + "in-force/", params={"on": "2025-12-31"})
    assert before.status_code == 404
    assert error_code(before) == "NO_CONTRACT_TERMS"


def test_a_second_version_on_the_same_date_is_409(operator: Persona, acme: Customer) -> None:
    url = f"/api/v1/customers/{acme.pk}/contract-terms/"
    assert operator.http.post(url, TERMS).status_code == 201
    again = operator.http.post(url, {**TERMS, "revenue_share_percent": "10"})
    assert again.status_code == 409
    assert error_code(again) == "CONTRACT_TERMS_EXIST"
    assert ContractTerms.objects.get().revenue_share_percent == Decimal("30.00")


INVALID_TERMS: list[dict[str, Any]] = [
    {"revenue_share_percent": "100.01"},
    {"revenue_share_percent": "-1"},
    {"value_per_gb": "-0.01"},
    {"currency": "EURO"},
    {"currency": "€€€"},
    {"minimum_monthly_fee": -1},
    {"minimum_monthly_fee": "lots"},
    {"billing_time_zone": "Mars/Olympus_Mons"},
    {"billing_time_zone": "../../etc/passwd"},
    {"effective_from": "2026-13-01"},
    {"payment_terms_days": 1000},
]


def test_invalid_terms_are_400_and_store_nothing(operator: Persona, acme: Customer) -> None:
    for override in INVALID_TERMS:
        response = operator.http.post(
            f"/api/v1/customers/{acme.pk}/contract-terms/", {**TERMS, **override}
        )
        assert response.status_code == 400, (override, response.text)
        assert error_code(response) == "VALIDATION_ERROR"
    assert ContractTerms.objects.count() == 0


def test_contract_terms_are_tenant_isolated(
    operator: Persona, alice: Persona, bob: Persona
) -> None:
    assert alice.customer and bob.customer
    for persona in (alice, bob):
        assert persona.customer
        url = f"/api/v1/customers/{persona.customer.pk}/contract-terms/"
        assert operator.http.post(url, TERMS).status_code == 201
    own = alice.http.get(f"/api/v1/customers/{alice.customer.pk}/contract-terms/")
    assert own.status_code == 200
    assert own.json()["count"] == 1
    for path in ("contract-terms/", "contract-terms/in-force/"):
        other = alice.http.get(f"/api/v1/customers/{bob.customer.pk}/{path}")
        assert other.status_code == 404, path
        assert error_code(other) == "CUSTOMER_NOT_FOUND"
    # Customers read their terms but never write them, not even their own.
    write = alice.http.post(
        f"/api/v1/customers/{alice.customer.pk}/contract-terms/",
        {**TERMS, "effective_from": "2027-01-01", "revenue_share_percent": "1"},
    )
    assert write.status_code == 403
    assert ContractTerms.objects.filter(customer=alice.customer).count() == 1


def test_operator_adds_customer_users_with_roles(
    operator: Persona, acme: Customer, globex: Customer
) -> None:
    url = f"/api/v1/customers/{acme.pk}/users/"
    added = operator.http.post(url, {"username": "carol", "role": "viewer"})
    assert added.status_code == 201
    assert (added.json()["username"], added.json()["role"]) == ("carol", "viewer")
    promoted = operator.http.post(url, {"username": "carol", "role": "admin"})
    assert promoted.status_code == 201
    assert CustomerUser.objects.get(user__username="carol").role == "admin"
    elsewhere = operator.http.post(
        f"/api/v1/customers/{globex.pk}/users/", {"username": "carol", "role": "viewer"}
    )
    assert elsewhere.status_code == 409
    assert error_code(elsewhere) == "USER_IN_OTHER_CUSTOMER"
    assert CustomerUser.objects.filter(user__username="carol").count() == 1
    bad_role = operator.http.post(url, {"username": "dave", "role": "owner"})
    assert bad_role.status_code == 400


def test_customers_cannot_add_users(alice: Persona) -> None:
    assert alice.customer
    response = alice.http.post(
        f"/api/v1/customers/{alice.customer.pk}/users/", {"username": "mallory", "role": "admin"}
    )
    assert response.status_code == 403
    assert not CustomerUser.objects.filter(user__username="mallory").exists()
