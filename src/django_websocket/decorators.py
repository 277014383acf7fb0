"""``accept_websocket`` and ``require_websocket``: WebSocket endpoints as plain views.

Both work alone (no middleware needed), with ``WebSocketMiddleware`` (one
handshake, not two), on function views with URL arguments and, through
``method_decorator``, on class-based views. A sync view gets the blocking
:class:`~django_websocket.WebSocket`, an ``async def`` view the awaitable
:class:`~django_websocket.AsyncWebSocket`, on any server. Used bare or with arguments::

    @accept_websocket
    def view(request): ...

    @require_websocket(protocols=["chat.v2"])
    def chat(request): ...
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import wraps
from typing import Any, TypeVar, overload

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse

from .request import (
    afinish,
    ahandle_exception,
    bind_view,
    finish,
    handle_exception,
    prepare,
    refuse_plain_http,
    release,
)

__all__ = ["accept_websocket", "require_websocket"]

_View = TypeVar("_View", bound=Callable[..., Any])


def _is_async(view: Callable[..., Any]) -> bool:
    if iscoroutinefunction(view):
        return True
    # method_decorator(..., name="dispatch") hands us a partial of the bound
    # dispatch, which is sync even when the class-based view's handlers are async.
    owner = getattr(getattr(view, "func", None), "__self__", None)
    return bool(getattr(owner, "view_is_async", False))


def _decorate(view: _View, *, require: bool, protocols: Sequence[str] | None) -> _View:
    # An inner require_websocket stays in force under an outer accept_websocket.
    require = require or bool(getattr(view, "require_websocket", False))
    supported = (
        tuple(protocols) if protocols is not None else getattr(view, "websocket_protocols", ())
    )
    is_async = _is_async(view)

    def _start(request: HttpRequest) -> HttpResponse | None:
        # The refusal to send instead of running the view, if any.
        refusal = prepare(request)
        if refusal is None and request.websocket is not None:  # type: ignore[attr-defined]
            request.websocket._set_protocols(supported)  # type: ignore[attr-defined]
            refusal = bind_view(request, is_async)
        return refusal

    if is_async:

        @wraps(view)
        async def _async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            try:
                return await _serve_async(request, *args, **kwargs)
            finally:
                release(request)

        async def _serve_async(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            refusal = _start(request)
            if refusal is not None:
                return refusal
            if request.websocket is None:  # type: ignore[attr-defined]
                return refuse_plain_http() if require else await view(request, *args, **kwargs)
            try:
                response = await view(request, *args, **kwargs)
            except Exception as exc:
                handled = await ahandle_exception(request, exc)
                if handled is None:
                    raise
                return handled
            return await afinish(request, response)

        wrapper: Callable[..., Any] = _async_wrapper
    else:

        @wraps(view)
        def _wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            try:
                return _serve(request, *args, **kwargs)
            finally:
                release(request)

        def _serve(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            refusal = _start(request)
            if refusal is not None:
                return refusal
            if request.websocket is None:  # type: ignore[attr-defined]
                return refuse_plain_http() if require else view(request, *args, **kwargs)
            try:
                response = view(request, *args, **kwargs)
            except Exception as exc:
                handled = handle_exception(request, exc)
                if handled is None:
                    raise
                return handled
            return finish(request, response)

        wrapper = _wrapper

    # Markers read by WebSocketMiddleware; the names are the original library's.
    wrapper.accept_websocket = True  # type: ignore[attr-defined]
    wrapper.require_websocket = require  # type: ignore[attr-defined]
    wrapper.websocket_protocols = supported  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


@overload
def accept_websocket(view: _View, /) -> _View: ...
@overload
def accept_websocket(*, protocols: Sequence[str] | None = None) -> Callable[[_View], _View]: ...
def accept_websocket(
    view: _View | None = None, /, *, protocols: Sequence[str] | None = None
) -> _View | Callable[[_View], _View]:
    """Let a view take WebSocket requests as well as plain HTTP requests.

    In the view, ``request.is_websocket()`` tells which kind arrived and
    ``request.websocket`` talks to the client (``None`` for plain HTTP).

    Args:
        view: the view function (when used without parentheses).
        protocols: the subprotocols the view speaks; the first one the client
            offers is chosen. Without it no subprotocol is confirmed.
    """
    if view is None:
        return lambda inner: _decorate(inner, require=False, protocols=protocols)
    return _decorate(view, require=False, protocols=protocols)


@overload
def require_websocket(view: _View, /) -> _View: ...
@overload
def require_websocket(*, protocols: Sequence[str] | None = None) -> Callable[[_View], _View]: ...
def require_websocket(
    view: _View | None = None, /, *, protocols: Sequence[str] | None = None
) -> _View | Callable[[_View], _View]:
    """Let a view take WebSocket requests only; plain HTTP gets 400 Bad Request.

    Args:
        view: the view function (when used without parentheses).
        protocols: the subprotocols the view speaks, as for :func:`accept_websocket`.
    """
    if view is None:
        return lambda inner: _decorate(inner, require=True, protocols=protocols)
    return _decorate(view, require=True, protocols=protocols)
