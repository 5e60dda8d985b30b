"""URLs of the portal, mounted at /portal/ (namespace "portal")."""

from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from portal import views

app_name = "portal"

_reset = {
    "password_reset": views.PasswordResetView.as_view(
        template_name="portal/password_reset.html",
        email_template_name="portal/email/password_reset.txt",
        subject_template_name="portal/email/password_reset_subject.txt",
        success_url=reverse_lazy("portal:password_reset_done"),
    ),
    "password_reset_done": auth_views.PasswordResetDoneView.as_view(
        template_name="portal/password_reset_done.html"
    ),
    "password_reset_confirm": auth_views.PasswordResetConfirmView.as_view(
        template_name="portal/password_reset_confirm.html",
        success_url=reverse_lazy("portal:password_reset_complete"),
    ),
    "password_reset_complete": auth_views.PasswordResetCompleteView.as_view(
        template_name="portal/password_reset_complete.html"
    ),
}

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("sign-in/", views.sign_in, name="sign_in"),
    path("sign-in/verify/", views.sign_in_verify, name="sign_in_verify"),
    path("sign-out/", views.sign_out, name="sign_out"),
    path("password-reset/", _reset["password_reset"], name="password_reset"),
    path("password-reset/sent/", _reset["password_reset_done"], name="password_reset_done"),
    path(
        "password-reset/<uidb64>/<token>/",
        _reset["password_reset_confirm"],
        name="password_reset_confirm",
    ),
    path("password-reset/done/", _reset["password_reset_complete"], name="password_reset_complete"),
    path("licences/", views.licences, name="licences"),
    path("licences/<uuid:licence_id>/", views.licence_detail, name="licence_detail"),
    path("devices/", views.devices, name="devices"),
    path(
        "devices/<uuid:activation_id>/deactivate/",
        views.device_deactivate,
        name="device_deactivate",
    ),
    path("tokens/", views.tokens, name="tokens"),
    path("tokens/<uuid:token_id>/revoke/", views.token_revoke, name="token_revoke"),
    path("jobs/", views.jobs, name="jobs"),
    path("jobs/<uuid:job_id>/", views.job_detail, name="job_detail"),
    path("jobs/<uuid:job_id>/status/", views.job_status, name="job_status"),
    path("jobs/<uuid:job_id>/cancel/", views.job_cancel, name="job_cancel"),
    path("jobs/<uuid:job_id>/output/", views.job_output, name="job_output"),
    path("jobs/<uuid:job_id>/preview.png", views.job_preview, name="job_preview"),
    path("jobs/<uuid:job_id>/original.png", views.job_original, name="job_original"),
    path("invoices/", views.invoices, name="invoices"),
    path("invoices/<uuid:invoice_id>/", views.invoice_detail, name="invoice_detail"),
    path("invoices/<uuid:invoice_id>/invoice.pdf", views.invoice_pdf, name="invoice_pdf"),
    path("team/", views.team, name="team"),
    path("team/<int:membership_id>/role/", views.team_role, name="team_role"),
    path("team/<int:membership_id>/remove/", views.team_remove, name="team_remove"),
    path("account/", views.account, name="account"),
]
