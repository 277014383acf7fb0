"""Django Channels under AuthMiddlewareStack (cookies, sessions, user), for the handshake bench.

Run with ``project.settings_full`` (the same session and auth apps as our
``dw-async-mw`` configuration): the AsyncWebsocketConsumer at ``echo``.
"""

import os

from . import profiling  # noqa: F401

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings_full")

from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from .consumers import EchoConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AuthMiddlewareStack(URLRouter([path("echo", EchoConsumer.as_asgi())])),
    }
)
