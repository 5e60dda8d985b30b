"""Health endpoints: liveness (the process answers) and readiness (database and broker reachable).

The broker is checked only when one is configured (CELERY_BROKER_URL); the embedded setup runs
tasks in-process and has none.
"""

from __future__ import annotations

from django.conf import settings
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
        if not settings.CELERY_TASK_ALWAYS_EAGER:
            checks["broker"] = _broker_ok()
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


BROKER_TIMEOUT_S = 2.0


def _broker_ok() -> bool:
    from kombu.exceptions import KombuError

    from controlplane.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=BROKER_TIMEOUT_S)
    except (KombuError, OSError, TimeoutError):
        return False
    return True
