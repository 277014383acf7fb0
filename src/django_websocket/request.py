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

from asgiref.sync import async_to_sync, sync_to_async
from django.core import signals
from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpRequest, HttpResponse

from . import conf
from .asgi import Slots
from .exceptions import ConnectionClosed, ForbiddenOrigin, MalformedWebSocket, UnsupportedServer
from .handshake import (
    SUPPORTED_VERSION,
    is_upgrade_request,
    validate_handshake_values,
    validate_upgrade,
)
from .websocket import AsyncWebSocket, Endpoint, WebSocket
from .wsgi import WSGIEndpoint

__all__ = [
    "IsWebSocket",
    "TakenOverResponse",
    "afinish",
    "ahandle_exception",
    "bind_view",
    "finish",
    "handle_exception",
    "prepare",
    "refuse_plain_http",
    "refuse_websocket",
    "release",
]

logger = logging.getLogger("django_websocket")
request_logger = logging.getLogger("django.request")

#: The WebSocket requests this process serves (``WEBSOCKET_MAX_CONNECTIONS``).
open_connections = Slots()

_HANDSHAKE_HEADERS = (
    "upgrade",
    "connection",
    "sec-websocket-version",
    "sec-websocket-key",
)
# Read from META, not request.headers: that builds a dict of every header, which
# a WebSocket's request would then keep for the connection's lifetime.
_META_KEYS = tuple((name, "HTTP_" + name.upper().replace("-", "_")) for name in _HANDSHAKE_HEADERS)


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


def _busy_response() -> HttpResponse:
    # Retry-After: a client that reconnects at once would find the process as busy.
    return _text_response(
        503, "Too many open WebSocket connections; try again later.", Retry_After="5"
    )


def _malformed_response(exc: MalformedWebSocket) -> HttpResponse:
    # RFC 6455 section 4.4: a 426 names the version the server speaks.
    if exc.status == 426:
        return _text_response(426, exc.reason, Sec_WebSocket_Version=SUPPORTED_VERSION)
    if exc.status == 503:
        return _text_response(503, exc.reason, Retry_After="5")
    return _text_response(exc.status, exc.reason)


def _headers(request: HttpRequest) -> dict[str, str]:
    meta = request.META
    return {name: value for name, key in _META_KEYS if (value := meta.get(key)) is not None}


def _own_origin(request: HttpRequest) -> str:
    # get_host() checks ALLOWED_HOSTS (a bad Host becomes a 400, as Django does);
    # scheme follows SECURE_PROXY_SSL_HEADER only where the settings trust it.
    return f"{request.scheme}://{request.get_host()}"


def _endpoint(request: HttpRequest) -> Endpoint:
    # A WSGI server lends its socket; an ASGI request without our application's
    # transport came through another application.
    if isinstance(request, WSGIRequest):
        return WSGIEndpoint(request.environ)
    raise UnsupportedServer(
        "this ASGI application cannot take WebSockets; serve the project with "
        "django_websocket.asgi.get_asgi_application()"
    )


