"""Our application: django_websocket's ASGI handler (settings from DJANGO_SETTINGS_MODULE)."""

import os

from . import profiling  # noqa: F401

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

from django_websocket.asgi import get_asgi_application

application = get_asgi_application()
