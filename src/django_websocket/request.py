"""What the decorators and the middleware share: set up, finish, and fail a request.

:func:`prepare` attaches ``request.is_websocket()`` and ``request.websocket``
(once per request, whoever asks first), :func:`finish` turns what the view
returned into what the server sends, and :func:`handle_exception` decides what
an exception raised by a WebSocket view becomes. Running them twice for the
same request (decorator and middleware together) does the work once.
"""

from __future__ import annotations

import contextlib
import logging
from functools import partial
from typing import Any

from django.core import signals
from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpRequest, HttpResponse

from . import conf
from .exceptions import ConnectionClosed, ForbiddenOrigin, MalformedWebSocket, UnsupportedServer
from .handshake import SUPPORTED_VERSION, is_upgrade_request, offered_subprotocols, validate_upgrade
from .websocket import Transport, WebSocket
from .wsgi import find_socket, open_connection

__all__ = [
    "IsWebSocket",
    "TakenOverResponse",
    "finish",
    "handle_exception",
    "prepare",
    "refuse_plain_http",
    "refuse_websocket",
]

logger = logging.getLogger("django_websocket")
request_logger = logging.getLogger("django.request")

_HANDSHAKE_HEADERS = (
    "upgrade",
    "connection",
    "sec-websocket-version",
    "sec-websocket-key",
    "sec-websocket-protocol",
)


class IsWebSocket:
    """``request.is_websocket``: call it (``request.is_websocket()``) for a bool.

    It is a callable, as the original documented. Its truth value is the same as
    its result, so the common slip ``if request.is_websocket:`` also does the
    right thing instead of always being true.
    """

    __slots__ = ("_value",)

    def __init__(self, value: bool) -> None:
        self._value = value

    def __call__(self) -> bool:
        return self._value

    def __bool__(self) -> bool:
        return self._value

    def __repr__(self) -> str:
        return f"<is_websocket: {self._value}>"


class TakenOverResponse(HttpResponse):
    """The response of a request whose connection became a WebSocket.

    The server never sends it (the socket already carried the WebSocket);
    it exists so that access logs record status 101.
    """

    def __init__(self) -> None:
        super().__init__(status=101)


def _text_response(status: int, text: str, **headers: str) -> HttpResponse:
    response = HttpResponse(text + "\n", status=status, content_type="text/plain; charset=utf-8")
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def refuse_plain_http() -> HttpResponse:
    """The 400 answer of a ``require_websocket`` view to a plain HTTP request."""
    return _text_response(
        400, "This URL only takes WebSocket connections: open it with a WebSocket client."
    )


def refuse_websocket() -> HttpResponse:
    """The 400 answer of a view that does not accept WebSockets to an upgrade request."""
    return _text_response(400, "This URL does not accept WebSocket connections.")


def _malformed_response(exc: MalformedWebSocket) -> HttpResponse:
    # RFC 6455 section 4.4: a 426 names the version the server speaks.
    if exc.status == 426:
        return _text_response(426, exc.reason, Sec_WebSocket_Version=SUPPORTED_VERSION)
    return _text_response(exc.status, exc.reason)


def _headers(request: HttpRequest) -> dict[str, str]:
    return {
        name: value
        for name in _HANDSHAKE_HEADERS
        if (value := request.headers.get(name)) is not None
    }


def _own_origin(request: HttpRequest) -> str:
    # get_host() checks ALLOWED_HOSTS (a bad Host becomes a 400, as Django does);
    # scheme follows SECURE_PROXY_SSL_HEADER only where the settings trust it.
    return f"{request.scheme}://{request.get_host()}"


def _opener(request: HttpRequest) -> partial[Transport]:
    if not isinstance(request, WSGIRequest):
        raise UnsupportedServer("this request did not come through a WSGI server")
    environ = request.environ
    find_socket(environ)
    return partial(_open_wsgi, environ)


