"""Django Channels for the fan-out bench: ProtocolTypeRouter + URLRouter, a channel layer
from the settings (settings_fanout_channels or settings_fanout_pubsub)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings_fanout_channels")

from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from .fanout_consumers import FanoutConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter([path("fanout", FanoutConsumer.as_asgi())]),
    }
)
