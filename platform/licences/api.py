"""HTTP API of the licences app: operators manage; customers read their own licences."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import actor_of
from core.audit import Actor
from core.pagination import paginated_response
from core.permissions import IsOperator, IsOperatorOrCustomer, principal_of
from licences import keys, selectors, services
from licences.errors import LicenceNotFound
from licences.models import Licence, LicencePolicy, Product, SigningKey

# --- serializers -----------------------------------------------------------------------------


class ProductOutput(serializers.ModelSerializer[Product]):
    class Meta:
        model = Product
        fields = ["id", "code", "name", "created_at"]


class EntitlementsSerializer(serializers.Serializer[Any]):
    """licensing.Entitlements without max_activations (a policy field); unknown keys refused."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({k: ["Unknown entitlement."] for k in unknown})
        return super().to_internal_value(data)

    features = serializers.ListField(
        child=serializers.CharField(max_length=64), max_length=64, required=False
    )
    max_width = serializers.IntegerField(min_value=0, max_value=1 << 20, required=False)
    max_height = serializers.IntegerField(min_value=0, max_value=1 << 20, required=False)
    max_fps = serializers.IntegerField(min_value=0, max_value=10_000, required=False)
    platforms = serializers.ListField(
        child=serializers.CharField(max_length=64), max_length=64, required=False
    )
    model_versions = serializers.ListField(
        child=serializers.CharField(max_length=64), max_length=64, required=False
    )


class PolicyOutput(serializers.ModelSerializer[LicencePolicy]):
    product_code = serializers.CharField(source="product.code")

    class Meta:
        model = LicencePolicy
        fields = [
            "id",
            "product",
            "product_code",
            "code",
            "name",
            "entitlements",
            "max_activations",
            "licence_validity_days",
            "certificate_lifetime_s",
            "heartbeat_window_s",
            "offline_grace_s",
            "activation_rate_limit",
            "activation_rate_window_s",
            "deactivation_rate_limit",
            "deactivation_rate_window_s",
            "created_at",
        ]


class LicenceOutput(serializers.ModelSerializer[Licence]):
    state = serializers.CharField(source="effective_state")
    product = serializers.CharField(source="policy.product.code")
    policy = serializers.CharField(source="policy.code")
    policy_id = serializers.UUIDField()
    customer_id = serializers.UUIDField()
    active_activations = serializers.IntegerField(required=False)

    class Meta:
        model = Licence
        fields = [
            "id",
            "customer_id",
            "product",
            "policy",
            "policy_id",
            "state",
            "state_reason",
            "key",
            "max_activations",
            "active_activations",
            "entitlements",
            "not_before",
            "expires_at",
            "issued_at",
            "suspended_at",
            "revoked_at",
        ]


class SigningKeyOutput(serializers.ModelSerializer[SigningKey]):
    public_key = serializers.SerializerMethodField()

    class Meta:
        model = SigningKey
        fields = ["key_id", "public_key", "state", "created_at", "retired_at"]

    def get_public_key(self, obj: SigningKey) -> str:
        return bytes(obj.public_key).hex()


class ReasonInput(serializers.Serializer[None]):
    reason = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)


# --- products and policies -------------------------------------------------------------------


class ProductListView(APIView):
    permission_classes = [IsOperator]

    class ProductCreateInput(serializers.Serializer[None]):
        code = serializers.SlugField(max_length=64)
        name = serializers.CharField(max_length=200)

    @extend_schema(responses=ProductOutput(many=True), tags=["licences"])
    def get(self, request: Request) -> Response:
        return paginated_response(
            request=request,
            view=self,
            queryset=selectors.product_list(),
            serializer_class=ProductOutput,
        )

    @extend_schema(request=ProductCreateInput, responses={201: ProductOutput}, tags=["licences"])
    def post(self, request: Request) -> Response:
        data = self.ProductCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        product = services.product_create(actor=actor_of(request), **data.validated_data)
        return Response(ProductOutput(product).data, status=status.HTTP_201_CREATED)


