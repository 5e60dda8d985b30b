from django.urls import path, re_path

from activation import api, sdk_api

urlpatterns = [
    path("activations/", api.ActivationListView.as_view(), name="activation-list"),
    path(
        "activations/<uuid:activation_id>/",
        api.ActivationDetailView.as_view(),
        name="activation-detail",
    ),
    path(
        "activations/<uuid:activation_id>/deactivate/",
        api.ActivationDeactivateView.as_view(),
        name="activation-deactivate",
    ),
    # SDK contract (docs/sdk-api.md): `sdk_urlpatterns`, mounted first by controlplane.urls.
]

# The SDK contract (docs/sdk-api.md), under /api/v1/sdk/; the trailing slash is optional for
# non-Django clients. controlplane.urls resolves these before every other route: they carry
# the control plane's busiest traffic.
sdk_urlpatterns = [
    re_path(r"^activate/?$", sdk_api.ActivateView.as_view(), name="sdk-activate"),
    re_path(r"^heartbeat/?$", sdk_api.HeartbeatView.as_view(), name="sdk-heartbeat"),
    re_path(r"^deactivate/?$", sdk_api.DeactivateView.as_view(), name="sdk-deactivate"),
    re_path(r"^validate/?$", sdk_api.ValidateView.as_view(), name="sdk-validate"),
]
