from django.urls import path, re_path

from metering import api

urlpatterns = [
    # SDK contract; the trailing slash is optional for non-Django clients.
    re_path(r"^sdk/usage-batches/?$", api.UsageBatchView.as_view(), name="sdk-usage-batches"),
    path("usage/daily/", api.UsageSummaryView.as_view(), name="usage-daily"),
    path("usage/streams/", api.UsageStreamListView.as_view(), name="usage-streams"),
]
