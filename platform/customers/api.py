"""HTTP API of the customers app (operators write; customers read their own)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import actor_of
from core.errors import NotFound
from core.pagination import paginated_response
from core.permissions import IsOperator, IsOperatorOrCustomer, principal_of
from customers import selectors, services
from customers.models import ContractTerms, Customer, CustomerUser


class CustomerOutput(serializers.ModelSerializer[Customer]):
    class Meta:
        model = Customer
        fields = ["id", "name", "slug", "contact_email", "created_at"]


class ContractTermsOutput(serializers.ModelSerializer[ContractTerms]):
    class Meta:
        model = ContractTerms
        fields = [
            "id",
            "customer",
            "effective_from",
            "revenue_share_percent",
            "value_per_gb",
            "currency",
            "minimum_monthly_fee",
            "billing_time_zone",
            "payment_terms_days",
            "created_at",
        ]


class CustomerUserOutput(serializers.ModelSerializer[CustomerUser]):
    username = serializers.CharField(source="user.username")

    class Meta:
        model = CustomerUser
        fields = ["id", "customer", "username", "role", "created_at"]


def _scoped_customer(request: Request, customer_id: uuid.UUID) -> Customer:
    customer = selectors.customer_get(
        customer_id=customer_id, scope_customer_id=principal_of(request).customer_id
    )
    if customer is None:
        raise NotFound("No such customer.", code="CUSTOMER_NOT_FOUND")
    return customer


class CustomerListView(APIView):
    permission_classes = [IsOperatorOrCustomer]

    class CustomerCreateInput(serializers.Serializer[None]):
        name = serializers.CharField(max_length=200)
        slug = serializers.SlugField(max_length=64)
        contact_email = serializers.EmailField(required=False, default="", allow_blank=True)

    def get_permissions(self) -> Sequence[Any]:
        return [IsOperator()] if self.request.method == "POST" else super().get_permissions()

    @extend_schema(responses=CustomerOutput(many=True), tags=["customers"])
    def get(self, request: Request) -> Response:
        qs = selectors.customer_list(customer_id=principal_of(request).customer_id)
        return paginated_response(
            request=request, view=self, queryset=qs, serializer_class=CustomerOutput
        )

    @extend_schema(request=CustomerCreateInput, responses={201: CustomerOutput}, tags=["customers"])
    def post(self, request: Request) -> Response:
        data = self.CustomerCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        customer = services.customer_create(actor=actor_of(request), **data.validated_data)
        return Response(CustomerOutput(customer).data, status=status.HTTP_201_CREATED)


class CustomerDetailView(APIView):
    permission_classes = [IsOperatorOrCustomer]

    @extend_schema(responses=CustomerOutput, tags=["customers"])
    def get(self, request: Request, customer_id: uuid.UUID) -> Response:
        return Response(CustomerOutput(_scoped_customer(request, customer_id)).data)


class ContractTermsListView(APIView):
    permission_classes = [IsOperatorOrCustomer]

    class ContractTermsCreateInput(serializers.Serializer[None]):
        effective_from = serializers.DateField()
        revenue_share_percent = serializers.DecimalField(
            max_digits=5, decimal_places=2, min_value=Decimal("0"), max_value=Decimal("100")
        )
        value_per_gb = serializers.DecimalField(
            max_digits=12, decimal_places=6, min_value=Decimal("0")
        )
        currency = serializers.RegexField(r"^[A-Za-z]{3}$")
        minimum_monthly_fee = serializers.IntegerField(min_value=0, max_value=10**15)
        billing_time_zone = serializers.CharField(max_length=64, default="UTC")
        payment_terms_days = serializers.IntegerField(min_value=0, max_value=365, default=30)

    def get_permissions(self) -> Sequence[Any]:
        return [IsOperator()] if self.request.method == "POST" else super().get_permissions()

    @extend_schema(responses=ContractTermsOutput(many=True), tags=["customers"])
    def get(self, request: Request, customer_id: uuid.UUID) -> Response:
        customer = _scoped_customer(request, customer_id)
        return paginated_response(
            request=request,
            view=self,
            queryset=selectors.contract_terms_list(customer_id=customer.pk),
            serializer_class=ContractTermsOutput,
        )

    @extend_schema(
        request=ContractTermsCreateInput, responses={201: ContractTermsOutput}, tags=["customers"]
    )
    def post(self, request: Request, customer_id: uuid.UUID) -> Response:
        data = self.ContractTermsCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        terms = services.contract_terms_create(
            actor=actor_of(request), customer_id=customer_id, **data.validated_data
        )
        return Response(ContractTermsOutput(terms).data, status=status.HTTP_201_CREATED)


class ContractTermsInForceView(APIView):
    permission_classes = [IsOperatorOrCustomer]

    @extend_schema(responses=ContractTermsOutput, tags=["customers"])
    def get(self, request: Request, customer_id: uuid.UUID) -> Response:
        customer = _scoped_customer(request, customer_id)
        raw = request.query_params.get("on")
        try:
            on = dt.date.fromisoformat(raw) if raw else timezone.now().date()
        except ValueError as exc:
            raise serializers.ValidationError({"on": ["Must be a date (YYYY-MM-DD)."]}) from exc
        terms = selectors.contract_terms_in_force(customer_id=customer.pk, on=on)
        if terms is None:
            raise NotFound("No contract terms in force on that date.", code="NO_CONTRACT_TERMS")
        return Response(ContractTermsOutput(terms).data)


class CustomerUserAddView(APIView):
    permission_classes = [IsOperator]

    class CustomerUserAddInput(serializers.Serializer[None]):
        username = serializers.RegexField(r"^[\w.@+-]{1,150}$")
        email = serializers.EmailField(required=False, default="", allow_blank=True)
        role = serializers.ChoiceField(choices=CustomerUser.Role.choices)

    @extend_schema(
        request=CustomerUserAddInput, responses={201: CustomerUserOutput}, tags=["customers"]
    )
    def post(self, request: Request, customer_id: uuid.UUID) -> Response:
        data = self.CustomerUserAddInput(data=request.data)
        data.is_valid(raise_exception=True)
        membership = services.customer_user_add(
            actor=actor_of(request), customer_id=customer_id, **data.validated_data
        )
        return Response(CustomerUserOutput(membership).data, status=status.HTTP_201_CREATED)
