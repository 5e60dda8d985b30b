from django.urls import path, re_path

from licences import api

urlpatterns = [
    path("products/", api.ProductListView.as_view(), name="product-list"),
    path("policies/", api.PolicyListView.as_view(), name="policy-list"),
    path("policies/<uuid:policy_id>/", api.PolicyDetailView.as_view(), name="policy-detail"),
    path("licences/", api.LicenceListView.as_view(), name="licence-list"),
    path("licences/<uuid:licence_id>/", api.LicenceDetailView.as_view(), name="licence-detail"),
    path(
        "licences/<uuid:licence_id>/suspend/",
        api.LicenceSuspendView.as_view(),
        name="licence-suspend",
    ),
    path(
        "licences/<uuid:licence_id>/reinstate/",
        api.LicenceReinstateView.as_view(),
        name="licence-reinstate",
    ),
    path(
        "licences/<uuid:licence_id>/revoke/", api.LicenceRevokeView.as_view(), name="licence-revoke"
    ),
    path("signing-keys/", api.SigningKeyListView.as_view(), name="signing-key-list"),
    path("signing-keys/rotate/", api.SigningKeyRotateView.as_view(), name="signing-key-rotate"),
    re_path(
        r"^signing-keys/(?P<key_id>[A-Za-z0-9._-]{1,64})/retire/$",
        api.SigningKeyRetireView.as_view(),
        name="signing-key-retire",
    ),
    # Public SDK documents; the trailing slash is optional for non-Django clients.
    re_path(r"^sdk/keyring/?$", api.KeyringView.as_view(), name="sdk-keyring"),
    re_path(r"^sdk/revocations/?$", api.RevocationListView.as_view(), name="sdk-revocations"),
]
