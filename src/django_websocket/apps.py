"""The Django app: registers the system checks and provides ``runserver``."""

from __future__ import annotations

from django.apps import AppConfig


class DjangoWebSocketConfig(AppConfig):
    """App config of django-websocket; add ``"django_websocket"`` to ``INSTALLED_APPS``."""

    name = "django_websocket"
    verbose_name = "WebSocket"

    def ready(self) -> None:
        """Register the system checks, close WebSockets when their user logs out, and
        close them all (1001) when a WSGI server stops this process."""
        from django.contrib.auth.signals import user_logged_out

        from . import checks  # noqa: F401  (registers on import)
        from .groups import close_on_logout
        from .wsgi import close_on_shutdown_signals

        user_logged_out.connect(close_on_logout, dispatch_uid="django_websocket.close_on_logout")
        close_on_shutdown_signals()
