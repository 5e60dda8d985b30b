"""Encode jobs: a customer's input, encoded by a worker with the licensed codec.

The row is the source of truth for a job's state; broker messages only say "look at job X".
"""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

# The codec engine's baselines and metrics, restated here because the web process must not
# import codec_engine (it would load torch). tests/jobs check that both lists still match.
BASELINE_CODECS = (
    "jpeg",
    "webp",
    "avif",
    "x264",
    "x264-ld",
    "x265",
    "x265-ld",
    "x265-444",
    "svtav1",
    "vvc",
)
BASELINE_METRICS = ("psnr", "psnr-y", "ms-ssim")
MODEL_VERSIONS = ("msh-v1",)
DEFAULT_MODEL_VERSION = "msh-v1"
DEFAULT_BASELINE = "x265"
QUALITY_MIN, QUALITY_MAX = 1, 8


def job_file_path(job: EncodeJob, filename: str) -> str:
    """Storage names are ours, never the uploader's: jobs/<customer>/<job>/<filename>."""
    return f"jobs/{job.customer_id}/{job.pk}/{filename}"


class EncodeJob(models.Model):
    class Kind(models.TextChoices):
        IMAGE = "image", "Still image"
        FRAMES = "frames", "Frame sequence (ZIP of images)"
        VIDEO = "video", "Video file"

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    TERMINAL_STATES = (State.SUCCEEDED, State.FAILED, State.CANCELLED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.PROTECT, related_name="encode_jobs"
    )
    licence = models.ForeignKey(
        "licences.Licence", on_delete=models.PROTECT, related_name="encode_jobs"
    )
    created_by = models.CharField(max_length=200, blank=True)

    # What to encode and how.
    kind = models.CharField(max_length=16, choices=Kind.choices)
    model_version = models.CharField(max_length=64, default=DEFAULT_MODEL_VERSION)
    quality = models.PositiveSmallIntegerField()
    baseline = models.CharField(max_length=32, default=DEFAULT_BASELINE)
    baseline_metric = models.CharField(max_length=16, default="psnr")
    input_file = models.FileField(upload_to=job_file_path, max_length=300)
    input_name = models.CharField(max_length=255, help_text="The uploaded file's name (display).")
    input_bytes = models.BigIntegerField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    frame_count = models.PositiveIntegerField()
    fps = models.FloatField(default=0.0, help_text="0 for a still image.")

    # Where it is.
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0, help_text="Percent, 0..100.")
    frames_done = models.PositiveIntegerField(default=0)
    failure_code = models.CharField(max_length=64, blank=True)
    failure_message = models.CharField(max_length=1000, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    # The attempt that holds the job while it runs, and until when (renewed by its heartbeat).
    # A claim takes a RUNNING job only once its lease has expired: its attempt is dead.
    attempt_id = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    queued_at = models.DateTimeField(default=timezone.now)
    # When the job was last handed to the broker; null while no message got through (the
    # broker was unreachable at submit time). The sweeper sends again what is null or old.
    dispatched_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    # Results.
    output_file = models.FileField(max_length=300, blank=True)
    preview_file = models.FileField(max_length=300, blank=True)
    output_bytes = models.BigIntegerField(null=True, blank=True)
    metrics = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-queued_at"]
        indexes = [
            models.Index(fields=["customer", "-queued_at"], name="encode_job_customer_idx"),
            models.Index(fields=["state", "lease_expires_at"], name="encode_job_state_lease_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                name="encode_job_state_valid",
                condition=models.Q(
                    state__in=["queued", "running", "succeeded", "failed", "cancelled"]
                ),
            ),
            models.CheckConstraint(
                name="encode_job_progress_percent", condition=models.Q(progress__lte=100)
            ),
            models.CheckConstraint(
                name="encode_job_quality_range",
                condition=models.Q(quality__gte=QUALITY_MIN, quality__lte=QUALITY_MAX),
            ),
            # A succeeded job always has its output; a failed one always says why.
            models.CheckConstraint(
                name="encode_job_succeeded_has_output",
                condition=~models.Q(state="succeeded") | models.Q(output_bytes__isnull=False),
            ),
            models.CheckConstraint(
                name="encode_job_failed_has_code",
                condition=~models.Q(state="failed") | ~models.Q(failure_code=""),
            ),
        ]

    def __str__(self) -> str:
        return f"encode job {self.pk} ({self.state})"

    @property
    def is_terminal(self) -> bool:
        return self.state in self.TERMINAL_STATES
