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

import _thread
import asyncio
import contextlib
import logging
import signal
import socket
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from errno import EMFILE, ENFILE
from types import FrameType
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
    HandshakeFailed,
    WatchedConnection,
    connection_close_info,
    open_blocking_connection,
    perform_handshake,
)

__all__ = [
    "GOING_AWAY",
    "RUNSERVER_SOCKET_KEY",
    "SERVERS",
    "TAKEN_OVER_KEY",
    "WSGIAsyncConnection",
    "WSGIConnection",
    "WSGIEndpoint",
    "WSGIServerSupport",
    "WebSocketWSGIServer",
    "close_all",
    "close_on_shutdown_signals",
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

#: The close code and reason of a WebSocket whose server is stopping (RFC 6455 7.4.1).
GOING_AWAY = (1001, "server shutting down")

#: The signals after which WSGI servers stop their workers.
_SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)

# The WebSockets this process serves, so that a stopping server can close them all.
_open_connections: weakref.WeakSet[WSGIConnection] = weakref.WeakSet()
_open_connections_lock = threading.Lock()


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
        self._close_timer: threading.Timer | None = None
        connection.on_end = self._connection_ended
        connection.on_close_frame = self._drop_after_close_timeout
        with _open_connections_lock:
            _open_connections.add(self)
        if connection.protocol.close_rcvd is not None:  # it came before the callback was set
            self._drop_after_close_timeout()
        if connection.ended:
            self._connection_ended()

    def _drop_after_close_timeout(self) -> None:
        # After its close frame the client should close TCP; the engine waits for that
        # without a deadline. One that keeps the connection open is dropped once the
        # close timeout has passed, so that it cannot hold the view and its thread.
        engine = self._connection
        with self._outbox_ready:
            if self._close_timer is not None or engine.close_timeout is None or engine.ended:
                return
            self._close_timer = threading.Timer(engine.close_timeout, engine.abort)
            self._close_timer.daemon = True
        self._close_timer.start()

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
        with _open_connections_lock:
            _open_connections.discard(self)
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
        if self._close_timer is not None:
            self._close_timer.cancel()
        with self._outbox_ready:
            self._outbox.close()
            self._outbox_ready.notify_all()
            callbacks, self._close_callbacks = self._close_callbacks, []
        run_close_callbacks(callbacks)


def close_all(code: int = GOING_AWAY[0], reason: str = GOING_AWAY[1]) -> int:
    """Close every WebSocket this process serves over WSGI; return how many were open.

    Close frames go to every client first; the clients then get
    ``WEBSOCKET_CLOSE_TIMEOUT`` seconds (in all, not each) to answer before their
    TCP connections are dropped. Views see their WebSocket closed and end as
    usual, which frees the server's threads for a graceful stop; this waits
    another ``WEBSOCKET_CLOSE_TIMEOUT`` at most for them to return.
    """
    with _open_connections_lock:
        connections = list(_open_connections)
    for connection in connections:
        connection._connection.begin_close(code, reason)
    grace = float(conf.get("WEBSOCKET_CLOSE_TIMEOUT"))
    deadline = time.monotonic() + grace
    for connection in connections:
        engine = connection._connection
        if not engine.wait_ended(max(deadline - time.monotonic(), 0.0)):
            engine.abort()
    deadline = time.monotonic() + grace
    for connection in connections:
        connection._finished.wait(max(deadline - time.monotonic(), 0.0))
    if connections:
        logger.info("Closed %d WebSocket(s) with %d: %s", len(connections), code, reason)
    return len(connections)


_going_away_started = False


def _go_away() -> None:
    # Once per process: a second signal must not start a second round. (A plain
    # bool: a signal handler must not take locks, which Event.set() does.)
    global _going_away_started
    if _going_away_started:
        return
    _going_away_started = True
    # A bare thread, which gevent turns into a greenlet: Thread.start() waits for
    # the thread to run, which gevent refuses inside a signal handler. The server's
    # threads that hold WebSocket views keep the process alive until they end.
    _thread.start_new_thread(close_all, ())


def _chained(previous: Callable[[int, FrameType | None], Any]) -> Callable[..., Any]:
    def handler(signum: int, frame: FrameType | None) -> Any:
        _go_away()
        return previous(signum, frame)

    handler.closes_websockets = True  # type: ignore[attr-defined]
    return handler


