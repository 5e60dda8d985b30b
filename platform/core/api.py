"""Operator API of the core app: API tokens and the audit log."""

from __future__ import annotations

import uuid

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core import selectors, services
from core.audit import Actor
from core.models import ApiToken, AuditLog
from core.pagination import paginated_response
from core.permissions import IsOperator, principal_of


def actor_of(request: Request) -> Actor:
    """The audit actor for an authenticated API request."""
    return principal_of(request).actor(getattr(request, "request_id", ""))


class ApiTokenOutput(serializers.ModelSerializer[ApiToken]):
    class Meta:
        model = ApiToken
        fields = [
            "id",
            "name",
            "scope",
            "customer",
            "prefix",
            "created_at",
            "created_by",
            "last_used_at",
            "revoked_at",
        ]


class ApiTokenCreatedOutput(ApiTokenOutput):
    token = serializers.CharField(help_text="The full token. Shown once; store it now.")

    class Meta(ApiTokenOutput.Meta):
        fields = [*ApiTokenOutput.Meta.fields, "token"]


class ApiTokenListView(APIView):
    permission_classes = [IsOperator]

    class ApiTokenCreateInput(serializers.Serializer[None]):
        name = serializers.CharField(max_length=100)
        scope = serializers.ChoiceField(choices=ApiToken.Scope.choices)
        customer_id = serializers.UUIDField(required=False, allow_null=True)

    @extend_schema(
        responses=ApiTokenOutput(many=True),
        parameters=[OpenApiParameter("customer_id", str, required=False)],
        tags=["tokens"],
    )
    def get(self, request: Request) -> Response:
        customer_id = _uuid_param(request, "customer_id")
        return paginated_response(
            request=request,
            view=self,
            queryset=selectors.api_token_list(customer_id=customer_id),
            serializer_class=ApiTokenOutput,
        )

    @extend_schema(
        request=ApiTokenCreateInput, responses={201: ApiTokenCreatedOutput}, tags=["tokens"]
    )
    def post(self, request: Request) -> Response:
        data = self.ApiTokenCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        issued = services.api_token_create(actor=actor_of(request), **data.validated_data)
        body = dict(ApiTokenOutput(issued.token).data)
        body["token"] = issued.secret
        return Response(body, status=status.HTTP_201_CREATED)


class ApiTokenRevokeView(APIView):
    permission_classes = [IsOperator]

    @extend_schema(request=None, responses=ApiTokenOutput, tags=["tokens"])
    def post(self, request: Request, token_id: uuid.UUID) -> Response:
        token = services.api_token_revoke(actor=actor_of(request), token_id=token_id)
        return Response(ApiTokenOutput(token).data)


class AuditLogOutput(serializers.ModelSerializer[AuditLog]):
    class Meta:
        model = AuditLog
        fields = [
            "id",
            "created_at",
            "actor_kind",
            "actor_label",
            "request_id",
            "action",
            "object_type",
            "object_id",
            "customer_id",
            "changes",
        ]


class AuditLogListView(APIView):
    permission_classes = [IsOperator]

    class Query(serializers.Serializer[None]):
        # Free-text filters, taken as given (not trimmed) and cut to the columns' length below;
        # DRF's CharField refuses a NUL, which PostgreSQL text cannot hold.
        object_type = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
        object_id = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
        action = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)

    @extend_schema(
        responses=AuditLogOutput(many=True),
        parameters=[
            OpenApiParameter("customer_id", str, required=False),
            OpenApiParameter("object_type", str, required=False),
            OpenApiParameter("object_id", str, required=False),
            OpenApiParameter("action", str, required=False),
        ],
        tags=["audit"],
    )
    def get(self, request: Request) -> Response:
        query = self.Query(data=request.query_params)
        query.is_valid(raise_exception=True)
        text = {name: (value[:64] or None) for name, value in query.validated_data.items()}
        qs = selectors.audit_log_list(
            customer_id=_uuid_param(request, "customer_id"),
            object_type=text.get("object_type"),
            object_id=text.get("object_id"),
            action=text.get("action"),
        )
        return paginated_response(
            request=request, view=self, queryset=qs, serializer_class=AuditLogOutput
        )


def _uuid_param(request: Request, name: str) -> uuid.UUID | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError as exc:
        raise serializers.ValidationError({name: ["Must be a UUID."]}) from exc
