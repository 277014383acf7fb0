"""Django Channels: ProtocolTypeRouter + URLRouter, no channel layer.

``echo``: the AsyncWebsocketConsumer; ``sync``: the WebsocketConsumer.
"""

import os

from . import profiling  # noqa: F401

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from .consumers import EchoConsumer, SyncEchoConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter(
            [path("echo", EchoConsumer.as_asgi()), path("sync", SyncEchoConsumer.as_asgi())]
        ),
    }
)
