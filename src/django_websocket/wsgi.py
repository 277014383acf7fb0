"""The WSGI transport: take over the client's socket and speak WebSocket on it.

A WSGI server hands the application a parsed request and expects a response
back; a WebSocket needs the raw connection instead. Every server keeps that
connection somewhere else and must be kept from writing its own HTTP response
after the WebSocket is over. The table :data:`SERVERS` says, per server, where
the socket is and how the response is suppressed; each row has a live test.

After the closing handshake the socket is shut down in both directions before
control returns to the server, so whatever the server still tries to write
fails at once (EPIPE, which every supported server treats as a client that went
away) and not one byte of HTTP follows the close frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.servers.basehttp import ServerHandler, WSGIRequestHandler, WSGIServer

from . import conf
from .delivery import TOO_SLOW, Outbox, run_close_callbacks
from .exceptions import ConnectionClosed, UnsupportedServer
from .handshake import offered_subprotocols
from .protocol import (
    OPEN,
    EngineConnectionClosed,
    EngineLimits,
    WatchedConnection,
    connection_close_info,
    open_blocking_connection,
    perform_handshake,
)

__all__ = [
    "RUNSERVER_SOCKET_KEY",
    "SERVERS",
    "TAKEN_OVER_KEY",
    "WSGIAsyncConnection",
    "WSGIConnection",
    "WSGIEndpoint",
    "WSGIServerSupport",
    "WebSocketWSGIServer",
    "find_socket",
    "open_connection",
    "request_headers",
    "supported_servers",
]

logger = logging.getLogger("django_websocket")

#: environ key under which our runserver puts the client socket.
RUNSERVER_SOCKET_KEY = "django_websocket.socket"
#: environ key set once the socket belongs to a WebSocket; servers must not answer.
TAKEN_OVER_KEY = "django_websocket.taken_over"

#: Seconds a group-message writer thread waits for more before it ends.
_WRITER_LINGER = 2.0


@dataclass(frozen=True)
class WSGIServerSupport:
    """How one WSGI server lends its client socket.

    Attributes:
        name: the server, as users know it.
        socket_key: the environ key holding the client socket.
        finish: how the server learns that the response was already handled.
    """

    name: str
    socket_key: str
    finish: str


SERVERS: tuple[WSGIServerSupport, ...] = (
    WSGIServerSupport(
        name="Django runserver (django_websocket in INSTALLED_APPS, above staticfiles)",
        socket_key=RUNSERVER_SOCKET_KEY,
        finish=f"its request handler sees environ[{TAKEN_OVER_KEY!r}] and writes nothing",
    ),
    WSGIServerSupport(
        name="gunicorn (sync, gthread and gevent workers)",
        socket_key="gunicorn.socket",
        finish="the socket is shut down; the worker's write fails with EPIPE, logged at debug",
    ),
)


def supported_servers() -> str:
    """Name the servers WebSockets work on, for error messages."""
    return "; ".join(row.name for row in SERVERS)


def find_socket(environ: dict[str, Any]) -> socket.socket:
    """Return the client socket the WSGI server keeps in ``environ``.

    Raises:
        UnsupportedServer: when no known server put a socket there.
    """
    for row in SERVERS:
        sock = environ.get(row.socket_key)
        if sock is not None:
            return sock  # type: ignore[no-any-return]
    raise UnsupportedServer(
        f"{environ.get('SERVER_SOFTWARE', 'this WSGI server')} does not hand over client "
        f"connections, so it cannot serve WebSockets. Supported: {supported_servers()}; "
        "or any ASGI server with django_websocket.asgi.get_asgi_application()."
    )


def request_headers(environ: dict[str, Any]) -> list[tuple[str, str]]:
    """Rebuild the request's headers from a WSGI environ."""
    headers = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers.append((key[5:].replace("_", "-").title(), value))
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers.append((key.replace("_", "-").title(), environ[key]))
    return headers


