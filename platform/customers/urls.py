from django.urls import path

from customers import api

urlpatterns = [
    path("customers/", api.CustomerListView.as_view(), name="customer-list"),
    path("customers/<uuid:customer_id>/", api.CustomerDetailView.as_view(), name="customer-detail"),
    path(
        "customers/<uuid:customer_id>/contract-terms/",
        api.ContractTermsListView.as_view(),
        name="contract-terms-list",
    ),
    path(
        "customers/<uuid:customer_id>/contract-terms/in-force/",
        api.ContractTermsInForceView.as_view(),
        name="contract-terms-in-force",
    ),
    path(
        "customers/<uuid:customer_id>/users/",
        api.CustomerUserAddView.as_view(),
        name="customer-user-add",
    ),
]
