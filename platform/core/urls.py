from django.urls import path

from core import api

urlpatterns = [
    path("tokens/", api.ApiTokenListView.as_view(), name="token-list"),
    path("tokens/<uuid:token_id>/revoke/", api.ApiTokenRevokeView.as_view(), name="token-revoke"),
    path("audit-log/", api.AuditLogListView.as_view(), name="audit-log"),
]
