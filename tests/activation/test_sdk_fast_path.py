"""The SDK hot path: activate and heartbeat served by activation.middleware without DRF, the
licence-key verification cache, and server-side prepared statements on PostgreSQL.

What a device (or an operator reading the metrics) must not be able to tell apart: the fast
path and the DRF view give the same statuses, error bodies and security headers; anything
the fast parser does not accept still gets the view's answer."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest
from activation import middleware, services
from django.db import OperationalError, connection
from django.http import HttpRequest, HttpResponse
from django.test import Client, RequestFactory
from licences.models import Licence
from licences.services import signing_key_rotate

import licensing
from tests.core.fixtures import TEST_ACTOR, Device, Http, error_code

ACTIVATE = "/api/v1/sdk/activate"


def post_json(client: Client, path: str, body: Any, **extra: Any) -> Any:
    return client.post(path, data=json.dumps(body), content_type="application/json", **extra)


# --- which requests the fast path takes ----------------------------------------------------------


class _ViewCalled(Exception):
    pass


def _fast_path() -> middleware.SdkFastPathMiddleware:
    def view(request: HttpRequest) -> HttpResponse:
        raise _ViewCalled

    return middleware.SdkFastPathMiddleware(view)


def test_well_formed_activation_is_served_without_the_view(acme_licence: Licence) -> None:
    request = RequestFactory().post(
        ACTIVATE, data=Device().activation_body(acme_licence.key), content_type="application/json"
    )
    request.request_id = "fast-1"  # type: ignore[attr-defined]
    response = _fast_path()(request)
    assert response.status_code == 201
    assert json.loads(response.content)["reactivated"] is False
    assert response["Content-Type"] == "application/json"
    assert response["X-Frame-Options"] == "DENY"
    assert int(response["Content-Length"]) == len(response.content)
    assert request.resolver_match.url_name == "sdk-activate"  # the metrics label


@pytest.mark.parametrize(
    "case",
    [
        "get",
        "text/plain",
        "latin-1 charset",
        "broken json",
        "NaN",
        "timestamp as text",
        "unknown path",
        "too large",
    ],
)
def test_anything_else_goes_to_the_view(acme_licence: Licence, case: str, settings: Any) -> None:
    body = Device().activation_body(acme_licence.key)
    factory = RequestFactory()
    raw = json.dumps(body)
    path, content_type = ACTIVATE, "application/json"
    if case == "get":
        request = factory.get(ACTIVATE)
    else:
        if case == "text/plain":
            content_type = "text/plain"
        elif case == "latin-1 charset":
            content_type = "application/json; charset=latin-1"
        elif case == "broken json":
            raw = raw[:-1]
        elif case == "NaN":
            raw = raw[:-1] + ', "extra": NaN}'
        elif case == "timestamp as text":
            raw = json.dumps({**body, "timestamp": str(body["timestamp"])})
        elif case == "unknown path":
            path = "/api/v1/sdk/activatex"
        elif case == "too large":
            settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
        request = factory.post(path, data=raw, content_type=content_type)
    with pytest.raises(_ViewCalled):
        _fast_path()(request)


# --- the two paths answer alike -----------------------------------------------------------------


def _security_headers(response: Any) -> dict[str, str | None]:
    return {
        name: response.headers.get(name)
        for name in (
            "Content-Type",
            "X-Frame-Options",
            "X-Content-Type-Options",
            "Referrer-Policy",
            "Cross-Origin-Opener-Policy",
            "X-Request-ID",
        )
    }


def test_fast_path_and_view_give_the_same_answers(http: Http, acme_licence: Licence) -> None:
    fast_device, view_device = Device(), Device()
    fast = http.post(
        ACTIVATE, fast_device.activation_body(acme_licence.key), headers={"X-Request-ID": "same"}
    )
    # The fast parser takes only an integer timestamp; the view's serializer also accepts it
    # as text, so this request takes the DRF path.
    body = view_device.activation_body(acme_licence.key)
    view = http.post(
        ACTIVATE, {**body, "timestamp": str(body["timestamp"])}, headers={"X-Request-ID": "same"}
    )
    assert (fast.status_code, view.status_code) == (201, 201)
    assert fast.json().keys() == view.json().keys()
    assert _security_headers(fast) == _security_headers(view)
    assert fast.headers["X-Request-ID"] == "same"

    # The same refusal either way: the seat limit (2 seats, both taken).
    third = Device().activation_body(acme_licence.key)
    refused_fast = http.post(ACTIVATE, third)
    refused_view = http.post(ACTIVATE, {**third, "timestamp": str(third["timestamp"])})
    assert refused_fast.status_code == refused_view.status_code == 409
    assert refused_fast.json() == refused_view.json()
    assert error_code(refused_fast) == "SEAT_LIMIT_REACHED"
    assert _security_headers(refused_fast) | {"X-Request-ID": None} == _security_headers(
        refused_view
    ) | {"X-Request-ID": None}


def test_database_outage_on_the_fast_path_is_a_retryable_503(
    acme_licence: Licence, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(**kwargs: Any) -> Any:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(services, "activation_activate", unavailable)
    response = post_json(Client(), ACTIVATE, Device().activation_body(acme_licence.key))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert response["Retry-After"] == "2"


# --- licence-key verification cache -------------------------------------------------------------


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts real signature checks of licence keys by the activation service."""
    seen: list[str] = []
    real: Callable[..., Any] = licensing.verify_licence_key

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(licensing, "verify_licence_key", counting)
    services._verified_keys.clear()
    return seen


