from django.apps import AppConfig


class PortalConfig(AppConfig):
    """The customer portal: server-rendered pages over the other apps' selectors and services."""

    name = "portal"
    verbose_name = "Customer portal"
    default_auto_field = "django.db.models.BigAutoField"
