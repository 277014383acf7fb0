"""``WebSocketMiddleware``: WebSocket support for the whole site.

With it every request has ``request.is_websocket()`` and ``request.websocket``.
A WebSocket request reaches only views that accept it: decorated ones, views
with an ``accept_websocket = True`` attribute (the original mechanism), or every
view when ``WEBSOCKET_ACCEPT_ALL = True``; the others answer 400.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

from . import conf
from .request import (
    afinish,
    bind_view,
    finish,
    handle_exception,
    prepare,
    refuse_plain_http,
    refuse_websocket,
    release,
)

__all__ = ["WebSocketMiddleware"]


class WebSocketMiddleware:
    """Give every request ``is_websocket()`` and ``websocket``; route WebSockets to views.

    Add ``"django_websocket.middleware.WebSocketMiddleware"`` to ``MIDDLEWARE``.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        # Under ASGI the chain is async: a sync middleware would pin a thread for
        # as long as each WebSocket lives.
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        try:
            refusal = prepare(request)
            if refusal is not None:
                return refusal
            return finish(request, self.get_response(request))
        finally:
            release(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        """The async twin of ``__call__``, for an ASGI middleware chain."""
        try:
            refusal = prepare(request)
            if refusal is not None:
                return refusal
            return await afinish(request, await self.get_response(request))
        finally:
            release(request)

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
        return bind_view(request, iscoroutinefunction(view_func))

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """Close a WebSocket whose undecorated view raised (1011), as the decorator does."""
        return handle_exception(request, exception)
