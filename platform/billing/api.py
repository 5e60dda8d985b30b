"""HTTP API of billing: invoices (customers read their own), documents, the operators' close,
and the Stripe webhook."""

from __future__ import annotations

import uuid
from typing import Any

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.parsers import BaseParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import documents, selectors, services
from billing.models import Invoice, InvoiceLine
from core.api import actor_of
from core.errors import DomainError, NotFound
from core.pagination import paginated_response
from core.permissions import IsOperator, IsOperatorOrCustomer, principal_of


class InvoiceLineOutput(serializers.ModelSerializer[InvoiceLine]):
    class Meta:
        model = InvoiceLine
        fields = [
            "position",
            "kind",
            "description",
            "period_month",
            "event_start",
            "event_end",
            "ingested_from",
            "ingested_before",
            "record_count",
            "bytes_delivered",
            "baseline_bytes",
            "bytes_saved",
            "negative_bytes_saved",
            "negative_records",
            "gb_saved",
            "value_per_gb",
            "share_percent",
            "minimum_fee_minor",
            "amount_precise",
            "amount_minor",
            "billed_before_minor",
            "recomputed_total_minor",
        ]


class InvoiceOutput(serializers.ModelSerializer[Invoice]):
    class Meta:
        model = Invoice
        fields = [
            "id",
            "customer",
            "number",
            "state",
            "period_month",
            "time_zone",
            "period_start",
            "period_end",
            "ingestion_cutoff",
            "currency",
            "total_minor",
            "finalized_at",
            "due_date",
            "paid_at",
            "voided_at",
            "payment_failed_at",
            "stripe_invoice_id",
            "sent_at",
        ]


class InvoiceDetailOutput(InvoiceOutput):
    lines = InvoiceLineOutput(many=True, read_only=True)

    class Meta(InvoiceOutput.Meta):
        fields = [*InvoiceOutput.Meta.fields, "lines"]


def _scoped_invoice(request: Request, invoice_id: uuid.UUID) -> Invoice:
    invoice = selectors.invoice_get(
        invoice_id=invoice_id, scope_customer_id=principal_of(request).customer_id
    )
    if invoice is None:
        raise NotFound("No such invoice.", code="INVOICE_NOT_FOUND")
    return invoice


class InvoiceListView(APIView):
    permission_classes = [IsOperatorOrCustomer]

    @extend_schema(
        parameters=[OpenApiParameter("customer_id", str, required=False)],
        responses=InvoiceOutput(many=True),
        tags=["billing"],
    )
    def get(self, request: Request) -> Response:
        raw = request.query_params.get("customer_id")
        try:
            customer_id = uuid.UUID(raw) if raw else None
        except ValueError as exc:
            raise DomainError("customer_id must be a UUID.", code="VALIDATION_ERROR") from exc
        qs = selectors.invoice_list(
            scope_customer_id=principal_of(request).customer_id, customer_id=customer_id
        )
        return paginated_response(
            request=request, view=self, queryset=qs, serializer_class=InvoiceOutput
        )


class InvoiceDetailView(APIView):
    permission_classes = [IsOperatorOrCustomer]

    @extend_schema(responses=InvoiceDetailOutput, tags=["billing"])
    def get(self, request: Request, invoice_id: uuid.UUID) -> Response:
        return Response(InvoiceDetailOutput(_scoped_invoice(request, invoice_id)).data)


class InvoiceHtmlView(APIView):
    permission_classes = [IsOperatorOrCustomer]

    @extend_schema(responses={(200, "text/html"): str}, tags=["billing"])
    def get(self, request: Request, invoice_id: uuid.UUID) -> HttpResponse:
        invoice = _scoped_invoice(request, invoice_id)
        return HttpResponse(documents.invoice_html(invoice), content_type="text/html")


class InvoicePdfView(APIView):
    permission_classes = [IsOperatorOrCustomer]

    @extend_schema(responses={(200, "application/pdf"): bytes}, tags=["billing"])
    def get(self, request: Request, invoice_id: uuid.UUID) -> HttpResponse:
        invoice = _scoped_invoice(request, invoice_id)
        response = HttpResponse(documents.invoice_pdf(invoice), content_type="application/pdf")
        response["Content-Disposition"] = f'inline; filename="{invoice.number or invoice.pk}.pdf"'
        return response


class CloseOutput(serializers.Serializer[Any]):
    month = serializers.CharField()
    created = serializers.ListField(child=serializers.CharField())
    already_closed = serializers.IntegerField()
    no_terms = serializers.IntegerField()
    still_open = serializers.IntegerField()


class BillingCloseInput(serializers.Serializer[None]):
    month = serializers.RegexField(r"^\d{4}-\d{2}$")
    customer_id = serializers.UUIDField(required=False)


class BillingCloseView(APIView):
    """Operators: close a month now (the beat task does it hourly)."""

    permission_classes = [IsOperator]

    @extend_schema(request=BillingCloseInput, responses=CloseOutput, tags=["billing"])
    def post(self, request: Request) -> Response:
        data = BillingCloseInput(data=request.data)
        data.is_valid(raise_exception=True)
        customer_id = data.validated_data.get("customer_id")
        report = services.billing_period_close(
            actor=actor_of(request),
            month=services.parse_month(data.validated_data["month"]),
            customer_ids=[customer_id] if customer_id else None,
        )
        return Response(
            {
                "month": report.month.strftime("%Y-%m"),
                "created": [str(invoice.number) for invoice in report.created],
                "already_closed": report.already_closed,
                "no_terms": report.no_terms,
                "still_open": report.still_open,
            }
        )


class _RawBodyParser(BaseParser):
    """Leaves the body untouched: the signature covers the exact bytes."""

    media_type = "*/*"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        return None


class StripeWebhookView(APIView):
    """Stripe → us. Signature (and timestamp tolerance) first; raw event stored once per
    Stripe event id; a repeat is answered 200 without doing anything."""

    permission_classes = [AllowAny]
    authentication_classes: list[type] = []
    parser_classes = [_RawBodyParser]

    @extend_schema(request=None, responses={200: {"type": "object"}}, tags=["billing"], auth=[])
    def post(self, request: Request) -> Response:
        event, created = services.stripe_event_receive(
            payload=request.body, signature_header=request.headers.get("Stripe-Signature", "")
        )
        return Response({"received": True, "duplicate": not created, "event_id": event.event_id})