class PolicyListView(APIView):
    permission_classes = [IsOperator]

    class PolicyCreateInput(serializers.Serializer[None]):
        product_id = serializers.UUIDField()
        code = serializers.SlugField(max_length=64)
        name = serializers.CharField(max_length=200)
        entitlements = EntitlementsSerializer(required=False, default=dict)
        max_activations = serializers.IntegerField(min_value=1, max_value=1_000_000)
        licence_validity_days = serializers.IntegerField(min_value=1, max_value=36_500, default=365)
        certificate_lifetime_s = serializers.IntegerField(
            min_value=300, max_value=366 * 86400, default=7 * 86400
        )
        heartbeat_window_s = serializers.IntegerField(
            min_value=60, max_value=366 * 86400, default=3600
        )
        offline_grace_s = serializers.IntegerField(
            min_value=0, max_value=366 * 86400, default=3 * 86400
        )
        activation_rate_limit = serializers.IntegerField(
            min_value=1, max_value=1_000_000, default=20
        )
        activation_rate_window_s = serializers.IntegerField(
            min_value=1, max_value=30 * 86400, default=3600
        )
        deactivation_rate_limit = serializers.IntegerField(
            min_value=1, max_value=1_000_000, default=10
        )
        deactivation_rate_window_s = serializers.IntegerField(
            min_value=1, max_value=30 * 86400, default=3600
        )

    @extend_schema(
        responses=PolicyOutput(many=True),
        parameters=[OpenApiParameter("product_id", str, required=False)],
        tags=["licences"],
    )
    def get(self, request: Request) -> Response:
        return paginated_response(
            request=request,
            view=self,
            queryset=selectors.policy_list(product_id=_uuid_param(request, "product_id")),
            serializer_class=PolicyOutput,
        )

    @extend_schema(request=PolicyCreateInput, responses={201: PolicyOutput}, tags=["licences"])
    def post(self, request: Request) -> Response:
        data = self.PolicyCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        fields["entitlements"] = dict(fields.get("entitlements") or {})
        policy = services.policy_create(actor=actor_of(request), **fields)
        return Response(PolicyOutput(policy).data, status=status.HTTP_201_CREATED)


class PolicyDetailView(APIView):
    permission_classes = [IsOperator]

    @extend_schema(responses=PolicyOutput, tags=["licences"])
    def get(self, request: Request, policy_id: uuid.UUID) -> Response:
        policy = selectors.policy_list().filter(pk=policy_id).first()
        if policy is None:
            raise LicenceNotFound("No such licence policy.", code="POLICY_NOT_FOUND")
        return Response(PolicyOutput(policy).data)


# --- licences --------------------------------------------------------------------------------


class LicenceListView(APIView):
    permission_classes = [IsOperatorOrCustomer]

    class LicenceIssueInput(serializers.Serializer[None]):
        customer_id = serializers.UUIDField()
        policy_id = serializers.UUIDField()
        not_before = serializers.DateTimeField(required=False, allow_null=True, default=None)
        expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
        max_activations = serializers.IntegerField(
            min_value=1, max_value=1_000_000, required=False, allow_null=True, default=None
        )

    def get_permissions(self) -> Sequence[Any]:
        return [IsOperator()] if self.request.method == "POST" else super().get_permissions()

    @extend_schema(
        responses=LicenceOutput(many=True),
        parameters=[
            OpenApiParameter("customer_id", str, required=False),
            OpenApiParameter("state", str, required=False, enum=Licence.State.values),
        ],
        tags=["licences"],
    )
    def get(self, request: Request) -> Response:
        state = request.query_params.get("state") or None
        if state is not None and state not in Licence.State.values:
            raise serializers.ValidationError({"state": [f"One of {Licence.State.values}."]})
        qs = selectors.licence_list(
            scope_customer_id=principal_of(request).customer_id,
            customer_id=_uuid_param(request, "customer_id"),
            state=state,
        )
        return paginated_response(
            request=request, view=self, queryset=qs, serializer_class=LicenceOutput
        )

    @extend_schema(request=LicenceIssueInput, responses={201: LicenceOutput}, tags=["licences"])
    def post(self, request: Request) -> Response:
        data = self.LicenceIssueInput(data=request.data)
        data.is_valid(raise_exception=True)
        licence = services.licence_issue(actor=actor_of(request), **data.validated_data)
        return Response(_licence_body(request, licence.pk), status=status.HTTP_201_CREATED)


