"""``WebSocketMiddleware``: WebSocket support for the whole site.

With it every request has ``request.is_websocket()`` and ``request.websocket``.
A WebSocket request reaches only views that accept it: decorated ones, views
with an ``accept_websocket = True`` attribute (the original mechanism), or every
view when ``WEBSOCKET_ACCEPT_ALL = True``; the others answer 400.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse

from . import conf
from .request import finish, handle_exception, prepare, refuse_plain_http, refuse_websocket

__all__ = ["WebSocketMiddleware"]


class WebSocketMiddleware:
    """Give every request ``is_websocket()`` and ``websocket``; route WebSockets to views.

    Add ``"django_websocket.middleware.WebSocketMiddleware"`` to ``MIDDLEWARE``.
    """

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        refusal = prepare(request)
        if refusal is not None:
            return refusal
        return finish(request, self.get_response(request))

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        """Refuse WebSockets for views that do not take them, and plain HTTP for views
        that take nothing else."""
        websocket = request.websocket  # type: ignore[attr-defined]
        if websocket is None:
            return refuse_plain_http() if getattr(view_func, "require_websocket", False) else None
        if not (getattr(view_func, "accept_websocket", False) or conf.get("WEBSOCKET_ACCEPT_ALL")):
            return refuse_websocket()
        websocket._set_protocols(getattr(view_func, "websocket_protocols", ()))
        return None

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """Close a WebSocket whose undecorated view raised (1011), as the decorator does."""
        return handle_exception(request, exception)
