"""The SDK HTTP API (a stable public contract: docs/sdk-api.md).

These endpoints take no API token: activation is authorised by the licence key plus proof of
possession of the device key; heartbeat and deactivation by a signature of the device key.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Callable
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from licences.api import RevocationListOutput
from licences.models import Licence
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from activation import selectors, services
from activation.services import CertificateGrant
from core.fields import StrictCharField

# --- fields ----------------------------------------------------------------------------------


class Base64BytesField(StrictCharField):
    """Base64 (URL-safe or standard, padding optional) of exactly `length` bytes."""

    def __init__(self, *, length: int, **kwargs: Any) -> None:
        self.length = length
        kwargs.setdefault("max_length", 4 * ((length + 2) // 3) + 4)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> bytes:  # type: ignore[override]
        text = super().to_internal_value(data)
        normalised = text.replace("-", "+").replace("_", "/")
        normalised += "=" * (-len(normalised) % 4)
        try:
            raw = base64.b64decode(normalised, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise serializers.ValidationError("Not valid base64.") from exc
        if len(raw) != self.length:
            raise serializers.ValidationError(f"Must decode to exactly {self.length} bytes.")
        return raw


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


_MAX_TIMESTAMP = 1 << 40
_PLATFORM_RE = r"^[A-Za-z0-9._-]{1,64}$"


# --- fast input path -------------------------------------------------------------------------
# The SDK endpoints are the hot path; a DRF serializer costs more than the rest of the request
# handling. `_fast_*` (used by activation.middleware, through FAST_ROUTES) accept only input
# the serializer would accept unchanged (plain ASCII strings without surrounding whitespace,
# real ints, canonical base64 and UUIDs) and return exactly its validated_data; anything else
# returns None and goes to the view's serializer, which answers every bad input with the same
# 400 and error body as before.

_PLATFORM_FAST = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _plain_text(value: Any, max_length: int, *, allow_blank: bool = False) -> str | None:
    """`value` when StrictCharField(max_length, trim_whitespace) would return it unchanged."""
    if (
        type(value) is not str
        or len(value) > max_length
        or not value.isascii()
        or "\x00" in value
        or value != value.strip()
    ):
        return None
    if not value and not allow_blank:
        return None
    return value


def _fast_b64(value: Any, length: int) -> bytes | None:
    text = _plain_text(value, 4 * ((length + 2) // 3) + 4)
    if text is None:
        return None
    normalised = text.replace("-", "+").replace("_", "/")
    normalised += "=" * (-len(normalised) % 4)
    try:
        raw = base64.b64decode(normalised, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == length else None


def _fast_timestamp(value: Any) -> int | None:
    return value if type(value) is int and 0 <= value <= _MAX_TIMESTAMP else None


def _fast_activate_input(data: Any) -> dict[str, Any] | None:
    if type(data) is not dict:
        return None
    hostname = _plain_text(data.get("hostname", ""), 255, allow_blank=True)
    platform = data.get("platform")
    values = {
        "licence_key": _plain_text(data.get("licence_key"), 8192),
        "fingerprint": _plain_text(data.get("fingerprint"), 4096),
        "device_public_key": _fast_b64(data.get("device_public_key"), 32),
        "platform": platform
        if type(platform) is str and _PLATFORM_FAST.fullmatch(platform)
        else None,
        "hostname": hostname,
        "timestamp": _fast_timestamp(data.get("timestamp")),
        "signature": _fast_b64(data.get("signature"), 64),
    }
    return None if any(v is None for v in values.values()) else values


def _fast_signed_input(data: Any) -> dict[str, Any] | None:
    if type(data) is not dict:
        return None
    activation_id = data.get("activation_id")
    if type(activation_id) is not str or len(activation_id) != 36:
        return None
    try:
        parsed = uuid.UUID(activation_id)
    except ValueError:
        return None
    values = {
        "activation_id": parsed,
        "timestamp": _fast_timestamp(data.get("timestamp")),
        "signature": _fast_b64(data.get("signature"), 64),
    }
    return None if any(v is None for v in values.values()) else values


class LicenceStateOutput(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    state = serializers.CharField()
    expires_at = serializers.IntegerField()
    entitlements = serializers.DictField()


class GrantOutput(serializers.Serializer[Any]):
    activation_id = serializers.UUIDField()
    certificate = serializers.CharField()
    certificate_expires_at = serializers.IntegerField()
    offline_grace_s = serializers.IntegerField()
    heartbeat_window_s = serializers.IntegerField()
    heartbeat_interval_s = serializers.IntegerField()
    licence = LicenceStateOutput()
    revocation_serial = serializers.IntegerField()
    revocation_list = RevocationListOutput()
    server_time = serializers.IntegerField()
    reactivated = serializers.BooleanField()


def licence_state_body(licence: Licence) -> dict[str, Any]:
    return {
        "id": str(licence.pk),
        "state": licence.effective_state,
        "expires_at": int(licence.expires_at.timestamp()),
        "entitlements": licence.entitlements,
    }


def grant_body(grant: CertificateGrant) -> dict[str, Any]:
    policy = grant.licence.policy
    revocation = grant.revocation
    return {
        "activation_id": str(grant.activation.pk),
        "certificate": grant.certificate,
        "certificate_expires_at": grant.certificate_expires_at,
        "offline_grace_s": policy.offline_grace_s,
        "heartbeat_window_s": policy.heartbeat_window_s,
        # Four chances to heartbeat inside the window before the seat is released.
        "heartbeat_interval_s": max(30, policy.heartbeat_window_s // 4),
        "licence": licence_state_body(grant.licence),
        "revocation_serial": revocation.serial,
        "revocation_list": {
            "serial": revocation.serial,
            "issued_at": int(revocation.issued_at.timestamp()),
            "token": revocation.token,
        },
        "server_time": grant.server_time,
        "reactivated": grant.reactivated,
    }


def serve_activate(values: dict[str, Any], request_id: str) -> tuple[int, dict[str, Any]]:
    """Activate with validated input; (HTTP status, body). Raises the service's DomainErrors."""
    grant = services.activation_activate(**values, request_id=request_id)
    return (status.HTTP_201_CREATED if grant.created else status.HTTP_200_OK), grant_body(grant)


