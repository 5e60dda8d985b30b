from django.urls import path

from jobs import api

urlpatterns = [
    path("jobs/", api.JobListView.as_view(), name="job-list"),
    path("jobs/<uuid:job_id>/", api.JobDetailView.as_view(), name="job-detail"),
    path("jobs/<uuid:job_id>/cancel/", api.JobCancelView.as_view(), name="job-cancel"),
    path("jobs/<uuid:job_id>/output/", api.JobOutputView.as_view(), name="job-output"),
    path("jobs/<uuid:job_id>/preview/", api.JobPreviewView.as_view(), name="job-preview"),
]