def _request_target(environ: dict[str, Any]) -> str:
    path = environ.get("RAW_URI") or (
        (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")) or "/"
    )
    if "?" not in path and environ.get("QUERY_STRING"):
        path += "?" + environ["QUERY_STRING"]
    # The engine only re-parses the request; a non-ASCII path must not stop it.
    return str(path).encode("latin-1", "replace").decode("ascii", "replace")


class WSGIConnection:
    """A WebSocket over a taken-over WSGI socket, in blocking style.

    It adapts websockets' threaded connection to the small surface the
    :class:`~django_websocket.WebSocket` facade needs and turns the engine's
    exceptions into ours. Group messages are written by a thread of their own
    while some wait (see :meth:`deliver`), so a slow client holds back nobody.
    """

    def __init__(
        self, environ: dict[str, Any], server_socket: socket.socket, connection: WatchedConnection
    ) -> None:
        self._environ = environ
        self._server_socket = server_socket
        self._connection = connection
        self.subprotocol: str | None = connection.subprotocol
        self._finished = threading.Event()
        self._outbox = Outbox(conf.get("WEBSOCKET_GROUP_QUEUE"))
        self._outbox_ready = threading.Condition()
        self._writing = False
        self._close_callbacks: list[Callable[[], None]] = []
        connection.on_end = self._connection_ended
        if connection.ended:
            self._connection_ended()

    def receive(self, timeout: float | None) -> str | bytes:
        """Return the next message.

        Raises:
            TimeoutError: when ``timeout`` elapses first (0 means "only if waiting").
            ConnectionClosed: once the connection is closed and drained.
        """
        try:
            return self._connection.recv(timeout)
        except EngineConnectionClosed:
            raise self._closed_error() from None

    def send(self, data: str | bytes) -> None:
        """Send one message (``str`` as text, ``bytes`` as binary)."""
        try:
            self._connection.send(data)
        except EngineConnectionClosed:
            raise self._closed_error() from None

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Run the closing handshake, wait for it (bounded), and release the socket."""
        try:
            self._connection.close(code, reason)
        finally:
            self.finish()

    def finish(self) -> None:
        """Hand control back to the server so that it writes nothing more."""
        if self._finished.is_set():
            return
        self._finished.set()
        self._environ[TAKEN_OVER_KEY] = True
        # The engine closed its duplicate of the socket; the server still holds the
        # original. Shutting it down makes any late write of the server fail fast.
        with contextlib.suppress(OSError):
            self._server_socket.shutdown(socket.SHUT_RDWR)
        self._connection_ended()

    @property
    def closed(self) -> bool:
        """Whether the closing handshake has started or the connection is gone.

        A close frame from the client counts once every message it followed is
        ready to read, so that a view that sees ``closed`` can drain them all.
        """
        connection = self._connection
        if connection.state is OPEN:
            return False
        return not connection.messages_pending

    @property
    def close_info(self) -> tuple[int | None, str]:
        """The close code and reason, or ``(None, "")`` while the connection is open."""
        if not self.closed:
            return None, ""
        return connection_close_info(self._connection)

    def _closed_error(self) -> ConnectionClosed:
        code, reason = connection_close_info(self._connection)
        return ConnectionClosed(code, reason)

    # ---- group messages ----------------------------------------------------------------

    @property
    def deliverer(self) -> WSGIConnection:
        """Where group messages for this connection go: the connection itself."""
        return self

    #: :meth:`deliver` and :meth:`kick` may be called from any thread.
    delivery_loop = None

    def deliver(self, message: str | bytes) -> None:
        """Queue a group message for the client without waiting (from any thread).

        A client that stays over ``WEBSOCKET_GROUP_QUEUE`` waiting messages (see
        :class:`~django_websocket.delivery.Outbox`) is closed with 1013 (try again
        later): it must not hold back its groups.
        """
        with self._outbox_ready:
            accepted = self._outbox.put(message)
            self._outbox_ready.notify()
            start_writer = accepted and not self._writing and not self._outbox.closed
            if start_writer:
                self._writing = True
        if not accepted:
            logger.warning("%s", self._outbox.overflow_report(self._environ.get("PATH_INFO", "")))
            self.kick(*TOO_SLOW)
        elif start_writer:
            threading.Thread(target=self._write_outbox, name="djws-outbox", daemon=True).start()

    def _write_outbox(self) -> None:
        # Lingers a little once the outbox is empty: a busy group would otherwise
        # start a thread per message.
        while True:
            with self._outbox_ready:
                message = self._outbox.take()
                if message is None and not self._outbox.closed:
                    self._outbox_ready.wait(_WRITER_LINGER)
                    message = self._outbox.take()
                if message is None:
                    self._writing = False
                    return
            try:
                self._connection.send(message)
            except (EngineConnectionClosed, OSError):
                with self._outbox_ready:
                    self._outbox.close()
                    self._writing = False
                return

    def kick(self, code: int, reason: str) -> None:
        """Close the connection from outside its view, without waiting (from any thread)."""
        with self._outbox_ready:
            self._outbox.close()
            self._outbox_ready.notify_all()
        if not self.closed:
            threading.Thread(
                target=self._close_quietly, args=(code, reason), name="djws-kick", daemon=True
            ).start()

    def _close_quietly(self, code: int, reason: str) -> None:
        # The view's thread finishes the connection; this only runs the handshake.
        with contextlib.suppress(Exception):
            self._connection.close(code, reason)

    def add_close_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the connection is over (at once if it is already)."""
        with self._outbox_ready:
            self._close_callbacks.append(callback)
        if self._finished.is_set() or self._connection.state is not OPEN:
            self._connection_ended()

    def _connection_ended(self) -> None:
        with self._outbox_ready:
            self._outbox.close()
            self._outbox_ready.notify_all()
            callbacks, self._close_callbacks = self._close_callbacks, []
        run_close_callbacks(callbacks)


def open_connection(
    environ: dict[str, Any],
    subprotocol: str | None,
    limits: EngineLimits,
    response_headers: list[tuple[str, str]] | None = None,
) -> WSGIConnection:
    """Send the 101 response on the client socket and start the WebSocket.

    Raises:
        UnsupportedServer: when the server does not lend its socket.
        HandshakeFailed: when the engine refuses the request.
        OSError: when the client went away during the handshake.
    """
    server_socket = find_socket(environ)
    protocol, response = perform_handshake(
        _request_target(environ),
        request_headers(environ),
        subprotocol,
        limits,
        response_headers or (),
    )
    server_socket.sendall(response)
    environ[TAKEN_OVER_KEY] = True
    # The engine closes the socket it is given; it gets a duplicate so that the
    # server's own socket object stays valid until the server lets go of it.
    engine_socket = server_socket.dup()
    engine_socket.settimeout(limits.send_timeout)
    engine = open_blocking_connection(engine_socket, protocol, limits)
    return WSGIConnection(environ, server_socket, engine)


class WSGIAsyncConnection:
    """A :class:`WSGIConnection` for an async view: each blocking call runs in a worker thread.

    A thread blocked in ``recv`` cannot be cancelled. When the view stops
    waiting (a timeout, a cancelled task), that receive stays pending and the
    next one takes it over, so no message is lost and the engine never sees two
    receivers at once.
    """

    def __init__(self, connection: WSGIConnection) -> None:
        self._connection = connection
        self.subprotocol = connection.subprotocol
        self._receiving: asyncio.Future[str | bytes] | None = None

    def _take(self, pending: asyncio.Future[str | bytes]) -> str | bytes:
        self._receiving = None
        return pending.result()

    def receive_nowait(self) -> str | bytes:
        """Return a message that already arrived; raise TimeoutError or ConnectionClosed."""
        pending = self._receiving
        if pending is None:
            return self._connection.receive(0)
        if pending.done():
            return self._take(pending)
        raise TimeoutError("no message waiting")

    async def receive(self, timeout: float | None) -> str | bytes:
        """Return the next message; raise TimeoutError or ConnectionClosed."""
        async with asyncio.timeout(timeout):
            while True:
                pending = self._receiving
                if pending is None:
                    pending = self._receiving = asyncio.ensure_future(
                        asyncio.to_thread(self._connection.receive, None)
                    )
                await asyncio.wait({pending})
                if self._receiving is pending:  # else another waiter took this message
                    return self._take(pending)

    async def send(self, data: str | bytes) -> None:
        """Send one message; raise ConnectionClosed once closed."""
        await asyncio.to_thread(self._connection.send, data)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Run the closing handshake (bounded) and release the socket."""
        await asyncio.to_thread(self._connection.close, code, reason)
        pending = self._receiving
        if pending is not None:
            # The closed connection ends the pending receive; its ConnectionClosed
            # is expected, not an error to report.
            await asyncio.wait({pending}, timeout=1)
            if pending.done() and not pending.cancelled():
                pending.exception()

    @property
    def closed(self) -> bool:
        """Whether the closing handshake has started or the connection is gone."""
        return self._connection.closed

    @property
    def close_info(self) -> tuple[int | None, str]:
        """The close code and reason, or ``(None, "")`` while the connection is open."""
        return self._connection.close_info

    @property
    def deliverer(self) -> WSGIConnection:
        """Where group messages go: the blocking connection, from any thread."""
        return self._connection


class WSGIEndpoint:
    """A WebSocket request on a WSGI server, ready to be accepted.

    Raises:
        UnsupportedServer: at creation, when the server does not lend its socket.
    """

    def __init__(self, environ: dict[str, Any]) -> None:
        find_socket(environ)
        self._environ = environ

    @property
    def offered_subprotocols(self) -> list[str]:
        """The subprotocols the client offered, in its order of preference."""
        return offered_subprotocols(
            {"sec-websocket-protocol": self._environ.get("HTTP_SEC_WEBSOCKET_PROTOCOL", "")}
        )

    def open(self, subprotocol: str | None) -> WSGIConnection:
        """Send the 101 response and start the WebSocket (see :func:`open_connection`)."""
        return open_connection(self._environ, subprotocol, conf.engine_limits())

    async def open_async(self, subprotocol: str | None) -> WSGIAsyncConnection:
        """Accept for an async view; the socket I/O stays blocking, in worker threads."""
        return WSGIAsyncConnection(await asyncio.to_thread(self.open, subprotocol))

    def claim_sync_view(self) -> bool:
        """Always ``True``: the WSGI server already gave the request its thread."""
        return True


# ---- runserver: our request handler and server class -----------------------------------


class WebSocketServerHandler(ServerHandler):
    """Django's dev-server handler, silent for requests that became WebSockets."""

    # Set by wsgiref's BaseHandler and by our request handler; untyped in the stubs.
    environ: dict[str, Any]
    request_handler: Any
    result: Any

    def finish_response(self) -> None:
        """Write the response, unless the socket was taken over by a WebSocket."""
        if not self.environ.get(TAKEN_OVER_KEY):
            super().finish_response()
            return
        self.request_handler.close_connection = True
        # Log the upgrade like any request ("GET /ws/ HTTP/1.1" 101), write nothing.
        self.request_handler.log_request(101, 0)
        result_close: Callable[[], None] | None = getattr(self.result, "close", None)
        if result_close is not None:
            result_close()


class WebSocketRequestHandler(WSGIRequestHandler):
    """Django's dev-server request handler that lends its socket to WebSockets."""

    def get_environ(self) -> dict[str, Any]:
        """Add the client socket to the environ, under :data:`RUNSERVER_SOCKET_KEY`."""
        environ: dict[str, Any] = super().get_environ()
        environ[RUNSERVER_SOCKET_KEY] = self.connection
        return environ

    def handle_one_request(self) -> None:
        """Handle one request like Django does, with :class:`WebSocketServerHandler`."""
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.requestline = ""
            self.request_version = ""
            self.command = ""
            self.send_error(414)
            return
        if not self.parse_request():
            return
        handler = WebSocketServerHandler(
            self.rfile, self.wfile, self.get_stderr(), self.get_environ()
        )
        handler.request_handler = self
        handler.run(self.server.get_app())  # type: ignore[attr-defined]


class WebSocketWSGIServer(WSGIServer):
    """Django's dev server, with a request handler that can lend its socket."""

    def __init__(self, server_address: Any, handler_class: Any, *args: Any, **kwargs: Any) -> None:
        if handler_class is WSGIRequestHandler:
            handler_class = WebSocketRequestHandler
        super().__init__(server_address, handler_class, *args, **kwargs)