def serve_heartbeat(values: dict[str, Any], request_id: str) -> tuple[int, dict[str, Any]]:
    grant = services.activation_heartbeat(**values, request_id=request_id)
    return status.HTTP_200_OK, grant_body(grant)


#: The SDK's busiest calls by URL name: (fast input parser, server). activation.middleware
#: serves well-formed requests to these without DRF; anything the fast parser does not
#: accept goes through the views below, which answer every bad input.
FAST_ROUTES: dict[
    str,
    tuple[
        Callable[[Any], dict[str, Any] | None],
        Callable[[dict[str, Any], str], tuple[int, dict[str, Any]]],
    ],
] = {
    "sdk-activate": (_fast_activate_input, serve_activate),
    "sdk-heartbeat": (_fast_signed_input, serve_heartbeat),
}


class _SdkView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list[type] = []


# --- views -----------------------------------------------------------------------------------


class ActivateView(_SdkView):
    class ActivateInput(serializers.Serializer[None]):
        licence_key = StrictCharField(max_length=8192, trim_whitespace=True)
        fingerprint = StrictCharField(max_length=4096)
        device_public_key = Base64BytesField(length=32)
        platform = serializers.RegexField(_PLATFORM_RE)
        hostname = StrictCharField(max_length=255, required=False, default="", allow_blank=True)
        timestamp = serializers.IntegerField(min_value=0, max_value=_MAX_TIMESTAMP)
        signature = Base64BytesField(length=64)

    @extend_schema(
        request=ActivateInput, responses={200: GrantOutput, 201: GrantOutput}, tags=["sdk"], auth=[]
    )
    def post(self, request: Request) -> Response:
        # Well-formed requests never get here (activation.middleware serves them): the
        # serializer answers the rest.
        data = self.ActivateInput(data=request.data)
        data.is_valid(raise_exception=True)
        status_code, body = serve_activate(data.validated_data, getattr(request, "request_id", ""))
        return Response(body, status=status_code)


class SignedDeviceRequestInput(serializers.Serializer[None]):
    activation_id = serializers.UUIDField()
    timestamp = serializers.IntegerField(min_value=0, max_value=_MAX_TIMESTAMP)
    signature = Base64BytesField(length=64)


class HeartbeatView(_SdkView):
    @extend_schema(request=SignedDeviceRequestInput, responses=GrantOutput, tags=["sdk"], auth=[])
    def post(self, request: Request) -> Response:
        data = SignedDeviceRequestInput(data=request.data)
        data.is_valid(raise_exception=True)
        status_code, body = serve_heartbeat(data.validated_data, getattr(request, "request_id", ""))
        return Response(body, status=status_code)


class DeactivateOutput(serializers.Serializer[Any]):
    activation_id = serializers.UUIDField()
    state = serializers.CharField()
    revocation_serial = serializers.IntegerField()
    server_time = serializers.IntegerField()


class DeactivateView(_SdkView):
    @extend_schema(
        request=SignedDeviceRequestInput, responses=DeactivateOutput, tags=["sdk"], auth=[]
    )
    def post(self, request: Request) -> Response:
        data = SignedDeviceRequestInput(data=request.data)
        data.is_valid(raise_exception=True)
        activation, revocation = services.activation_deactivate_signed(
            **data.validated_data, request_id=getattr(request, "request_id", "")
        )
        return Response(
            {
                "activation_id": str(activation.pk),
                "state": activation.state,
                "revocation_serial": revocation.serial,
                "server_time": _server_time(),
            }
        )


def _server_time() -> int:
    return int(timezone.now().timestamp())


class ValidateOutput(serializers.Serializer[Any]):
    valid = serializers.BooleanField()
    code = serializers.CharField()
    licence = LicenceStateOutput(allow_null=True)
    activation_id = serializers.UUIDField(allow_null=True)
    server_time = serializers.IntegerField()


class ValidateView(_SdkView):
    class ValidateInput(serializers.Serializer[None]):
        licence_key = StrictCharField(max_length=8192, trim_whitespace=True)
        fingerprint = StrictCharField(max_length=4096, required=False, allow_null=True)

    @extend_schema(request=ValidateInput, responses=ValidateOutput, tags=["sdk"], auth=[])
    def post(self, request: Request) -> Response:
        data = self.ValidateInput(data=request.data)
        data.is_valid(raise_exception=True)
        check = selectors.licence_key_check(**data.validated_data)
        activation_id: uuid.UUID | None = check.activation_id
        return Response(
            {
                "valid": check.valid,
                "code": check.code,
                "licence": licence_state_body(check.licence) if check.licence else None,
                "activation_id": str(activation_id) if activation_id else None,
                "server_time": _server_time(),
            }
        )
