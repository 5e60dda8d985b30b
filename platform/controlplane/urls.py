"""URL map of the control plane. The public API is versioned under /api/v1/."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from core.views import LivenessView, ReadinessView

api_v1: list = [
    # each app adds its own routes here: path("", include("licences.urls")), ...
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health/", LivenessView.as_view(), name="health"),
    path("health/live/", LivenessView.as_view(), name="health-live"),
    path("health/ready/", ReadinessView.as_view(), name="health-ready"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/", include(api_v1)),
]
