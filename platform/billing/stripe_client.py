"""The only module that imports `stripe`.

Every create call carries an idempotency key derived from our own ids, so a retried push
(after a crash between Stripe's answer and our commit) returns the same Stripe object instead
of a second one. Stripe prunes keys after ~24 h; services therefore store each returned id in
the database right away and skip steps whose id is known.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import stripe
from django.conf import settings

from core.errors import DomainError, ServiceUnavailable

DEFAULT_WEBHOOK_TOLERANCE_S = 300  # Stripe's own default


class WebhookSignatureInvalid(DomainError):
    code = "WEBHOOK_SIGNATURE_INVALID"
    http_status = 400


class WebhookTimestampStale(DomainError):
    code = "WEBHOOK_TIMESTAMP_STALE"
    http_status = 400


class StripeNotConfigured(DomainError):
    code = "STRIPE_NOT_CONFIGURED"
    http_status = 503


def is_configured() -> bool:
    return bool(settings.STRIPE_API_KEY)


def _client() -> stripe.StripeClient:
    if not is_configured():
        raise StripeNotConfigured("STRIPE_API_KEY is not set; invoices stay local.")
    base = getattr(settings, "STRIPE_API_BASE", "") or stripe.DEFAULT_API_BASE
    return stripe.StripeClient(
        settings.STRIPE_API_KEY,
        base_addresses={"api": base},
        max_network_retries=2,
        http_client=stripe.RequestsClient(timeout=30),
    )


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Map Stripe's transient failures to one retryable domain error."""
    try:
        return fn(*args, **kwargs)
    except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
        raise ServiceUnavailable(f"Stripe is unreachable: {type(exc).__name__}") from exc
    except stripe.StripeError as exc:
        raise DomainError(
            f"Stripe refused the request: {exc.user_message or type(exc).__name__}",
            code="STRIPE_ERROR",
            http_status=502,
            details={"stripe_code": getattr(exc, "code", None)},
        ) from exc


def customer_create(*, customer_id: str, name: str, email: str) -> str:
    """Create the Stripe customer for one of ours; returns its Stripe id."""
    params: dict[str, Any] = {"name": name, "metadata": {"ncp_customer_id": customer_id}}
    if email:
        params["email"] = email
    created = _call(
        _client().v1.customers.create,
        params=params,
        options={"idempotency_key": f"ncp-customer-{customer_id}-create"},
    )
    return str(created.id)


@dataclass(frozen=True)
class StripeInvoice:
    id: str
    status: str


def invoice_create(
    *,
    invoice_id: str,
    number: str,
    stripe_customer_id: str,
    currency: str,
    days_until_due: int,
    period: str,
) -> StripeInvoice:
    """A draft Stripe invoice that never advances by itself (we finalize explicitly)."""
    created = _call(
        _client().v1.invoices.create,
        params={
            "customer": stripe_customer_id,
            "currency": currency.lower(),
            "auto_advance": False,
            "collection_method": "send_invoice",
            "days_until_due": days_until_due,
            "pending_invoice_items_behavior": "exclude",
            "description": f"Savings invoice {number} for {period}",
            "metadata": {"ncp_invoice_id": invoice_id, "ncp_invoice_number": number},
        },
        options={"idempotency_key": f"ncp-invoice-{invoice_id}-create"},
    )
    return StripeInvoice(id=str(created.id), status=str(created.status))


def invoice_item_add(
    *,
    invoice_id: str,
    position: int,
    stripe_invoice_id: str,
    stripe_customer_id: str,
    amount_minor: int,
    currency: str,
    description: str,
) -> str:
    """One line as an integer amount (Stripe never re-rounds it)."""
    created = _call(
        _client().v1.invoice_items.create,
        params={
            "customer": stripe_customer_id,
            "invoice": stripe_invoice_id,
            "amount": amount_minor,
            "currency": currency.lower(),
            "description": description[:500],
            "metadata": {"ncp_invoice_id": invoice_id, "ncp_line_position": str(position)},
        },
        options={"idempotency_key": f"ncp-invoice-{invoice_id}-line-{position}"},
    )
    return str(created.id)


def invoice_finalize(*, invoice_id: str, stripe_invoice_id: str) -> StripeInvoice:
    done = _call(
        _client().v1.invoices.finalize_invoice,
        stripe_invoice_id,
        params={"auto_advance": False},
        options={"idempotency_key": f"ncp-invoice-{invoice_id}-finalize"},
    )
    return StripeInvoice(id=str(done.id), status=str(done.status))


def invoice_send(*, invoice_id: str, stripe_invoice_id: str) -> StripeInvoice:
    sent = _call(
        _client().v1.invoices.send_invoice,
        stripe_invoice_id,
        options={"idempotency_key": f"ncp-invoice-{invoice_id}-send"},
    )
    return StripeInvoice(id=str(sent.id), status=str(sent.status))


def webhook_verify(
    *, payload: bytes, signature_header: str, now: float | None = None
) -> dict[str, Any]:
    """Verify a Stripe-Signature header over the raw body, then its timestamp tolerance, and
    return the parsed event. The signature is checked first (so an attacker learns nothing
    from the timestamp answer); either failure raises before anything is stored."""
    secret = getattr(settings, "STRIPE_WEBHOOK_SECRET", "")
    if not secret:
        raise WebhookSignatureInvalid("No webhook secret is configured; refusing all events.")
    try:
        stripe.WebhookSignature.verify_header(payload, signature_header, secret, tolerance=None)
    except stripe.SignatureVerificationError as exc:
        raise WebhookSignatureInvalid("The Stripe-Signature header does not verify.") from exc
    except UnicodeDecodeError as exc:
        raise WebhookSignatureInvalid("The body is not UTF-8.") from exc
    tolerance = int(getattr(settings, "STRIPE_WEBHOOK_TOLERANCE_S", DEFAULT_WEBHOOK_TOLERANCE_S))
    timestamp = int(
        next(p.split("=", 1)[1] for p in signature_header.split(",") if p.startswith("t="))
    )
    current = time.time() if now is None else now
    # Stripe's library only refuses old timestamps; a far-future one is as suspicious.
    if abs(current - timestamp) > tolerance:
        raise WebhookTimestampStale(
            "The webhook timestamp is outside the tolerance; refusing a possible replay.",
            details={"tolerance_s": tolerance},
        )
    try:
        event = json.loads(payload)
    except ValueError as exc:
        raise WebhookSignatureInvalid("The body is not JSON.") from exc
    if not isinstance(event, dict) or not isinstance(event.get("id"), str):
        raise WebhookSignatureInvalid("The body is not a Stripe event.")
    return event
