from django.urls import path, re_path

from billing import api

urlpatterns = [
    path("invoices/", api.InvoiceListView.as_view(), name="invoice-list"),
    path("invoices/<uuid:invoice_id>/", api.InvoiceDetailView.as_view(), name="invoice-detail"),
    path(
        "invoices/<uuid:invoice_id>/document.html",
        api.InvoiceHtmlView.as_view(),
        name="invoice-html",
    ),
    path(
        "invoices/<uuid:invoice_id>/document.pdf", api.InvoicePdfView.as_view(), name="invoice-pdf"
    ),
    path("billing/close/", api.BillingCloseView.as_view(), name="billing-close"),
    re_path(r"^billing/stripe/webhook/?$", api.StripeWebhookView.as_view(), name="stripe-webhook"),
]
