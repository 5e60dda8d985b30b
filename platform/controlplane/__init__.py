"""The Django project package of the control plane."""

from controlplane.celery import app as celery_app

__all__ = ["celery_app"]
