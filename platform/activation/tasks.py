"""Celery tasks of the activation app."""

from __future__ import annotations

from celery import shared_task

from activation.services import activation_release_stale


@shared_task(  # type: ignore[untyped-decorator]
    name="activation.release_stale_activations",
    ignore_result=True,
    soft_time_limit=100,
    time_limit=110,
)
def release_stale_activations() -> int:
    """Release activations whose heartbeats stopped for longer than their policy's window.
    Idempotent; scheduled by CELERY_BEAT_SCHEDULE. Returns how many were released."""
    return activation_release_stale()