def prepare(request: HttpRequest) -> HttpResponse | None:
    """Attach ``is_websocket`` and ``websocket`` to ``request``.

    Returns:
        ``None`` when the view may run, or the response that refuses the
        request: 400 for a malformed upgrade, 426 for another protocol version,
        403 for a forbidden Origin, 501 when the server cannot serve WebSockets,
        503 when the process serves ``WEBSOCKET_MAX_CONNECTIONS`` already (the
        slot taken then is given back by :func:`release`). Under ASGI the
        request is a WebSocket by its scope, and the server has checked the
        handshake already.
    """
    if hasattr(request, "is_websocket"):
        return None
    request.is_websocket = IsWebSocket(False)  # type: ignore[attr-defined]
    request.websocket = None  # type: ignore[attr-defined]
    asgi_endpoint: Endpoint | None = getattr(request, "websocket_transport", None)
    headers = _headers(request)
    if asgi_endpoint is None and not is_upgrade_request(headers):
        return None
    try:
        if asgi_endpoint is None:
            validate_upgrade(request.method or "", headers)
        else:
            validate_handshake_values(headers)
        # The Origin check is ours on every server: none of them does it.
        conf.origin_policy().check(
            request.META.get("HTTP_ORIGIN"),
            _own_origin(request),
            with_cookies=bool(request.META.get("HTTP_COOKIE", "").strip()),
        )
        endpoint = asgi_endpoint or _endpoint(request)
    except MalformedWebSocket as exc:
        return _malformed_response(exc)
    except ForbiddenOrigin as exc:
        logger.warning("Refused WebSocket to %s: %s", request.path, exc)
        return _text_response(403, str(exc))
    except UnsupportedServer as exc:
        logger.error("Cannot serve a WebSocket at %s: %s", request.path, exc)
        return _text_response(501, str(exc))
    limit = conf.get("WEBSOCKET_MAX_CONNECTIONS")
    if not open_connections.claim(limit):
        logger.warning(
            "Refused WebSocket to %s: this process serves %s WebSockets already",
            request.path,
            limit,
        )
        return _busy_response()
    request._websocket_slot = True  # type: ignore[attr-defined]
    request.is_websocket = IsWebSocket(True)  # type: ignore[attr-defined]
    websocket = WebSocket(endpoint, endpoint.offered_subprotocols, conf.get("WEBSOCKET_MAX_QUEUE"))
    websocket._request = request
    request.websocket = websocket  # type: ignore[attr-defined]
    return None


def bind_view(request: HttpRequest, is_async: bool) -> HttpResponse | None:
    """Give ``request.websocket`` the API of the view about to run.

    An async view gets :class:`AsyncWebSocket`, a sync view keeps
    :class:`WebSocket` and holds one of the process's sync-view threads.

    Returns:
        ``None`` when the view may run, or the 503 that refuses the connection
        when every thread for sync views is taken (``WEBSOCKET_MAX_SYNC_CONNECTIONS``).
    """
    websocket: WebSocket | AsyncWebSocket | None = getattr(request, "websocket", None)
    if websocket is None or websocket.accepted:
        return None
    if is_async:
        if isinstance(websocket, WebSocket):
            request.websocket = websocket.to_async()  # type: ignore[attr-defined]
        return None
    if not websocket._endpoint.claim_sync_view():
        logger.warning(
            "Refused WebSocket to %s: all %s threads for sync WebSocket views are busy",
            request.path,
            conf.get("WEBSOCKET_MAX_SYNC_CONNECTIONS"),
        )
        return _busy_response()
    return None


def release(request: HttpRequest) -> None:
    """Count the WebSocket of ``request`` as over (once, however often it is called).

    The decorators and the middleware call it when their view has returned or
    raised, which is when its connection ends.
    """
    if request.__dict__.pop("_websocket_slot", False):
        open_connections.release()


def _settled(
    websocket: WebSocket | AsyncWebSocket, response: HttpResponse | None
) -> HttpResponse | None:
    # What the end of a view becomes when no I/O is needed: a refusal, or None
    # when the connection still has to be accepted and/or closed.
    if websocket.handshake_error is not None:
        return _malformed_response(websocket.handshake_error)
    if websocket.refused and not websocket.accepted:
        code, reason = websocket.close_code, websocket.close_reason
        if code == 1006:  # the client vanished during the handshake
            return TakenOverResponse()
        return _text_response(
            403, f"WebSocket refused by the view (close code {code}). {reason}".strip()
        )
    if not websocket.accepted and response is not None:
        return response
    return None


def _ended(response: HttpResponse | None) -> HttpResponse:
    return response if isinstance(response, TakenOverResponse) else TakenOverResponse()


