"""WebSocket endpoints written as plain Django views.

Decorate a view with :func:`accept_websocket` or :func:`require_websocket` and
talk to the browser through ``request.websocket``::

    from django_websocket import require_websocket

    @require_websocket
    def echo_once(request):
        message = request.websocket.wait()
        request.websocket.send(message)

Only the names in ``__all__`` (and the documented modules ``middleware``,
``exceptions``) are public API.
"""

from .decorators import accept_websocket, require_websocket
from .exceptions import (
    ConnectionClosed,
    ForbiddenOrigin,
    InvalidState,
    MalformedWebSocket,
    UnsupportedServer,
    WebSocketError,
)
from .websocket import Message, WebSocket

__all__ = [
    "ConnectionClosed",
    "ForbiddenOrigin",
    "InvalidState",
    "MalformedWebSocket",
    "Message",
    "UnsupportedServer",
    "WebSocket",
    "WebSocketError",
    "accept_websocket",
    "require_websocket",
]

__version__ = "1.0.0.dev0"
