"""Celery application of the control plane.

Broker from CELERY_BROKER_URL (Redis or RabbitMQ). With no broker configured (the embedded
default used by `make demo`), tasks run eagerly in the calling process, so no service is needed.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

app = Celery("controlplane")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
