"""WebSocket endpoints written as plain Django views.

Decorate a view with :func:`accept_websocket` or :func:`require_websocket` and
talk to the browser through ``request.websocket``::

    from django_websocket import require_websocket

    @require_websocket
    def echo_once(request):
        message = request.websocket.wait()
        request.websocket.send(message)

An ``async def`` view gets :class:`AsyncWebSocket`, the same API awaited.
Under ASGI servers, serve :func:`django_websocket.asgi.get_asgi_application`.
Connections join groups (``request.websocket.join("room")``) and anything in the
project reaches them with :func:`broadcast`, across processes through Redis.

Only the names in ``__all__`` (and the documented modules ``middleware``,
``exceptions``, ``asgi``) are public API.
"""

from .decorators import accept_websocket, require_websocket
from .exceptions import (
    BrokerUnavailable,
    ConnectionClosed,
    ForbiddenOrigin,
    InvalidState,
    MalformedWebSocket,
    UnsupportedServer,
    WebSocketError,
)
from .groups import (
    abroadcast,
    abroadcast_json,
    abroadcast_to_user,
    agroup_size,
    broadcast,
    broadcast_json,
    broadcast_to_user,
    group_size,
)
from .websocket import AsyncWebSocket, Message, WebSocket

__all__ = [
    "AsyncWebSocket",
    "BrokerUnavailable",
    "ConnectionClosed",
    "ForbiddenOrigin",
    "InvalidState",
    "MalformedWebSocket",
    "Message",
    "UnsupportedServer",
    "WebSocket",
    "WebSocketError",
    "abroadcast",
    "abroadcast_json",
    "abroadcast_to_user",
    "accept_websocket",
    "agroup_size",
    "broadcast",
    "broadcast_json",
    "broadcast_to_user",
    "group_size",
    "require_websocket",
]

__version__ = "1.0.0.dev0"