def _open_wsgi(environ: dict[str, Any], subprotocol: str | None) -> Transport:
    return open_connection(environ, subprotocol, conf.engine_limits())


def prepare(request: HttpRequest) -> HttpResponse | None:
    """Attach ``is_websocket`` and ``websocket`` to ``request``.

    Returns:
        ``None`` when the view may run, or the response that refuses the
        request: 400 for a malformed upgrade, 426 for another protocol version,
        403 for a forbidden Origin, 501 when the server cannot serve WebSockets.
    """
    if hasattr(request, "is_websocket"):
        return None
    request.is_websocket = IsWebSocket(False)  # type: ignore[attr-defined]
    request.websocket = None  # type: ignore[attr-defined]
    headers = _headers(request)
    if not is_upgrade_request(headers):
        return None
    try:
        validate_upgrade(request.method or "", headers)
        conf.origin_policy().check(request.headers.get("origin"), _own_origin(request))
        opener = _opener(request)
    except MalformedWebSocket as exc:
        return _malformed_response(exc)
    except ForbiddenOrigin as exc:
        logger.warning("Refused WebSocket to %s: %s", request.path, exc)
        return _text_response(403, str(exc))
    except UnsupportedServer as exc:
        logger.error("Cannot serve a WebSocket at %s: %s", request.path, exc)
        return _text_response(501, str(exc))
    request.is_websocket = IsWebSocket(True)  # type: ignore[attr-defined]
    request.websocket = WebSocket(  # type: ignore[attr-defined]
        opener, offered_subprotocols(headers), conf.get("WEBSOCKET_MAX_QUEUE")
    )
    return None


def finish(request: HttpRequest, response: HttpResponse | None) -> HttpResponse:
    """Turn what a WebSocket view returned into what the server sends.

    A view that used its WebSocket gets it closed with 1000 (if still open) and
    nothing is written after it. A view that closed it before accepting sends a
    403. A view that returned a response without touching its WebSocket refuses
    the connection with that response. A view that returned ``None`` without
    touching it accepts and closes at once.
    """
    websocket: WebSocket | None = getattr(request, "websocket", None)
    if websocket is None:
        return response  # type: ignore[return-value]
    if websocket.handshake_error is not None:
        return _malformed_response(websocket.handshake_error)
    if websocket.refused and not websocket.accepted:
        code, reason = websocket.close_code, websocket.close_reason
        if code == 1006:  # the client vanished during the handshake
            return TakenOverResponse()
        return _text_response(
            403, f"WebSocket refused by the view (close code {code}). {reason}".strip()
        )
    if not websocket.accepted:
        if response is not None:
            return response
        websocket.accept()
        if not websocket.accepted:  # the client vanished during the handshake
            return TakenOverResponse()
    websocket.close(1000)
    return response if isinstance(response, TakenOverResponse) else TakenOverResponse()


def handle_exception(request: HttpRequest, exc: Exception) -> HttpResponse | None:
    """Decide what an exception raised by a WebSocket view becomes.

    :class:`ConnectionClosed` is the client having gone: a normal end. Anything
    else raised before the handshake is Django's business (``None``: let it
    propagate, as for any view); after it, it is logged and signalled as Django
    does for HTTP, and the connection closes with 1011.
    """
    websocket: WebSocket | None = getattr(request, "websocket", None)
    if websocket is None:
        return None
    if isinstance(exc, ConnectionClosed) and websocket.closed:
        # The client went away (even during the handshake): a normal end.
        logger.debug("WebSocket view at %s ended: %s", request.path, exc)
    elif not websocket.accepted:
        return None
    else:
        signals.got_request_exception.send(sender=None, request=request)
        request_logger.error(
            "Internal Server Error: %s (WebSocket closed with 1011)",
            request.path,
            exc_info=exc,
            extra={"status_code": 500, "request": request},
        )
        with contextlib.suppress(OSError):
            websocket.close(1011, "internal error")
    return finish(request, None)
