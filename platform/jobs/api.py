"""Encode-job API: customers upload, follow, download and cancel their jobs.

Customer tokens submit (the job belongs to the token's customer); every read and cancel is
scoped to the caller's customer, so another customer's job is a 404. Operator tokens may read
and cancel any job.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import actor_of
from core.pagination import paginated_response
from core.permissions import IsOperatorOrCustomer, principal_of
from jobs import selectors, services
from jobs.errors import CustomerTokenRequired, InputTooLarge, JobNotFound, JobOutputUnavailable
from jobs.models import (
    BASELINE_CODECS,
    BASELINE_METRICS,
    DEFAULT_BASELINE,
    DEFAULT_MODEL_VERSION,
    MODEL_VERSIONS,
    QUALITY_MAX,
    QUALITY_MIN,
    EncodeJob,
)

# Multipart framing around the file: a request this much above the file limit is refused
# before its body is read.
MULTIPART_OVERHEAD = 64 * 1024


class FailureOutput(serializers.Serializer[Any]):
    code = serializers.CharField()
    message = serializers.CharField()


class LinksOutput(serializers.Serializer[Any]):
    self = serializers.CharField()
    cancel = serializers.CharField()
    output = serializers.CharField(allow_null=True)
    preview = serializers.CharField(allow_null=True)


class JobOutput(serializers.ModelSerializer[EncodeJob]):
    customer_id = serializers.UUIDField()
    licence_id = serializers.UUIDField()
    failure = serializers.SerializerMethodField()
    links = serializers.SerializerMethodField()

    class Meta:
        model = EncodeJob
        fields = [
            "id",
            "customer_id",
            "licence_id",
            "kind",
            "state",
            "progress",
            "frames_done",
            "frame_count",
            "width",
            "height",
            "fps",
            "quality",
            "model_version",
            "baseline",
            "baseline_metric",
            "input_name",
            "input_bytes",
            "output_bytes",
            "failure",
            "attempts",
            "queued_at",
            "started_at",
            "finished_at",
            "metrics",
            "links",
        ]

    @extend_schema_field(FailureOutput(allow_null=True))
    def get_failure(self, job: EncodeJob) -> dict[str, str] | None:
        if job.state != EncodeJob.State.FAILED:
            return None
        return {"code": job.failure_code, "message": job.failure_message}

    @extend_schema_field(LinksOutput)
    def get_links(self, job: EncodeJob) -> dict[str, str | None]:
        done = job.state == EncodeJob.State.SUCCEEDED
        return {
            "self": reverse("job-detail", args=[job.pk]),
            "cancel": reverse("job-cancel", args=[job.pk]),
            "output": reverse("job-output", args=[job.pk]) if done else None,
            "preview": reverse("job-preview", args=[job.pk]) if done else None,
        }


def _job_or_404(request: Request, job_id: uuid.UUID) -> EncodeJob:
    job = selectors.encode_job_get(
        job_id=job_id, scope_customer_id=principal_of(request).customer_id
    )
    if job is None:
        raise JobNotFound("No such job.")
    return job


class JobListView(APIView):
    permission_classes = [IsOperatorOrCustomer]
    parser_classes = [MultiPartParser, FormParser]

    class Input(serializers.Serializer[None]):
        input = serializers.FileField(
            allow_empty_file=True,
            help_text="An image, a video file, or a ZIP of same-sized images (a frame sequence).",
        )
        kind = serializers.ChoiceField(
            choices=EncodeJob.Kind.choices,
            required=False,
            help_text="Default: from the file name (.zip = frames, video suffixes = video).",
        )
        quality = serializers.IntegerField(min_value=QUALITY_MIN, max_value=QUALITY_MAX, default=4)
        model_version = serializers.ChoiceField(
            choices=list(MODEL_VERSIONS), default=DEFAULT_MODEL_VERSION
        )
        baseline = serializers.ChoiceField(choices=list(BASELINE_CODECS), default=DEFAULT_BASELINE)
        baseline_metric = serializers.ChoiceField(choices=list(BASELINE_METRICS), default="psnr")
        licence_id = serializers.UUIDField(
            required=False, help_text="Default: the customer's newest active licence."
        )
        fps = serializers.FloatField(
            min_value=1, max_value=240, required=False, help_text="Frame rate of a frame sequence."
        )

    @extend_schema(
        responses=JobOutput(many=True),
        parameters=[OpenApiParameter("state", str, required=False, enum=EncodeJob.State.values)],
        tags=["jobs"],
    )
    def get(self, request: Request) -> Response:
        state = request.query_params.get("state") or None
        if state is not None and state not in EncodeJob.State.values:
            raise serializers.ValidationError({"state": [f"One of {EncodeJob.State.values}."]})
        qs = selectors.encode_job_list(
            scope_customer_id=principal_of(request).customer_id, state=state
        )
        return paginated_response(
            request=request, view=self, queryset=qs, serializer_class=JobOutput
        )

    @extend_schema(
        request={"multipart/form-data": Input},
        responses={202: JobOutput},
        tags=["jobs"],
        description="Upload an input and queue a job. Answers 202 with the job; follow "
        "`links.self` for its state and progress.",
    )
    def post(self, request: Request) -> Response:
        principal = principal_of(request)
        if principal.customer_id is None:
            raise CustomerTokenRequired("Jobs are submitted with a customer token.")
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > settings.JOBS_MAX_INPUT_BYTES + MULTIPART_OVERHEAD:
            # Refused before the body is parsed, so an oversized upload is never spooled.
            raise InputTooLarge(
                f"The request is {length} bytes; uploads are limited to "
                f"{settings.JOBS_MAX_INPUT_BYTES} bytes."
            )
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        job = services.encode_job_submit(
            actor=actor_of(request),
            customer_id=principal.customer_id,
            upload=fields.pop("input"),
            **fields,
        )
        job.refresh_from_db()  # with an eager broker the job may already have run
        return Response(JobOutput(job).data, status=status.HTTP_202_ACCEPTED)


class JobDetailView(APIView):
    permission_classes = [IsOperatorOrCustomer]

    @extend_schema(responses=JobOutput, tags=["jobs"])
    def get(self, request: Request, job_id: uuid.UUID) -> Response:
        return Response(JobOutput(_job_or_404(request, job_id)).data)


class JobCancelView(APIView):
    permission_classes = [IsOperatorOrCustomer]

    @extend_schema(request=None, responses=JobOutput, tags=["jobs"])
    def post(self, request: Request, job_id: uuid.UUID) -> Response:
        job = services.encode_job_cancel(
            actor=actor_of(request),
            job_id=job_id,
            scope_customer_id=principal_of(request).customer_id,
        )
        return Response(JobOutput(job).data)


def _file_response(request: Request, job_id: uuid.UUID, *, preview: bool) -> FileResponse:
    job = _job_or_404(request, job_id)
    name = job.preview_file.name if preview else job.output_file.name
    if job.state != EncodeJob.State.SUCCEEDED or not name:
        raise JobOutputUnavailable(f"The job is {job.state}; results exist once it succeeded.")
    handle = default_storage.open(name, "rb")
    if preview:
        return FileResponse(handle, content_type="image/png", filename=f"{job.pk}-preview.png")
    return FileResponse(
        handle,
        as_attachment=True,
        content_type="application/octet-stream",
        filename=f"{job.pk}.nce",
    )


class JobOutputView(APIView):
    permission_classes = [IsOperatorOrCustomer]

    @extend_schema(
        responses={
            (200, "application/octet-stream"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The bitstream (.nce)."
            )
        },
        tags=["jobs"],
    )
    def get(self, request: Request, job_id: uuid.UUID) -> FileResponse:
        return _file_response(request, job_id, preview=False)


class JobPreviewView(APIView):
    permission_classes = [IsOperatorOrCustomer]

    @extend_schema(
        responses={
            (200, "image/png"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The first frame, decoded from the bitstream."
            )
        },
        tags=["jobs"],
    )
    def get(self, request: Request, job_id: uuid.UUID) -> FileResponse:
        return _file_response(request, job_id, preview=True)
