"""The protocol engine: the only module that imports ``websockets``.

We never parse frames by hand. websockets' sans-I/O ``ServerProtocol`` does the
framing, masking, UTF-8 checks, size limits (checked after decompression) and
permessage-deflate; its blocking ``Connection`` drives a taken-over socket with
keepalive, back-pressure and the closing handshake. Everything the rest of the
package needs from websockets goes through the names below, so swapping the
engine touches this file only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed as EngineConnectionClosed
from websockets.exceptions import InvalidHeader
from websockets.extensions.permessage_deflate import enable_server_permessage_deflate
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import OPEN, Event
from websockets.server import ServerProtocol
from websockets.sync.connection import Connection as BlockingConnection
from websockets.typing import Subprotocol

from .exceptions import MalformedWebSocket

if TYPE_CHECKING:
    from socket import socket

__all__ = [
    "OPEN",
    "BlockingConnection",
    "CloseCode",
    "EngineConnectionClosed",
    "EngineLimits",
    "HandshakeFailed",
    "WatchedConnection",
    "connection_close_info",
    "open_blocking_connection",
    "perform_handshake",
]

# websockets logs "connection open/closed" at INFO; a child logger lets users tune it.
logger = logging.getLogger("django_websocket.engine")


@dataclass(frozen=True)
class EngineLimits:
    """Limits and options handed to the protocol engine for one connection.

    Attributes:
        max_message_size: largest incoming message in bytes, after decompression;
            a larger one closes the connection with 1009. None means unlimited.
        max_queue: incoming messages buffered before reading from the network
            pauses (back-pressure instead of memory growth).
        ping_interval: seconds between keepalive pings; None disables them.
        ping_timeout: seconds to wait for a pong before closing with 1011.
        close_timeout: seconds to wait for the peer during the closing handshake.
        compression: "deflate" to offer permessage-deflate (RFC 7692), or None.
    """

    max_message_size: int | None = 2**20
    max_queue: int = 16
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    close_timeout: float = 10.0
    compression: str | None = "deflate"

    @property
    def send_timeout(self) -> float | None:
        """How long one write may block before the peer counts as dead.

        A client that stops reading fills the TCP buffers and would block a
        sending view forever; a write stuck for as long as keepalive allows a
        silent peer (ping interval plus ping timeout) ends the connection.
        """
        if self.ping_interval is None or self.ping_timeout is None:
            return None
        return self.ping_interval + self.ping_timeout


class HandshakeFailed(MalformedWebSocket):
    """The engine refused the opening handshake; ``status`` and ``reason`` say why.

    Our own checks run first, so this is a safety net: whatever the engine
    refuses still becomes a 4xx answer, never a 500. The WSGI transport also
    raises it with 503 when the process has no file descriptor left.
    """

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(body.decode("utf-8", "replace").strip(), status)


def _build_protocol(subprotocol: str | None, limits: EngineLimits) -> ServerProtocol:
    # websockets' own defaults for servers (12-bit windows, memLevel 5): about 64 KiB of
    # zlib state per connection instead of the 300 KiB of zlib's, for a small loss of
    # compression ratio on large messages.
    extensions = enable_server_permessage_deflate(None) if limits.compression == "deflate" else None

    def choose(_protocol: ServerProtocol, _offered: Sequence[Subprotocol]) -> Subprotocol | None:
        # The Django layer already chose, with the view's list and our rule.
        return Subprotocol(subprotocol) if subprotocol is not None else None

    return ServerProtocol(
        origins=None,  # checked by the Django layer, which knows the request's host
        extensions=extensions,
        select_subprotocol=choose,
        max_size=limits.max_message_size,
        logger=logger,
    )


def perform_handshake(
    path: str,
    headers: Iterable[tuple[str, str]],
    subprotocol: str | None,
    limits: EngineLimits,
    response_headers: Iterable[tuple[str, str]] = (),
) -> tuple[ServerProtocol, bytes]:
    """Run the opening handshake for a request that a server already parsed.

    The request is serialised again and fed to the engine: handing a parsed
    request straight to ``accept()`` leaves the engine waiting for a request line.

    Args:
        path: the request target, with its query string.
        headers: the request headers as the client sent them.
        subprotocol: the subprotocol to confirm, or None.
        limits: the engine settings for this connection.
        response_headers: extra headers for the 101 response (cookies...).

    Returns:
        The engine, now OPEN, and the bytes of the 101 response to send.

    Raises:
        HandshakeFailed: when the engine refuses the request.
    """
    protocol = _build_protocol(subprotocol, limits)
    try:
        request_headers = Headers(headers)
    except InvalidHeader as exc:
        # websockets refuses control characters in header values (RFC 9110), which
        # our checks do not look at: any header, e.g. a Cookie, may carry them.
        raise HandshakeFailed(400, f"Invalid {exc.name} header.\n".encode()) from None
    request = Request(path, request_headers)
    protocol.receive_data(request.serialize())
    events = protocol.events_received()
    if len(events) != 1 or not isinstance(events[0], Request):
        raise HandshakeFailed(400, b"Failed to parse the WebSocket handshake request.\n")
    response = protocol.accept(events[0])
    if response.status_code != 101:
        raise HandshakeFailed(response.status_code, bytes(response.body))
    for name, value in response_headers:
        response.headers[name] = value
    protocol.send_response(response)
    return protocol, b"".join(protocol.data_to_send())


class WatchedConnection(BlockingConnection):
    """websockets' blocking connection, telling when its reading thread ends.

    That is when the connection is over, whoever ended it: ``ended`` becomes
    true and ``on_end`` is called, from the reading thread.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.ended = False
        self.on_end: Callable[[], None] | None = None
        #: Called from the reading thread when the client's close frame arrives.
        self.on_close_frame: Callable[[], None] | None = None
        self._peer_close_dispatched = False
        super().__init__(*args, **kwargs)

    def process_event(self, event: Event) -> None:
        super().process_event(event)
        if isinstance(event, Frame) and event.opcode is Opcode.CLOSE:
            self._peer_close_dispatched = True
            if self.on_close_frame is not None:
                self.on_close_frame()

    def recv_events(self) -> None:
        try:
            super().recv_events()
        finally:
            self._peer_close_dispatched = True
            self.ended = True
            if self.on_end is not None:
                self.on_end()

    def begin_close(self, code: int, reason: str) -> bool:
        """Send a close frame without waiting for the client's; tell whether it was sent.

        The reading thread completes the closing handshake as usual. This is
        for closing many connections at once (a server stopping), where
        :meth:`close` would wait up to the close timeout for each one in turn;
        :meth:`abort` then ends those whose client never answered.
        """
        # Closing many connections in turn, none may hold the others up: a view busy
        # sending, or a client that stopped reading, is left to abort().
        if not self.protocol_mutex.acquire(timeout=0.1):
            return False
        try:
            if self.protocol.state is not OPEN or self.send_in_progress:
                return False
            self.protocol.send_close(code, reason)
            self.socket.settimeout(min(self.socket.gettimeout() or 1.0, 1.0))
            try:
                self.send_data()
                return True
            except OSError as exc:
                self.set_connection_exc(exc)
        finally:
            self.protocol_mutex.release()
        # The socket is broken: end the connection rather than wait for a reply.
        self.close_socket()
        return False

    def wait_ended(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the connection to be over; tell whether it is."""
        self.recv_events_thread.join(timeout)
        return not self.recv_events_thread.is_alive()

    def abort(self) -> None:
        """Drop the TCP connection now; the reading thread ends and the connection is over."""
        self.close_socket()

    @property
    def messages_pending(self) -> bool:
        """Whether messages that came before the client's close frame are not yet readable.

        The engine leaves OPEN as soon as it parses that close frame, but hands
        the messages before it to the reader only afterwards.
        """
        return self.protocol.close_rcvd is not None and not self._peer_close_dispatched


def open_blocking_connection(
    sock: socket,
    protocol: ServerProtocol,
    limits: EngineLimits,
) -> WatchedConnection:
    """Drive an OPEN engine over a blocking socket, in the calling thread's world.

    The connection reads in a thread of its own (and pings in another when
    keepalive is on); it closes the socket it is given when the connection ends.
    """
    connection = WatchedConnection(
        sock,
        protocol,
        ping_interval=limits.ping_interval,
        ping_timeout=limits.ping_timeout,
        close_timeout=limits.close_timeout,
        max_queue=limits.max_queue,
    )
    # websockets' own server starts keepalive after its handshake; we did the handshake.
    connection.start_keepalive()
    return connection


def connection_close_info(connection: BlockingConnection) -> tuple[int, str]:
    """Return the close code and reason of a closed connection.

    The code the peer sent wins; then the one we sent; a connection that ended
    without any close frame reports 1006 (RFC 6455 section 7.1.5).
    """
    protocol = connection.protocol
    received = protocol.close_rcvd
    sent = protocol.close_sent
    if received is not None:
        return int(received.code), received.reason
    if sent is not None:
        return int(sent.code), sent.reason
    return int(CloseCode.ABNORMAL_CLOSURE), ""