def _licence_body(request: Request, licence_id: uuid.UUID) -> dict[str, Any]:
    licence = selectors.licence_get(
        licence_id=licence_id, scope_customer_id=principal_of(request).customer_id
    )
    if licence is None:
        raise LicenceNotFound("No such licence.")
    return dict(LicenceOutput(licence).data)


class LicenceDetailView(APIView):
    permission_classes = [IsOperatorOrCustomer]

    @extend_schema(responses=LicenceOutput, tags=["licences"])
    def get(self, request: Request, licence_id: uuid.UUID) -> Response:
        return Response(_licence_body(request, licence_id))


class _LicenceTransitionView(APIView):
    permission_classes = [IsOperator]
    transition: Any = None

    @extend_schema(request=ReasonInput, responses=LicenceOutput, tags=["licences"])
    def post(self, request: Request, licence_id: uuid.UUID) -> Response:
        data = ReasonInput(data=request.data)
        data.is_valid(raise_exception=True)
        type(self).transition(
            actor=actor_of(request), licence_id=licence_id, reason=data.validated_data["reason"]
        )
        return Response(_licence_body(request, licence_id))


class LicenceSuspendView(_LicenceTransitionView):
    transition = services.licence_suspend


class LicenceReinstateView(_LicenceTransitionView):
    transition = services.licence_reinstate


class LicenceRevokeView(_LicenceTransitionView):
    transition = services.licence_revoke


# --- signing keys ----------------------------------------------------------------------------


class SigningKeyListView(APIView):
    permission_classes = [IsOperator]

    @extend_schema(responses=SigningKeyOutput(many=True), tags=["signing keys"])
    def get(self, request: Request) -> Response:
        return paginated_response(
            request=request,
            view=self,
            queryset=selectors.signing_key_list(),
            serializer_class=SigningKeyOutput,
        )


class SigningKeyRotateView(APIView):
    permission_classes = [IsOperator]

    @extend_schema(request=None, responses={201: SigningKeyOutput}, tags=["signing keys"])
    def post(self, request: Request) -> Response:
        row = services.signing_key_rotate(actor=actor_of(request))
        return Response(SigningKeyOutput(row).data, status=status.HTTP_201_CREATED)


class SigningKeyRetireView(APIView):
    permission_classes = [IsOperator]

    @extend_schema(request=None, responses=SigningKeyOutput, tags=["signing keys"])
    def post(self, request: Request, key_id: str) -> Response:
        row = services.signing_key_retire(actor=actor_of(request), key_id=key_id)
        return Response(SigningKeyOutput(row).data)


# --- public SDK documents --------------------------------------------------------------------


class KeyringView(APIView):
    """The public keyring (licensing.Keyring JSON). Public, cacheable for 5 minutes."""

    permission_classes = [AllowAny]
    authentication_classes: list[type] = []

    @extend_schema(
        responses=inline_serializer(
            "Keyring",
            fields={
                "format": serializers.IntegerField(),
                "keys": serializers.ListField(child=serializers.DictField()),
            },
        ),
        tags=["sdk"],
    )
    def get(self, request: Request) -> HttpResponse:
        body = keys.keyring_snapshot().keyring.to_json()
        response = HttpResponse(body, content_type="application/json")
        response["Cache-Control"] = "public, max-age=300"
        return response


class RevocationListOutput(serializers.Serializer[Any]):
    serial = serializers.IntegerField()
    issued_at = serializers.IntegerField()
    token = serializers.CharField(help_text="The signed revocation list (licensing format).")


def revocation_list_body() -> dict[str, Any]:
    row = services.revocation_list_current(actor=Actor.system("revocation-list"))
    return {"serial": row.serial, "issued_at": int(row.issued_at.timestamp()), "token": row.token}


class RevocationListView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list[type] = []

    @extend_schema(responses=RevocationListOutput, tags=["sdk"])
    def get(self, request: Request) -> Response:
        response = Response(revocation_list_body())
        response["Cache-Control"] = "no-cache"
        return response


def _uuid_param(request: Request, name: str) -> uuid.UUID | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError as exc:
        raise serializers.ValidationError({name: ["Must be a UUID."]}) from exc
