"""HTTP API of metering: the SDK usage-batch endpoint and customer-scoped usage reads."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.parsers import BaseParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import DomainError
from core.permissions import IsOperatorOrCustomer, principal_of
from metering import selectors, services
from metering.errors import BatchMalformed, BatchSignatureInvalid
from metering.models import UsageDailyRollup, UsageStream


class _RawBodyParser(BaseParser):
    """Accepts the JSON media type without parsing: the service verifies the signature over the
    exact body bytes before anything reads them."""

    media_type = "application/json"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        return None


class BatchOutput(serializers.Serializer[Any]):
    batch_id = serializers.CharField()
    records = serializers.IntegerField()
    new = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    max_sequence = serializers.IntegerField()
    received = serializers.IntegerField()
    missing = serializers.IntegerField(help_text="> 0: a sequence gap; < 0: sequence reuse.")
    server_time = serializers.IntegerField(help_text="Unix milliseconds.")


def _header_uuid(request: Request, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(request.headers.get(name, ""))
    except ValueError as exc:
        raise BatchMalformed(f"Header {name} must be the activation id (a UUID).") from exc


def _header_signature(request: Request) -> bytes:
    raw = request.headers.get("X-Usage-Signature", "")
    text = raw.replace("-", "+").replace("_", "/")
    try:
        signature = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BatchSignatureInvalid("X-Usage-Signature is not base64.") from exc
    if len(signature) != 64:
        raise BatchSignatureInvalid("X-Usage-Signature must decode to 64 bytes.")
    return signature


class UsageBatchView(APIView):
    """POST a signed usage batch (SDK contract, docs/metering-billing.md)."""

    permission_classes = [AllowAny]
    authentication_classes: list[type] = []
    parser_classes = [_RawBodyParser]

    @extend_schema(
        request={"application/json": {"type": "object"}},
        responses=BatchOutput,
        parameters=[
            OpenApiParameter("X-Activation-Id", str, OpenApiParameter.HEADER, required=True),
            OpenApiParameter("X-Usage-Signature", str, OpenApiParameter.HEADER, required=True),
        ],
        tags=["sdk"],
        auth=[],
    )
    def post(self, request: Request) -> Response:
        activation_id = _header_uuid(request, "X-Activation-Id")
        signature = _header_signature(request)
        result = services.usage_batch_record(
            activation_id=activation_id,
            body=request.body,
            signature=signature,
            request_id=getattr(request, "request_id", ""),
        )
        return Response(
            {
                "batch_id": result.batch_id,
                "records": result.record_count,
                "new": result.new_count,
                "duplicates": result.duplicate_count,
                "max_sequence": result.max_sequence,
                "received": result.received_count,
                "missing": result.missing,
                "server_time": services.datetime_to_ms(dt.datetime.now(dt.UTC)),
            }
        )


def _scope_customer(request: Request) -> uuid.UUID:
    """The customer a read is about: the token's own, or ?customer_id= for operators."""
    principal = principal_of(request)
    if principal.customer_id is not None:
        return principal.customer_id
    raw = request.query_params.get("customer_id", "")
    try:
        return uuid.UUID(raw)
    except ValueError as exc:
        raise DomainError(
            "Operators must name the customer: ?customer_id=<uuid>.", code="VALIDATION_ERROR"
        ) from exc


class DailyUsageOutput(serializers.ModelSerializer[UsageDailyRollup]):
    class Meta:
        model = UsageDailyRollup
        fields = [
            "day",
            "source_kind",
            "record_count",
            "frames",
            "pixels",
            "duration_ms",
            "bytes_delivered",
            "baseline_bytes",
            "bytes_saved",
            "negative_records",
        ]


class UsageSummaryView(APIView):
    """Daily usage (UTC days) and totals for a date range; customers see only their own."""

    permission_classes = [IsOperatorOrCustomer]

    class Query(serializers.Serializer[None]):
        start = serializers.DateField()
        end = serializers.DateField()

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            if attrs["end"] <= attrs["start"] or (attrs["end"] - attrs["start"]).days > 400:
                raise serializers.ValidationError("Need start < end, at most 400 days apart.")
            return attrs

    @extend_schema(
        parameters=[
            OpenApiParameter("start", dt.date, required=True),
            OpenApiParameter("end", dt.date, required=True, description="Exclusive."),
            OpenApiParameter("customer_id", str, required=False, description="Operators only."),
        ],
        responses={200: {"type": "object"}},
        tags=["usage"],
    )
    def get(self, request: Request) -> Response:
        customer_id = _scope_customer(request)
        query = self.Query(data=request.query_params)
        query.is_valid(raise_exception=True)
        start, end = query.validated_data["start"], query.validated_data["end"]
        days = selectors.usage_daily(customer_id=customer_id, start=start, end=end)
        return Response(
            {
                "customer_id": str(customer_id),
                "start": start.isoformat(),
                "end": end.isoformat(),
                "totals": selectors.usage_totals(customer_id=customer_id, start=start, end=end),
                "days": DailyUsageOutput(days, many=True).data,
            }
        )


class UsageStreamOutput(serializers.ModelSerializer[UsageStream]):
    missing = serializers.IntegerField()
    has_gap = serializers.BooleanField()

    class Meta:
        model = UsageStream
        fields = [
            "activation",
            "max_sequence",
            "received_count",
            "missing",
            "has_gap",
            "first_ingested_at",
            "last_ingested_at",
        ]


class UsageStreamListView(APIView):
    """Per-activation sequence streams with their gap flags."""

    permission_classes = [IsOperatorOrCustomer]

    @extend_schema(
        parameters=[OpenApiParameter("customer_id", str, required=False)],
        responses=UsageStreamOutput(many=True),
        tags=["usage"],
    )
    def get(self, request: Request) -> Response:
        customer_id = _scope_customer(request)
        streams = selectors.usage_streams(customer_id=customer_id)[:500]
        return Response(UsageStreamOutput(streams, many=True).data)