def test_a_licence_key_is_verified_once_per_keyring(
    acme_licence: Licence, verifications: list[str]
) -> None:
    client = Client()
    for _ in range(2):
        assert post_json(client, ACTIVATE, Device().activation_body(acme_licence.key)).status_code
    assert verifications == [acme_licence.key]
    signing_key_rotate(actor=TEST_ACTOR)  # a new keyring version: verify afresh
    post_json(client, ACTIVATE, Device().activation_body(acme_licence.key))
    assert verifications == [acme_licence.key, acme_licence.key]


def test_a_verified_licence_key_is_refused_once_it_expires(
    acme_licence: Licence, verifications: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = Client()
    assert (
        post_json(client, ACTIVATE, Device().activation_body(acme_licence.key)).status_code == 201
    )
    later = acme_licence.expires_at + dt.timedelta(seconds=licensing.DEFAULT_SKEW_S + 60)
    monkeypatch.setattr(services, "_now", lambda: (later, int(later.timestamp())))
    body = Device().activation_body(acme_licence.key, timestamp=int(later.timestamp()))
    response = post_json(client, ACTIVATE, body)
    assert response.status_code == 403, response.content
    assert response.json()["error"]["code"] == "LICENCE_EXPIRED"
    assert verifications == [acme_licence.key]  # refused from the cached entry's dates


# --- prepared statements (PostgreSQL) -----------------------------------------------------------


def _prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


def test_hot_path_statements_are_prepared_and_survive_a_refusal(acme_licence: Licence) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are a PostgreSQL feature")
    client = Client()  # in this thread: the test's own database connection serves the requests
    first, second = Device(), Device()
    for device in (first, second):
        response = post_json(client, ACTIVATE, device.activation_body(acme_licence.key))
        assert response.status_code == 201
        device.activation_id = response.json()["activation_id"]
    assert any("FOR UPDATE OF l" in sql for sql in _prepared_statements())

    # A refusal rolls back its transaction; the requests after it still find their statements.
    refused = post_json(client, ACTIVATE, Device().activation_body(acme_licence.key))
    assert refused.json()["error"]["code"] == "SEAT_LIMIT_REACHED"
    # (A heartbeat first: its first statement is a prepared one, the case that once broke.)
    for _ in range(2):
        beat = post_json(client, "/api/v1/sdk/heartbeat", second.signed_body("heartbeat"))
        assert beat.status_code == 200, beat.content
        again = post_json(client, ACTIVATE, first.activation_body(acme_licence.key))
        assert again.status_code == 200, again.content


def test_a_heartbeat_inside_a_rolled_back_transaction_leaves_nothing(
    acme_licence: Licence,
) -> None:
    """Inside a caller's atomic block the hot path's statements belong to the caller's
    transaction, even when they are its first statements (psycopg opens it lazily)."""
    if connection.vendor != "postgresql":
        pytest.skip("the raw statements are the PostgreSQL path")
    from activation.models import Activation
    from activation.sdk_api import _fast_signed_input
    from django.db import transaction

    device = Device()
    response = post_json(Client(), ACTIVATE, device.activation_body(acme_licence.key))
    device.activation_id = response.json()["activation_id"]
    values = _fast_signed_input(device.signed_body("heartbeat"))
    assert values is not None
    with pytest.raises(RuntimeError), transaction.atomic():
        services.activation_heartbeat(**values)  # the block's first statements
        raise RuntimeError("the caller changes its mind")
    assert Activation.objects.get().last_heartbeat_at is None


# --- one round trip for a new machine (PostgreSQL) ----------------------------------------------


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many statements each round trip to PostgreSQL carried (the real pg.execute_batch
    runs; this only counts)."""
    if connection.vendor != "postgresql":
        pytest.skip("the one-trip activation is the PostgreSQL path")
    from activation import pg

    trips: list[int] = []
    real = pg.execute_batch

    def counted(statements: list[tuple[str, Any]]) -> list[pg.Result]:
        trips.append(len(statements))
        return real(statements)

    monkeypatch.setattr(pg, "execute_batch", counted)
    return trips


def _new_machine(client: Client, licence: Licence) -> Any:
    return post_json(client, ACTIVATE, Device().activation_body(licence.key))


def test_a_new_machine_on_a_known_licence_activates_in_one_round_trip(
    acme_licence: Licence, round_trips: list[int]
) -> None:
    from activation.models import Activation, ActivationEvent

    from core.models import AuditLog

    client = Client()
    first = post_json(client, ACTIVATE, Device().activation_body(acme_licence.key))
    assert first.status_code == 201
    assert len(round_trips) == 2  # the licence row was new to this process
    round_trips.clear()
    second = post_json(client, ACTIVATE, Device(hostname="enc-2").activation_body(acme_licence.key))
    assert second.status_code == 201, second.content
    assert round_trips == [4]  # BEGIN, lock, conditional insert, COMMIT
    row = Activation.objects.get(pk=second.json()["activation_id"])
    assert (row.state, row.hostname) == ("active", "enc-2")
    assert ActivationEvent.objects.filter(activation=row).count() == 1
    assert AuditLog.objects.filter(action="activation.create", object_id=str(row.pk)).exists()


def test_a_licence_suspended_after_its_row_was_read_refuses_the_next_machine(
    acme_licence: Licence, round_trips: list[int]
) -> None:
    """The one-trip path decides on the licence row this process read before; PostgreSQL
    sees that it changed, writes nothing, and the full path gives the current answer."""
    from activation.models import Activation
    from licences.services import licence_reinstate, licence_suspend

    client = Client()
    assert _new_machine(client, acme_licence).status_code == 201
    licence_suspend(actor=TEST_ACTOR, licence_id=acme_licence.pk)
    refused = post_json(client, ACTIVATE, Device().activation_body(acme_licence.key))
    assert refused.status_code == 403, refused.content
    assert refused.json()["error"]["code"] == "LICENCE_SUSPENDED"
    assert Activation.objects.count() == 1
    licence_reinstate(actor=TEST_ACTOR, licence_id=acme_licence.pk)
    assert _new_machine(client, acme_licence).status_code == 201


def test_seats_taken_elsewhere_are_counted_by_the_one_trip_path(
    acme_licence: Licence, round_trips: list[int]
) -> None:
    """Another process filled the last seat after this one read the licence row: the
    conditional insert counts the seats under the lock, so the limit holds."""
    from activation.models import Activation

    client = Client()
    assert _new_machine(client, acme_licence).status_code == 201
    # The second seat goes to a machine activated by another web worker (its own cache).
    saved = dict(services._licence_rows)
    services._licence_rows.clear()
    assert _new_machine(client, acme_licence).status_code == 201
    services._licence_rows.update(saved)
    refused = post_json(client, ACTIVATE, Device().activation_body(acme_licence.key))
    assert refused.status_code == 409
    assert refused.json()["error"]["details"] == {"max_activations": 2, "active": 2}
    assert Activation.objects.count() == 2


def test_a_lowered_seat_limit_holds_on_the_one_trip_path(
    acme_licence: Licence, round_trips: list[int]
) -> None:
    client = Client()
    assert _new_machine(client, acme_licence).status_code == 201
    Licence.objects.filter(pk=acme_licence.pk).update(max_activations=1)
    refused = post_json(client, ACTIVATE, Device().activation_body(acme_licence.key))
    assert refused.status_code == 409
    assert refused.json()["error"]["details"] == {"max_activations": 1, "active": 1}