def close_on_shutdown_signals() -> None:
    """Close this process's WebSockets with 1001 when its server is told to stop.

    Wraps the handlers that a WSGI server installed for SIGTERM, SIGINT and
    SIGQUIT (gunicorn's workers do before they load the application), not
    Python's default Ctrl-C handler: ours
    starts :func:`close_all` in a thread, then the server's runs as before. A
    signal without a Python handler is left alone, as is everything outside the
    main thread, where handlers cannot be set.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in _SHUTDOWN_SIGNALS:
        previous = signal.getsignal(signum)
        # Python's own Ctrl-C handler is not a server's: commands (and runserver,
        # which closes its WebSockets itself) keep it as it is.
        if (
            callable(previous)
            and previous is not signal.default_int_handler
            and not getattr(previous, "closes_websockets", False)
        ):
            signal.signal(signum, _chained(previous))


def open_connection(
    environ: dict[str, Any],
    subprotocol: str | None,
    limits: EngineLimits,
    response_headers: list[tuple[str, str]] | None = None,
) -> WSGIConnection:
    """Send the 101 response on the client socket and start the WebSocket.

    Raises:
        UnsupportedServer: when the server does not lend its socket.
        HandshakeFailed: when the engine refuses the request, or (503) when the
            process has no file descriptor or thread left for the connection.
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
    # The engine closes the socket it is given; it gets a duplicate so that the
    # server's own socket object stays valid until the server lets go of it. Made
    # before the 101: out of file descriptors, the client still gets an HTTP answer.
    try:
        engine_socket = server_socket.dup()
    except OSError as exc:
        logger.error("Refused a WebSocket: no file descriptor left for it (%s)", exc)
        raise HandshakeFailed(503, b"The server is out of resources; try again later.") from exc
    # The engine starts reading at once, so it starts after the 101: whatever the
    # client sends early must not be answered before the handshake is.
    environ[TAKEN_OVER_KEY] = True
    try:
        engine_socket.settimeout(limits.send_timeout)
        server_socket.sendall(response)
        engine = open_blocking_connection(engine_socket, protocol, limits)
    except (OSError, RuntimeError) as exc:  # the client left; or EMFILE, "can't start new thread"
        engine_socket.close()
        # After a 101 only WebSocket frames may follow, never the server's HTTP answer.
        with contextlib.suppress(OSError):
            server_socket.shutdown(socket.SHUT_RDWR)
        out_of_resources = not isinstance(exc, OSError) or exc.errno in (EMFILE, ENFILE)
        if out_of_resources:
            logger.error("Dropped a WebSocket after its handshake, out of resources: %s", exc)
        if isinstance(exc, OSError):
            raise
        raise ConnectionAbortedError(str(exc)) from exc
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
    """Django's dev-server request handler that lends its socket to WebSockets.

    A client that sends no request, or stops in the middle of one, is dropped
    after :attr:`timeout` seconds of silence instead of holding a thread forever;
    once a WebSocket is open, the protocol engine's own timeouts apply.
    """

    #: Seconds the server waits for a client's next bytes of an HTTP request.
    timeout = 10

    def get_environ(self) -> dict[str, Any]:
        """Add the client socket to the environ, under :data:`RUNSERVER_SOCKET_KEY`."""
        environ: dict[str, Any] = super().get_environ()
        environ[RUNSERVER_SOCKET_KEY] = self.connection
        return environ

    def handle_one_request(self) -> None:
        """Handle one request like Django does, with :class:`WebSocketServerHandler`."""
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline = ""
                self.request_version = ""
                self.command = ""
                self.send_error(414)
                return
            if not self.parse_request():
                return
        except TimeoutError:
            # The client went quiet before its request was complete (or between
            # keep-alive requests): drop it. Django's log_message cannot format
            # the standard library's "Request timed out" line, so nothing is logged.
            self.close_connection = True
            return
        handler = WebSocketServerHandler(
            self.rfile, self.wfile, self.get_stderr(), self.get_environ()
        )
        handler.request_handler = self
        handler.run(self.server.get_app())  # type: ignore[attr-defined]


class WebSocketWSGIServer(WSGIServer):
    """Django's dev server, with a request handler that can lend its socket."""

    #: The servers of this process, for :meth:`stop_accepting_all`.
    instances: weakref.WeakSet[WebSocketWSGIServer] = weakref.WeakSet()

    def __init__(self, server_address: Any, handler_class: Any, *args: Any, **kwargs: Any) -> None:
        if handler_class is WSGIRequestHandler:
            handler_class = WebSocketRequestHandler
        super().__init__(server_address, handler_class, *args, **kwargs)
        self._serving_thread: threading.Thread | None = None
        self.instances.add(self)

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Serve until :meth:`shutdown`, remembering which thread does."""
        self._serving_thread = threading.current_thread()
        try:
            super().serve_forever(poll_interval)
        finally:
            self._serving_thread = None

    @classmethod
    def stop_accepting_all(cls) -> None:
        """Stop every server of this process from taking new connections.

        Called before closing the WebSockets of a stopping process: a client that
        reconnects at once must not land on the server that is going away.
        """
        for server in list(cls.instances):
            serving = server._serving_thread
            if serving is not None and serving is not threading.current_thread():
                # shutdown() waits for serve_forever, which a --nothreading server
                # runs in the thread of the WebSocket view that close_all ends: bounded.
                stopper = threading.Thread(target=server.shutdown, daemon=True)
                stopper.start()
                stopper.join(1.0)
            server.server_close()
