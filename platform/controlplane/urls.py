"""URL map of the control plane. The public API is versioned under /api/v1/."""

from activation.urls import sdk_urlpatterns
from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from licences.api import KeyringView

from core.metrics import metrics_view
from core.views import LivenessView, ReadinessView

api_v1: list[URLPattern | URLResolver] = [
    # each app adds its own routes here: path("", include("licences.urls")), ...
    path("", include("core.urls")),
    path("", include("customers.urls")),
    path("", include("licences.urls")),
    path("", include("activation.urls")),
    path("", include("metering.urls")),
    path("", include("billing.urls")),
    path("", include("jobs.urls")),
]

urlpatterns = [
    # First: the SDK routes carry most requests, and resolution tries patterns in order.
    path("api/v1/sdk/", include(sdk_urlpatterns)),
    path("admin/", admin.site.urls),
    path("portal/", include("portal.urls")),
    path("", RedirectView.as_view(pattern_name="portal:dashboard"), name="home"),
    path("health/", LivenessView.as_view(), name="health"),
    path("health/live/", LivenessView.as_view(), name="health-live"),
    path("health/ready/", ReadinessView.as_view(), name="health-ready"),
    path("metrics", metrics_view, name="metrics"),  # Prometheus; METRICS_TOKEN guards it
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/", include(api_v1)),
    # The public keyring at a well-known URL, for SDKs that pin only the host.
    path(
        ".well-known/codec-licensing/keyring.json",
        KeyringView.as_view(),
        name="well-known-keyring",
    ),
]
