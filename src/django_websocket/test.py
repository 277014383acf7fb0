"""Test WebSocket views in process, the way ``django.test.Client`` tests HTTP views.

::

    from django.test import TestCase
    from django_websocket.test import WebSocketClient

    class ChatTests(TestCase):
        client_class = WebSocketClient

        def test_echo(self):
            self.client.force_login(self.user)
            with self.client.websocket("/ws/echo/") as ws:
                ws.send("hello")
                self.assertEqual(ws.receive(), "hello")

:class:`WebSocketClient` is a ``django.test.Client``: cookies, ``force_login``,
``headers=`` and every HTTP method still work. Its WebSockets drive the
project's ASGI application in process, no server and no network, with a
real Origin, cookies and the whole middleware chain.

Inside ``django.test.TestCase`` the view sees the test's own rows: the view
runs in a thread of its own, as on a server, but on the test's database
connection, which holds the test's transaction (as ``LiveServerTestCase``
shares an in-memory SQLite database). Let a view's queries finish before the
test queries again, as you would with any shared connection: ``receive()`` the
view's answer first.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import queue
import sys
import threading
import types
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from asgiref.sync import sync_to_async
from django.core import signals
from django.db import close_old_connections, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.http import HttpResponse
from django.test import Client

from .asgi import WebSocketASGIHandler
from .delivery import encode_json
from .exceptions import ConnectionClosed, WebSocketRefused

__all__ = ["AsyncWebSocketSession", "WebSocketClient", "WebSocketRefused", "WebSocketSession"]

#: Seconds a test waits for the application by default before TimeoutError.
DEFAULT_TIMEOUT = 5.0

#: Passed as ``origin`` (the default): the Origin of the test server itself.
SAME_ORIGIN = "same-origin"

Message = str | bytes
_ExcInfo = tuple[type[BaseException], BaseException, types.TracebackType | None]


class WebSocketClient(Client):
    """A ``django.test.Client`` that also opens WebSockets to the project's views.

    Use :meth:`websocket` in sync tests and :meth:`awebsocket` in async ones.
    Like the HTTP client, an exception raised by the view is raised again in the
    test (``raise_request_exception=False`` turns that off: the client then
    only sees the 1011 close).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._websocket_handler: WebSocketASGIHandler | None = None

    def websocket(
        self,
        path: str,
        *,
        subprotocols: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
        origin: str | None = SAME_ORIGIN,
        secure: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> WebSocketSession:
        """Open a WebSocket to ``path``; use it as a context manager.

        Args:
            path: the URL path, with a query string if any.
            subprotocols: offered in ``Sec-WebSocket-Protocol``, in order.
            headers: more request headers (the client's own ``headers=`` apply too).
            origin: the ``Origin`` header: the test server's own by default, any
                other origin to test refusals, ``None`` for none.
            secure: ``wss://`` (the request is secure, like ``Client(secure=True)``).
            timeout: seconds to wait for the handshake and, by default, for each
                message.

        Raises:
            WebSocketRefused: on entering, when the application answers with HTTP
                (403 for a bad Origin, 400, a redirect to the login page...).
        """
        scope = self._websocket_scope(path, subprotocols, headers, origin, secure)
        return WebSocketSession(self._handler(), scope, self._exception_policy(), timeout)

    def awebsocket(
        self,
        path: str,
        *,
        subprotocols: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
        origin: str | None = SAME_ORIGIN,
        secure: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> AsyncWebSocketSession:
        """:meth:`websocket` for async tests: ``async with client.awebsocket(...) as ws``."""
        scope = self._websocket_scope(path, subprotocols, headers, origin, secure)
        return AsyncWebSocketSession(self._handler(), scope, self._exception_policy(), timeout)

    def _handler(self) -> WebSocketASGIHandler:
        # Loading the middleware once per client, as Client does for HTTP.
        if self._websocket_handler is None:
            self._websocket_handler = WebSocketASGIHandler()
        return self._websocket_handler

    def _exception_policy(self) -> bool:
        return bool(self.raise_request_exception)

    def _websocket_scope(
        self,
        path: str,
        subprotocols: Sequence[str],
        headers: Mapping[str, str] | None,
        origin: str | None,
        secure: bool,
    ) -> dict[str, Any]:
        parts = urlsplit(path)
        environ = self._base_environ()  # type: ignore[attr-defined]
        host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "testserver")
        secure = secure or environ.get("wsgi.url_scheme") == "https"
        request_headers: dict[str, str] = {
            "host": str(host),
            "connection": "Upgrade",
            "upgrade": "websocket",
            "sec-websocket-version": "13",
            "sec-websocket-key": base64.b64encode(os.urandom(16)).decode(),
        }
        for name, value in environ.items():
            if name.startswith("HTTP_") and name not in ("HTTP_HOST", "HTTP_COOKIE"):
                request_headers[name[5:].replace("_", "-").lower()] = str(value)
        if origin == SAME_ORIGIN:
            origin = f"{'https' if secure else 'http'}://{host}"
        if origin is not None:
            request_headers["origin"] = origin
        if self.cookies:
            request_headers["cookie"] = "; ".join(
                sorted(f"{morsel.key}={morsel.coded_value}" for morsel in self.cookies.values())
            )
        if subprotocols:
            request_headers["sec-websocket-protocol"] = ", ".join(subprotocols)
        for name, value in (headers or {}).items():
            request_headers[name.lower()] = value
        return {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": "wss" if secure else "ws",
            "path": unquote(parts.path or "/"),
            "raw_path": (parts.path or "/").encode(),
            "query_string": parts.query.encode(),
            "root_path": "",
            "headers": [
                (k.encode("latin-1"), v.encode("latin-1")) for k, v in request_headers.items()
            ],
            "client": ("127.0.0.1", 50000),
            "server": (str(host).partition(":")[0], 443 if secure else 80),
            "subprotocols": list(subprotocols),
            "extensions": {"websocket.http.response": {}},
        }


# ---- the application, on an event loop of its own -------------------------------------


class _Closed:
    # What the client learned of the close: the application's close frame or its end.
    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class _Connection:
    """One WebSocket to the application, which runs on a loop in its own thread.

    The application never runs on the test's thread or loop: a sync view blocks
    its thread for the whole connection, and an async test's loop must stay free.
    """

    def __init__(
        self,
        handler: WebSocketASGIHandler,
        scope: dict[str, Any],
        raise_exceptions: bool,
        timeout: float,
    ) -> None:
        self.handler = handler
        self.scope = scope
        self.raise_exceptions = raise_exceptions
        self.timeout = timeout
        self.subprotocol: str | None = None
        self.accept_headers: list[tuple[bytes, bytes]] = []
        self.closed: _Closed | None = None
        self._from_app: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._to_app: asyncio.Queue[dict[str, Any]] | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._shared: dict[str, BaseDatabaseWrapper] = {}
        self._exception: _ExcInfo | None = None
        self._exception_uid = f"django_websocket.test.{uuid.uuid4().hex}"
        self._stopped = False

    # -- start and stop (the test's thread) --

    def start(self, shared: dict[str, BaseDatabaseWrapper]) -> None:
        """Run the application and complete the handshake (or raise WebSocketRefused)."""
        self._shared = shared
        for connection in shared.values():
            connection.inc_thread_sharing()
        _keep_test_connections_open()
        signals.got_request_exception.connect(
            self._store_exception, dispatch_uid=self._exception_uid
        )
        self._thread = threading.Thread(target=self._run, name="djws-test-client", daemon=True)
        self._thread.start()
        self._ready.wait(self.timeout)
        self._put({"type": "websocket.connect"})
        try:
            self._handshake()
        except BaseException:
            self.stop()
            raise

    def _handshake(self) -> None:
        event = self._next_event(self.timeout, "the handshake")
        kind = event["type"]
        if kind == "websocket.accept":
            self.subprotocol = event.get("subprotocol")
            self.accept_headers = list(event.get("headers") or [])
            return
        self._raise_stored_exception()
        if kind == "websocket.http.response.start":
            response = HttpResponse(status=event["status"])
            for name, value in event.get("headers") or []:
                if name.lower() != b"set-cookie":
                    response.headers[name.decode("latin-1")] = value.decode("latin-1")
            body = []
            while True:
                part = self._next_event(self.timeout, "the refusal's body")
                body.append(part.get("body", b""))
                if not part.get("more_body"):
                    break
            response.content = b"".join(body)
            raise WebSocketRefused(response)
        # A close before the accept, or an application that ended: servers answer 403.
        raise WebSocketRefused(HttpResponse(status=403))

    def stop(self) -> None:
        """Wait (bounded) for the application to end, then release what start() took."""
        if self._stopped:
            return
        self._stopped = True
        try:
            if self._thread is not None:
                self._thread.join(self.timeout)
                if self._thread.is_alive():
                    raise TimeoutError(
                        f"the WebSocket view at {self.scope['path']} did not end within "
                        f"{self.timeout} s of the client's close"
                    )
        finally:
            signals.got_request_exception.disconnect(dispatch_uid=self._exception_uid)
            _release_test_connections()
            for connection in self._shared.values():
                connection.dec_thread_sharing()
            self._shared = {}

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._to_app = asyncio.Queue()
        self._ready.set()
        try:
            await self.handler.serve_websocket(
                self.scope, self._to_app.get, self._app_sends, shared_connections=self._shared
            )
        except Exception:
            self._exception = self._exception or sys.exc_info()  # type: ignore[assignment]
        finally:
            self._from_app.put({"type": "_ended"})

    async def _app_sends(self, event: Mapping[str, Any]) -> None:
        self._from_app.put(dict(event))

    def _store_exception(self, **kwargs: Any) -> None:
        info = sys.exc_info()
        if info[1] is not None and self._exception is None:
            self._exception = info

    # -- talking (the test's thread) --

    def _put(self, event: dict[str, Any]) -> None:
        assert self._loop is not None and self._to_app is not None
        with contextlib.suppress(RuntimeError):  # the loop is gone: the app ended
            self._loop.call_soon_threadsafe(self._to_app.put_nowait, event)

    def _next_event(self, timeout: float | None, waiting_for: str) -> dict[str, Any]:
        wait = self.timeout if timeout is None else timeout
        try:
            return self._from_app.get(timeout=wait)
        except queue.Empty:
            raise TimeoutError(
                f"nothing from the WebSocket view at {self.scope['path']} within {wait} s "
                f"({waiting_for})"
            ) from None

    def send(self, data: Message) -> None:
        self._check_open()
        if isinstance(data, str):
            self._put({"type": "websocket.receive", "text": data})
        elif isinstance(data, bytes | bytearray | memoryview):
            self._put({"type": "websocket.receive", "bytes": bytes(data)})
        else:
            raise TypeError(f"send() takes str or bytes, not {type(data).__name__}")

    def receive(self, timeout: float | None) -> Message:
        self._check_open()
        event = self._next_event(timeout, "a message")
        if event["type"] == "websocket.send":
            message: Message = event["bytes"] if event.get("text") is None else event["text"]
            return message
        self._closed_by_app(event)
        raise ConnectionClosed(self.closed.code, self.closed.reason)  # type: ignore[union-attr]

    def receive_nothing(self, timeout: float) -> bool:
        self._check_open()
        try:
            event = self._from_app.get(timeout=timeout)
        except queue.Empty:
            return True
        if event["type"] == "websocket.send":
            self._pushback(event)
            return False
        self._closed_by_app(event)
        return False

    def _pushback(self, event: dict[str, Any]) -> None:
        # SimpleQueue has no put-front: rebuild it with the event first.
        rest = []
        while True:
            try:
                rest.append(self._from_app.get_nowait())
            except queue.Empty:
                break
        for item in [event, *rest]:
            self._from_app.put(item)

    def _closed_by_app(self, event: dict[str, Any]) -> None:
        if event["type"] == "websocket.close":
            self.closed = _Closed(event.get("code", 1000), event.get("reason") or "")
            self._put({"type": "websocket.disconnect", "code": self.closed.code})
        else:  # the application ended without a close: the server drops the connection
            self.closed = _Closed(1006, "")
        self.stop()
        self._raise_stored_exception()

    def close(self, code: int, reason: str) -> None:
        if self.closed is not None:
            return
        self.closed = _Closed(code, reason)
        self._put({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.stop()
        self._raise_stored_exception()

    def _check_open(self) -> None:
        if self.closed is not None:
            raise ConnectionClosed(self.closed.code, self.closed.reason)

    def _raise_stored_exception(self) -> None:
        if self._exception is not None and self.raise_exceptions:
            _, exc, traceback = self._exception
            self._exception = None
            raise exc.with_traceback(traceback)


# ---- what tests hold ----------------------------------------------------------------------


class _SessionState:
    # What both session classes show of their connection.

    def __init__(
        self,
        handler: WebSocketASGIHandler,
        scope: dict[str, Any],
        raise_exceptions: bool,
        timeout: float,
    ) -> None:
        self._connection = _Connection(handler, scope, raise_exceptions, timeout)

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the view chose, or ``None``."""
        return self._connection.subprotocol

    @property
    def close_code(self) -> int | None:
        """``None`` while open, then the close code, whoever closed (1006: no close)."""
        closed = self._connection.closed
        return None if closed is None else closed.code

    @property
    def close_reason(self) -> str:
        """The close reason, ``""`` if none (or while open)."""
        closed = self._connection.closed
        return "" if closed is None else closed.reason


class WebSocketSession(_SessionState):
    """An open test WebSocket (from :meth:`WebSocketClient.websocket`).

    Attributes:
        subprotocol: the subprotocol the view chose, or ``None``.
        close_code: ``None`` while open, then the code of the close, whoever
            closed (1006 when the view ended without closing).
        close_reason: the close reason, ``""`` if none.
    """

    def __enter__(self) -> WebSocketSession:
        self._connection.start(_test_connections())
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:  # the test failed already: close, and let its own error through
            with contextlib.suppress(Exception):
                self.close()

    def send(self, data: Message) -> None:
        """Send a message to the view: ``str`` as text, ``bytes`` as binary."""
        self._connection.send(data)

    def send_json(self, value: Any) -> None:
        """Send ``value`` encoded as JSON text."""
        self._connection.send(encode_json(value))

    def receive(self, timeout: float | None = None) -> Message:
        """Return the view's next message (``str`` or ``bytes``).

        Raises:
            TimeoutError: nothing came within ``timeout`` seconds (by default the
                client's ``timeout``).
            ConnectionClosed: the view closed the connection; ``close_code`` says how.
                An exception the view raised is raised here instead.
        """
        return self._connection.receive(timeout)

    def receive_json(self, timeout: float | None = None) -> Any:
        """:meth:`receive` a message and decode it as JSON."""
        return json.loads(self._connection.receive(timeout))

    def receive_nothing(self, timeout: float = 0.1) -> bool:
        """Whether the view sends nothing for ``timeout`` seconds (a message stays queued)."""
        return self._connection.receive_nothing(timeout)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close from the client's side and wait for the view to end (bounded)."""
        self._connection.close(code, reason)

    def __iter__(self) -> Iterator[Message]:
        """Yield the view's messages until it closes the connection."""
        while True:
            try:
                yield self.receive()
            except ConnectionClosed:
                return


class AsyncWebSocketSession(_SessionState):
    """The async twin of :class:`WebSocketSession` (from :meth:`WebSocketClient.awebsocket`).

    The same attributes; the methods that wait are awaited.
    """

    async def __aenter__(self) -> AsyncWebSocketSession:
        # The test's connections live in the thread that runs its sync code.
        shared = await sync_to_async(_test_connections)()
        await asyncio.to_thread(self._connection.start, shared)
        return self

    async def __aexit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            await self.close()
        else:  # the test failed already: close, and let its own error through
            with contextlib.suppress(Exception):
                await self.close()

    async def send(self, data: Message) -> None:
        """Send a message to the view: ``str`` as text, ``bytes`` as binary."""
        self._connection.send(data)

    async def send_json(self, value: Any) -> None:
        """Send ``value`` encoded as JSON text."""
        self._connection.send(encode_json(value))

    async def receive(self, timeout: float | None = None) -> Message:
        """Return the view's next message; see :meth:`WebSocketSession.receive`."""
        return await asyncio.to_thread(self._connection.receive, timeout)

    async def receive_json(self, timeout: float | None = None) -> Any:
        """:meth:`receive` a message and decode it as JSON."""
        return json.loads(await self.receive(timeout))

    async def receive_nothing(self, timeout: float = 0.1) -> bool:
        """Whether the view sends nothing for ``timeout`` seconds (a message stays queued)."""
        return await asyncio.to_thread(self._connection.receive_nothing, timeout)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close from the client's side and wait for the view to end (bounded)."""
        await asyncio.to_thread(self._connection.close, code, reason)

    async def __aiter__(self) -> AsyncIterator[Message]:
        """Yield the view's messages until it closes the connection."""
        while True:
            try:
                yield await self.receive()
            except ConnectionClosed:
                return


# ---- the test's database connections -----------------------------------------------------


def _test_connections() -> dict[str, BaseDatabaseWrapper]:
    # The calling thread's connections: in a TestCase they hold its transaction.
    return {alias: connections[alias] for alias in connections}


_kept_open = 0
_kept_open_lock = threading.Lock()


def _keep_test_connections_open() -> None:
    # Django closes "old" connections when a request starts and ends; in a test
    # transaction that would close the test's own, so its test client unhooks
    # that receiver around each request. A WebSocket is one long request.
    global _kept_open
    with _kept_open_lock:
        _kept_open += 1
        if _kept_open == 1:
            signals.request_started.disconnect(close_old_connections)
            signals.request_finished.disconnect(close_old_connections)


def _release_test_connections() -> None:
    global _kept_open
    with _kept_open_lock:
        _kept_open -= 1
        if _kept_open == 0:
            signals.request_started.connect(close_old_connections)
            signals.request_finished.connect(close_old_connections)