def finish(request: HttpRequest, response: HttpResponse | None) -> HttpResponse:
    """Turn what a WebSocket view returned into what the server sends.

    A view that used its WebSocket gets it closed with 1000 (if still open) and
    nothing is written after it. A view that closed it before accepting sends a
    403. A view that returned a response without touching its WebSocket refuses
    the connection with that response. A view that returned ``None`` without
    touching it accepts and closes at once.
    """
    websocket: WebSocket | AsyncWebSocket | None = getattr(request, "websocket", None)
    if websocket is None:
        return response  # type: ignore[return-value]
    if isinstance(websocket, AsyncWebSocket):
        return async_to_sync(afinish)(request, response)
    settled = _settled(websocket, response)
    if settled is not None:
        return settled
    websocket.accept()
    if not websocket.accepted:
        # The engine refused the handshake (its 4xx), or the client vanished.
        return _settled(websocket, None) or TakenOverResponse()
    websocket.close(1000)
    return _ended(response)


async def afinish(request: HttpRequest, response: HttpResponse | None) -> HttpResponse:
    """:func:`finish` for an async view (or an async middleware chain)."""
    websocket: WebSocket | AsyncWebSocket | None = getattr(request, "websocket", None)
    if websocket is None:
        return response  # type: ignore[return-value]
    if isinstance(websocket, WebSocket):
        return await sync_to_async(finish)(request, response)
    settled = _settled(websocket, response)
    if settled is not None:
        return settled
    await websocket.accept()
    if not websocket.accepted:
        return _settled(websocket, None) or TakenOverResponse()
    await websocket.close(1000)
    return _ended(response)


def _report(
    request: HttpRequest, websocket: WebSocket | AsyncWebSocket, exc: Exception
) -> bool | None:
    # None: not ours, let it propagate; True: close with 1011; False: a normal end.
    if isinstance(exc, ConnectionClosed) and websocket.closed:
        # The client went away (even during the handshake): a normal end.
        logger.debug("WebSocket view at %s ended: %s", request.path, exc)
        return False
    if not websocket.accepted:
        return None
    try:
        raise exc
    except Exception:
        # Receivers read the exception from sys.exc_info(), as Django sends the
        # signal from its except block (the test client re-raises it from there).
        signals.got_request_exception.send(sender=None, request=request)
    request_logger.error(
        "Internal Server Error: %s (WebSocket closed with 1011)",
        request.path,
        exc_info=exc,
        extra={"status_code": 500, "request": request},
    )
    return True


def handle_exception(request: HttpRequest, exc: Exception) -> HttpResponse | None:
    """Decide what an exception raised by a WebSocket view becomes.

    :class:`ConnectionClosed` is the client having gone: a normal end. Anything
    else raised before the handshake is Django's business (``None``: let it
    propagate, as for any view); after it, it is logged and signalled as Django
    does for HTTP, and the connection closes with 1011.
    """
    websocket: WebSocket | AsyncWebSocket | None = getattr(request, "websocket", None)
    if websocket is None:
        return None
    if isinstance(websocket, AsyncWebSocket):
        return async_to_sync(ahandle_exception)(request, exc)
    verdict = _report(request, websocket, exc)
    if verdict is None:
        return None
    if verdict:
        with contextlib.suppress(OSError):
            websocket.close(1011, "internal error")
    return finish(request, None)


async def ahandle_exception(request: HttpRequest, exc: Exception) -> HttpResponse | None:
    """:func:`handle_exception` for an async view."""
    websocket: WebSocket | AsyncWebSocket | None = getattr(request, "websocket", None)
    if websocket is None:
        return None
    if isinstance(websocket, WebSocket):
        return await sync_to_async(handle_exception)(request, exc)
    # Logging and got_request_exception receivers may do I/O (mail_admins): not on the loop.
    verdict = await sync_to_async(_report, thread_sensitive=False)(request, websocket, exc)
    if verdict is None:
        return None
    if verdict:
        with contextlib.suppress(OSError):
            await websocket.close(1011, "internal error")
    return await afinish(request, None)
