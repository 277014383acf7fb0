"""Exceptions raised by django-websocket.

Every exception has one root, so ``except WebSocketError`` catches them all::

    WebSocketError
    ├── MalformedWebSocket        the upgrade request breaks RFC 6455 (answered with 400/426)
    ├── ForbiddenOrigin           the Origin header is not allowed (answered with 403)
    ├── ConnectionClosed          the connection is closed; no message can be sent
    ├── UnsupportedServer         the server cannot hand its connection over to a WebSocket
    ├── BrokerUnavailable         the groups' broker (Redis) cannot be reached; nothing was sent
    ├── WebSocketRefused          (tests) the application answered the handshake with HTTP
    └── InvalidState (RuntimeError)
                                  the API was used at the wrong moment, e.g. changing
                                  subprotocols after the handshake

``MalformedWebSocket`` keeps the original library's name (it subclassed ``ValueError``
there, and still does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django.http import HttpResponse

__all__ = [
    "BrokerUnavailable",
    "ConnectionClosed",
    "ForbiddenOrigin",
    "InvalidState",
    "MalformedWebSocket",
    "UnsupportedServer",
    "WebSocketError",
    "WebSocketRefused",
]


class WebSocketError(Exception):
    """Root of every exception raised by django-websocket."""


class MalformedWebSocket(WebSocketError, ValueError):
    """The client asked for a WebSocket but its upgrade request is not valid.

    Attributes:
        status: the HTTP status the request is answered with (400, or 426 for a
            protocol version other than 13).
        reason: a short explanation, sent as the response body.
    """

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class ForbiddenOrigin(WebSocketError):
    """The request's Origin header is not allowed to open a WebSocket (HTTP 403)."""

    def __init__(self, origin: str | None, *, with_cookies: bool = False) -> None:
        if origin is not None:
            message = f"Origin {origin!r} is not allowed to open a WebSocket here"
        elif with_cookies:
            message = "a WebSocket handshake with cookies must send an Origin header"
        else:
            message = "no Origin header is not allowed to open a WebSocket here"
        super().__init__(message)
        self.origin = origin


class ConnectionClosed(WebSocketError):
    """The WebSocket connection is closed, so the operation cannot be done.

    Raised by ``send()`` once the connection is closed. Receiving methods do not
    raise it: ``wait()`` and ``read()`` return ``None`` and iteration stops.

    Attributes:
        code: the close code (1000 normal, 1001 going away, 1006 connection lost...).
        reason: the close reason, possibly empty.
    """

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(
            f"WebSocket connection is closed (code {code}{', ' + reason if reason else ''})"
        )
        self.code = code
        self.reason = reason


class UnsupportedServer(WebSocketError):
    """The server running Django cannot hand over a client connection for a WebSocket."""


class BrokerUnavailable(WebSocketError):
    """The broker of groups (Redis) cannot be reached, so the message was not sent.

    Raised by ``broadcast()`` and ``group_size()`` within ``WEBSOCKET_BROKER_TIMEOUT``
    while Redis is down; the broker keeps reconnecting in the background.
    """


class InvalidState(WebSocketError, RuntimeError):
    """The WebSocket API was called at a moment where it cannot work."""


class WebSocketRefused(WebSocketError):
    """The application refused a test client's WebSocket with an HTTP response.

    Raised by :mod:`django_websocket.test`. A view that closes before accepting
    refuses with 403, as ASGI servers answer it.

    Attributes:
        response: the refusal, an ``HttpResponse`` (``status_code``, headers, ``content``).
        status_code: the response's status, for short assertions.
    """

    def __init__(self, response: HttpResponse) -> None:
        super().__init__(f"WebSocket refused with HTTP {response.status_code}")
        self.response = response
        self.status_code = response.status_code
