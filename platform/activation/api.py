"""Activations for operators and customers (customers see and change only their own)."""

from __future__ import annotations

import uuid

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from activation import selectors, services
from activation.errors import ActivationNotFound
from activation.models import Activation
from core.api import actor_of
from core.pagination import paginated_response
from core.permissions import IsOperatorOrCustomer, principal_of


class ActivationOutput(serializers.ModelSerializer[Activation]):
    licence_id = serializers.UUIDField()
    customer_id = serializers.UUIDField(source="licence.customer_id")
    device_public_key = serializers.SerializerMethodField()

    class Meta:
        model = Activation
        fields = [
            "id",
            "licence_id",
            "customer_id",
            "state",
            "platform",
            "hostname",
            "fingerprint",
            "device_public_key",
            "activated_at",
            "first_heartbeat_at",
            "last_heartbeat_at",
            "last_seen_at",
            "ended_at",
            "certificate_expires_at",
        ]

    def get_device_public_key(self, obj: Activation) -> str:
        return bytes(obj.device_public_key).hex()


def _scoped(request: Request, activation_id: uuid.UUID) -> Activation:
    activation = selectors.activation_get(
        activation_id=activation_id, scope_customer_id=principal_of(request).customer_id
    )
    if activation is None:
        raise ActivationNotFound("No such activation.")
    return activation


class ActivationListView(APIView):
    permission_classes = [IsOperatorOrCustomer]

    @extend_schema(
        responses=ActivationOutput(many=True),
        parameters=[
            OpenApiParameter("licence_id", str, required=False),
            OpenApiParameter("state", str, required=False, enum=Activation.State.values),
        ],
        tags=["activations"],
    )
    def get(self, request: Request) -> Response:
        state = request.query_params.get("state") or None
        if state is not None and state not in Activation.State.values:
            raise serializers.ValidationError({"state": [f"One of {Activation.State.values}."]})
        raw_licence = request.query_params.get("licence_id")
        try:
            licence_id = uuid.UUID(raw_licence) if raw_licence else None
        except ValueError as exc:
            raise serializers.ValidationError({"licence_id": ["Must be a UUID."]}) from exc
        qs = selectors.activation_list(
            scope_customer_id=principal_of(request).customer_id, licence_id=licence_id, state=state
        )
        return paginated_response(
            request=request, view=self, queryset=qs, serializer_class=ActivationOutput
        )


class ActivationDetailView(APIView):
    permission_classes = [IsOperatorOrCustomer]

    @extend_schema(responses=ActivationOutput, tags=["activations"])
    def get(self, request: Request, activation_id: uuid.UUID) -> Response:
        return Response(ActivationOutput(_scoped(request, activation_id)).data)


class ActivationDeactivateView(APIView):
    """Free a seat remotely (a lost or retired machine). Customers are rate limited like
    devices (seat cycling); operators are not."""

    permission_classes = [IsOperatorOrCustomer]

    @extend_schema(request=None, responses=ActivationOutput, tags=["activations"])
    def post(self, request: Request, activation_id: uuid.UUID) -> Response:
        activation = _scoped(request, activation_id)
        principal = principal_of(request)
        services.activation_deactivate(
            actor=actor_of(request),
            activation_id=activation.pk,
            enforce_rate_limit=not principal.is_operator,
        )
        return Response(ActivationOutput(_scoped(request, activation_id)).data)
