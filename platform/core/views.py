"""Health endpoints: liveness (the process answers) and readiness (database reachable)."""

from __future__ import annotations

from django.db import connection
from django.db.utils import Error as DatabaseError
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

_HealthSerializer = inline_serializer(
    "Health", fields={"status": serializers.CharField(), "checks": serializers.DictField()}
)


class LivenessView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list[type] = []

    @extend_schema(responses=_HealthSerializer, tags=["health"])
    def get(self, request: Request) -> Response:
        return Response({"status": "ok", "checks": {}})


class ReadinessView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list[type] = []

    @extend_schema(responses={200: _HealthSerializer, 503: _HealthSerializer}, tags=["health"])
    def get(self, request: Request) -> Response:
        checks = {"database": _database_ok()}
        ready = all(checks.values())
        return Response(
            {"status": "ok" if ready else "unavailable", "checks": checks},
            status=200 if ready else 503,
        )


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError:
        return False
    return True
