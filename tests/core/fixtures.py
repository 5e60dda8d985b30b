"""Shared fixtures and helpers for the control-plane suites (imported by each conftest).

Personas: `operator` (an operator token), `alice` (a customer token of Acme) and `bob` (a
customer token of Globex). API tests go over real HTTP to `live_server` with `requests`.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from customers.models import Customer, CustomerUser
from customers.services import contract_terms_create, customer_create, customer_user_add
from licences import keys
from licences.models import Licence, LicencePolicy, Product
from licences.services import (
    licence_issue,
    policy_create,
    product_create,
    revocation_cache_invalidate,
    signing_key_ensure,
)

import licensing
from core.audit import Actor
from core.models import ApiToken
from core.services import api_token_create

TEST_ACTOR = Actor.cli("tests")


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class Http:
    """A tiny HTTP client bound to the live server and (optionally) one API token."""

    base: str
    token: str | None = None
    session: requests.Session = field(default_factory=requests.Session)

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = dict(extra or {})
        if self.token:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        return headers

    def get(
        self,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        return self.session.get(
            self.base + path, params=params, headers=self._headers(headers), timeout=30
        )

    def post(
        self,
        path: str,
        json: Any = None,
        *,
        data: Any = None,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        return self.session.post(
            self.base + path, json=json, data=data, headers=self._headers(headers), timeout=30
        )

    def as_token(self, token: str | None) -> Http:
        return Http(base=self.base, token=token, session=self.session)


@dataclass
class Persona:
    name: str
    token: str
    customer: Customer | None
    http: Http


@pytest.fixture(autouse=True)
def fresh_process_caches() -> None:
    # The keyring and revocation-list caches outlive a test's database; start each test clean.
    keys.keyring_invalidate()
    revocation_cache_invalidate()


def error_code(response: requests.Response) -> str:
    body = response.json()
    assert set(body) == {"error"}, body
    return str(body["error"]["code"])


@pytest.fixture
def http(live_server: Any, transactional_db: None) -> Iterator[Http]:
    client = Http(base=live_server.url)
    yield client
    client.session.close()


@pytest.fixture
def signing_key(transactional_db: None) -> str:
    return signing_key_ensure(actor=TEST_ACTOR).key_id


@pytest.fixture
def acme(transactional_db: None) -> Customer:
    return customer_create(actor=TEST_ACTOR, name="Acme Streaming", slug="acme")


@pytest.fixture
def globex(transactional_db: None) -> Customer:
    return customer_create(actor=TEST_ACTOR, name="Globex Video", slug="globex")


@pytest.fixture
def operator(http: Http) -> Persona:
    issued = api_token_create(actor=TEST_ACTOR, name="ops", scope=ApiToken.Scope.OPERATOR)
    return Persona("operator", issued.secret, None, http.as_token(issued.secret))


def _customer_persona(http: Http, name: str, customer: Customer) -> Persona:
    customer_user_add(
        actor=TEST_ACTOR, customer_id=customer.pk, username=name, role=CustomerUser.Role.ADMIN
    )
    issued = api_token_create(
        actor=TEST_ACTOR, name=name, scope=ApiToken.Scope.CUSTOMER, customer_id=customer.pk
    )
    return Persona(name, issued.secret, customer, http.as_token(issued.secret))


@pytest.fixture
def alice(http: Http, acme: Customer) -> Persona:
    return _customer_persona(http, "alice", acme)


@pytest.fixture
def bob(http: Http, globex: Customer) -> Persona:
    return _customer_persona(http, "bob", globex)


@pytest.fixture
def product(transactional_db: None) -> Product:
    return product_create(actor=TEST_ACTOR, code="ncodec", name="Neural codec SDK")


@pytest.fixture
def make_policy(product: Product) -> Callable[..., LicencePolicy]:
    def make(**overrides: Any) -> LicencePolicy:
        fields: dict[str, Any] = {
            "entitlements": {"features": ["encode", "decode"], "max_width": 3840},
            "max_activations": 2,
            "licence_validity_days": 365,
            "certificate_lifetime_s": 86400,
            "heartbeat_window_s": 3600,
            "offline_grace_s": 3 * 86400,
            "activation_rate_limit": 20,
            "activation_rate_window_s": 3600,
            "deactivation_rate_limit": 10,
            "deactivation_rate_window_s": 3600,
        }
        fields.update(overrides)
        code = fields.pop("code", f"p-{secrets.token_hex(3)}")
        return policy_create(
            actor=TEST_ACTOR, product_id=product.pk, code=code, name=code, **fields
        )

    return make


@pytest.fixture
def policy(make_policy: Callable[..., LicencePolicy]) -> LicencePolicy:
    return make_policy(code="standard")


@pytest.fixture
def make_licence(signing_key: str) -> Callable[..., Licence]:
    def make(customer: Customer, policy: LicencePolicy, **kw: Any) -> Licence:
        return licence_issue(actor=TEST_ACTOR, customer_id=customer.pk, policy_id=policy.pk, **kw)

    return make


@pytest.fixture
def acme_licence(
    make_licence: Callable[..., Licence], acme: Customer, policy: LicencePolicy
) -> Licence:
    return make_licence(acme, policy)


@pytest.fixture
def globex_licence(
    make_licence: Callable[..., Licence], globex: Customer, policy: LicencePolicy
) -> Licence:
    return make_licence(globex, policy)


@pytest.fixture
def acme_terms(acme: Customer) -> Any:
    return contract_terms_create(
        actor=TEST_ACTOR,
        customer_id=acme.pk,
        effective_from=dt.date(2026, 1, 1),
        revenue_share_percent=Decimal("30.00"),
        value_per_gb=Decimal("0.020000"),
        currency="EUR",
        minimum_monthly_fee=50_000,
        billing_time_zone="Europe/Paris",
        payment_terms_days=30,
    )


# --- a simulated device ------------------------------------------------------------------------

HEARTBEAT_PURPOSE = "codec-sdk/heartbeat/v1"
DEACTIVATE_PURPOSE = "codec-sdk/deactivate/v1"


def random_fingerprint() -> licensing.Fingerprint:
    ids = {name: secrets.token_hex(8) for name in ("machine_id", "hostname", "mac", "disk", "cpu")}
    return licensing.fingerprint_from_identifiers(b"test-secret", ids)


def device_message(action: str, activation_id: str, timestamp: int) -> bytes:
    import json

    return json.dumps(
        {"action": action, "activation_id": activation_id, "timestamp": timestamp},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


@dataclass
class Device:
    """A machine with an Ed25519 device key, speaking the SDK protocol by hand."""

    fingerprint: licensing.Fingerprint = field(default_factory=random_fingerprint)
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    platform: str = "linux-x86_64"
    hostname: str = "edge-01"
    activation_id: str | None = None

    @property
    def public_key(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def activation_body(self, licence_key: str, *, timestamp: int | None = None) -> dict[str, Any]:
        ts = int(time.time()) if timestamp is None else timestamp
        fp = self.fingerprint.to_string()
        message = licensing.activation_proof_message(
            licence_key=licence_key, fingerprint=fp, device_public_key=self.public_key, timestamp=ts
        )
        signature = licensing.sign_with_device_key(
            self.key, licensing.ACTIVATION_PROOF_PURPOSE, message
        )
        return {
            "licence_key": licence_key,
            "fingerprint": fp,
            "device_public_key": b64(self.public_key),
            "platform": self.platform,
            "hostname": self.hostname,
            "timestamp": ts,
            "signature": b64(signature),
        }

    def signed_body(self, action: str, *, timestamp: int | None = None) -> dict[str, Any]:
        assert self.activation_id
        ts = int(time.time()) if timestamp is None else timestamp
        purpose = HEARTBEAT_PURPOSE if action == "heartbeat" else DEACTIVATE_PURPOSE
        signature = licensing.sign_with_device_key(
            self.key, purpose, device_message(action, self.activation_id, ts)
        )
        return {"activation_id": self.activation_id, "timestamp": ts, "signature": b64(signature)}

    def activate(self, http: Http, licence_key: str) -> requests.Response:
        response = http.post("/api/v1/sdk/activate", self.activation_body(licence_key))
        if response.status_code in (200, 201):
            self.activation_id = response.json()["activation_id"]
        return response

    def heartbeat(self, http: Http) -> requests.Response:
        return http.post("/api/v1/sdk/heartbeat", self.signed_body("heartbeat"))

    def deactivate(self, http: Http) -> requests.Response:
        return http.post("/api/v1/sdk/deactivate", self.signed_body("deactivate"))


def keyring_of(http: Http) -> licensing.Keyring:
    return licensing.Keyring.from_json(http.get("/.well-known/codec-licensing/keyring.json").text)


def unused_uuid() -> str:
    return str(uuid.uuid4())
