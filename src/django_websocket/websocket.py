"""``request.websocket``: the WebSocket API a view talks through.

:class:`WebSocket` is the blocking API of a sync view, :class:`AsyncWebSocket`
its awaitable twin for an ``async def`` view: the same names, the same
meaning, on either transport.

The names and their meaning come from the original django-websocket README
(``wait``, ``read``, ``count_messages``, ``has_messages``, ``send``, iteration);
the rest (timeouts, close codes, JSON, explicit accept) is what a 2026 library
owes its users. Text frames arrive as ``str``, binary frames as ``bytes``.

The opening handshake is lazy: the 101 response goes out on the first call that
needs the connection (or :meth:`WebSocket.accept`). A view that returns an
``HttpResponse`` before that refuses the WebSocket with that response.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from . import groups as _groups
from .delivery import encode_json
from .exceptions import ConnectionClosed, InvalidState, MalformedWebSocket
from .handshake import select_subprotocol

if TYPE_CHECKING:
    from django.http import HttpRequest

__all__ = ["AsyncTransport", "AsyncWebSocket", "Endpoint", "Message", "Transport", "WebSocket"]

#: What a message is: ``str`` for a text frame, ``bytes`` for a binary frame.
Message = str | bytes

_Fallback = TypeVar("_Fallback")

logger = logging.getLogger("django_websocket")


class _TransportState(Protocol):
    subprotocol: str | None

    @property
    def closed(self) -> bool:
        """Whether the connection is closing or closed."""

    @property
    def close_info(self) -> tuple[int | None, str]:
        """The close code and reason, ``(None, "")`` while open."""

    @property
    def deliverer(self) -> _groups.Deliverer:
        """Where the connection's group messages go."""


class Transport(_TransportState, Protocol):
    """What a transport's open connection offers :class:`WebSocket`."""

    def receive(self, timeout: float | None) -> Message:
        """Return the next message; raise TimeoutError or ConnectionClosed."""

    def send(self, data: Message) -> None:
        """Send one message; raise ConnectionClosed once closed."""

    def close(self, code: int, reason: str) -> None:
        """Run the closing handshake and release the connection."""


class AsyncTransport(_TransportState, Protocol):
    """What a transport's open connection offers :class:`AsyncWebSocket`."""

    def receive_nowait(self) -> Message:
        """Return a message that already arrived; raise TimeoutError or ConnectionClosed."""

    async def receive(self, timeout: float | None) -> Message:
        """Return the next message; raise TimeoutError or ConnectionClosed."""

    async def send(self, data: Message) -> None:
        """Send one message; raise ConnectionClosed once closed."""

    async def close(self, code: int, reason: str) -> None:
        """Run the closing handshake and release the connection."""


class Endpoint(Protocol):
    """A WebSocket request that a transport can accept, in either style."""

    @property
    def offered_subprotocols(self) -> Sequence[str]:
        """The subprotocols the client offered, in its order of preference."""

    def open(self, subprotocol: str | None) -> Transport:
        """Complete the handshake from a sync view's thread."""

    async def open_async(self, subprotocol: str | None) -> AsyncTransport:
        """Complete the handshake from an async view."""

    def claim_sync_view(self) -> bool:
        """Reserve what a sync view holds for its lifetime; ``False`` when none is left."""


def _as_message(message: object) -> Message:
    # The original library sent anything through str(); bytes-likes go as binary.
    if isinstance(message, str | bytes):
        return message
    if isinstance(message, bytearray | memoryview):
        return bytes(message)
    return str(message)


_T = TypeVar("_T", bound=_TransportState)


class _Connection(Generic[_T]):
    """What both APIs share: the handshake state, non-blocking reads, close info."""

    def __init__(
        self, endpoint: Endpoint, offered_protocols: Sequence[str] = (), max_pending: int = 16
    ) -> None:
        self._endpoint = endpoint
        self._offered = tuple(offered_protocols)
        self._supported: tuple[str, ...] = ()
        self._transport: _T | None = None
        self._refused: tuple[int, str] | None = None
        #: Why the handshake could not be completed, when the engine refused it.
        self.handshake_error: MalformedWebSocket | None = None
        # Messages read ahead by count_messages() and has_messages(). Made when
        # needed and dropped once empty: an empty deque keeps a 64-slot block.
        self._pending: deque[Message] | None = None
        self._max_pending = max(1, max_pending)
        #: The request this connection answers; set by ``prepare``, read for the user.
        self._request: HttpRequest | None = None
        self._id: str | None = None
        self._session = ""
        self._membership: _groups.Membership | None = None

    def _take_pending(self) -> Message | None:
        pending = self._pending
        if not pending:
            return None
        message = pending.popleft()
        if not pending:
            self._pending = None
        return message

    def _keep(self, message: Message) -> None:
        if self._pending is None:
            self._pending = deque()
        self._pending.append(message)

    def _pending_count(self) -> int:
        return len(self._pending) if self._pending is not None else 0

    def _set_protocols(self, protocols: Sequence[str] | None) -> None:
        # Called by the decorator and the middleware, before the view runs.
        if self._transport is not None:
            raise InvalidState("subprotocols cannot change after the handshake")
        self._supported = tuple(protocols or ())

    def _handshake_failed(self, exc: OSError | MalformedWebSocket) -> None:
        if isinstance(exc, MalformedWebSocket):
            self.handshake_error = exc
            self._refused = (1002, exc.reason)
        else:  # the client went away during the handshake
            self._refused = (1006, "")

    @property
    def protocol(self) -> str | None:
        """The subprotocol chosen for this connection, or ``None``.

        It is the first subprotocol the client offers among those given to
        ``@accept_websocket(protocols=[...])``; it is known before the handshake.
        """
        if self._transport is not None:
            return self._transport.subprotocol
        return select_subprotocol(self._offered, self._supported)

    @property
    def accepted(self) -> bool:
        """Whether the 101 response was sent."""
        return self._transport is not None

    @property
    def refused(self) -> bool:
        """Whether the view closed the WebSocket before accepting it."""
        return self._refused is not None

    @property
    def id(self) -> str:
        """An id of this connection, unique across processes (for ``exclude=``)."""
        if self._id is None:
            self._id = _groups.new_connection_id()
        return self._id

    @property
    def groups(self) -> frozenset[str]:
        """The groups this connection has joined (and not left)."""
        member = self._membership
        if member is None:
            return frozenset()
        return frozenset(group for group in member.groups if not _groups.is_user_group(group))

    def _member(self, transport: _T) -> _groups.Membership:
        if self._membership is None:
            deliverer = transport.deliverer
            member = _groups.Membership(self.id, deliverer, self._session)
            hub = _groups.get_hub()
            self._membership = member
            # However the connection ends, it leaves its groups.
            deliverer.add_close_callback(lambda: hub.leave_all(member))
        return self._membership

    def _poll(self) -> Message:
        raise NotImplementedError

    def read(self, fallback: _Fallback | None = None) -> Message | _Fallback | None:
        """Return a message that has already arrived, without blocking.

        Args:
            fallback: what to return when no message is waiting (the original
                library's optional argument).

        Returns:
            The oldest waiting message, or ``fallback`` when none is waiting or
            the connection is closed and drained.
        """
        if (message := self._take_pending()) is not None:
            return message
        try:
            return self._poll()
        except (TimeoutError, ConnectionClosed):
            return fallback

    def count_messages(self) -> int:
        """Return how many messages have arrived and wait to be read, without blocking.

        The count stops at ``WEBSOCKET_MAX_QUEUE``: past it the server stops
        reading from the client, which is how a slow view pushes back.
        """
        while self._pending_count() < self._max_pending:
            try:
                self._keep(self._poll())
            except (TimeoutError, ConnectionClosed):
                break
        return self._pending_count()

    def has_messages(self) -> bool:
        """Return ``True`` if a message is waiting to be read, without blocking."""
        if self._pending:
            return True
        message = self.read()
        if message is None:
            return False
        self._keep(message)
        return True

    def _closed_error(self) -> ConnectionClosed:
        code, reason = self._refused or (1006, "")
        return ConnectionClosed(code, reason)

    @property
    def closed(self) -> bool:
        """Whether the connection is closed, closing, or was refused."""
        if self._transport is None:
            return self._refused is not None
        return self._transport.closed

    @property
    def close_code(self) -> int | None:
        """The close code (from the client's close frame, else ours), or ``None`` while open.

        1006 means the connection ended without a close frame.
        """
        if self._transport is None:
            return None if self._refused is None else self._refused[0]
        return self._transport.close_info[0]

    @property
    def close_reason(self) -> str | None:
        """The close reason that came with :attr:`close_code`, or ``None`` while open."""
        if self._transport is None:
            return None if self._refused is None else self._refused[1]
        code, reason = self._transport.close_info
        return None if code is None else reason


class WebSocket(_Connection[Transport]):
    """A WebSocket connection, seen from a synchronous view.

    Views get it as ``request.websocket``; they never build one themselves.
    Every method is safe to call after the connection closed: receiving methods
    return ``None`` (or the fallback), :meth:`send` raises
    :class:`~django_websocket.exceptions.ConnectionClosed`. :meth:`send` may be
    called from any thread; receiving is for one thread at a time.
    """

    def __init__(
        self, endpoint: Endpoint, offered_protocols: Sequence[str] = (), max_pending: int = 16
    ) -> None:
        super().__init__(endpoint, offered_protocols, max_pending)
        self._accept_lock = threading.Lock()

    def to_async(self) -> AsyncWebSocket:
        """The awaitable twin of this WebSocket, for an async view (before the handshake)."""
        if self._transport is not None or self._refused is not None:
            raise InvalidState("only a WebSocket that is not open yet can become async")
        twin = AsyncWebSocket(self._endpoint, self._offered, self._max_pending)
        twin._supported = self._supported
        twin._request = self._request
        twin._id = self._id
        return twin

    def accept(self) -> None:
        """Send the 101 response now, if it was not sent yet.

        Other methods accept implicitly; call this to open the connection before
        the first message, for example to start a long computation afterwards.
        Accepting a WebSocket that :meth:`close` refused does nothing.
        """
        self._open()

    def _open(self) -> Transport | None:
        if self._transport is not None or self._refused is not None:
            return self._transport
        with self._accept_lock:
            if self._transport is not None or self._refused is not None:
                return self._transport
            try:
                self._transport = self._endpoint.open(self.protocol)
            except (OSError, MalformedWebSocket) as exc:
                self._handshake_failed(exc)
                return None
            self._join_user_group(self._transport)
            return self._transport

    def _join_user_group(self, transport: Transport) -> None:
        if self._request is None:
            return
        try:
            user_group, self._session = _groups.identify(self._request)
            if user_group is not None:
                _groups.get_hub().join(self._member(transport), user_group)
        except Exception:  # the connection works without it; say why it is unreachable
            logger.exception("Could not add a WebSocket to its user's group")

    def join(self, group: str) -> None:
        """Join ``group``: from now on, messages broadcast to it reach this client.

        Accepts the connection if it was not yet. Returns once the group's
        messages reach this connection, in every process (with Redis, once this
        process is subscribed). Joining a group twice does nothing; a closed
        connection joins nothing.

        Raises:
            ValueError: for an invalid group name.
            ConnectionClosed: when the connection was refused before the handshake.
        """
        _groups.check_group(group)
        transport = self._open()
        if transport is None:
            raise self._closed_error()
        _groups.get_hub().join(self._member(transport), group)

    def leave(self, group: str) -> None:
        """Leave ``group``; messages broadcast to it no longer reach this client.

        Leaving a group the connection is not in does nothing. A connection
        leaves all its groups when it closes.
        """
        if self._membership is not None:
            _groups.get_hub().leave(self._membership, group)

    def _poll(self) -> Message:
        transport = self._open()
        if transport is None:
            raise self._closed_error()
        return transport.receive(0)

    def wait(self, timeout: float | None = None) -> Message | None:
        """Return the next message, blocking until one arrives.

        Args:
            timeout: seconds to wait at most; ``None`` waits as long as it takes.

        Returns:
            The message, or ``None`` once the client has closed the connection
            (or vanished) and every message received before was handed out.

        Raises:
            TimeoutError: when ``timeout`` elapses before a message arrives.
        """
        if (message := self._take_pending()) is not None:
            return message
        transport = self._open()
        if transport is None:
            return None
        try:
            return transport.receive(timeout)
        except ConnectionClosed:
            return None

    def __iter__(self) -> Iterator[Message]:
        """Yield every message from the client; stop once it closes the connection."""
        while (message := self.wait()) is not None:
            yield message

    def wait_json(self, timeout: float | None = None) -> Any:
        """Wait for one message and decode it as JSON.

        Returns:
            The decoded value, or ``None`` once the connection is closed.

        Raises:
            TimeoutError: when ``timeout`` elapses first.
            ValueError: when the message is not valid JSON.
        """
        message = self.wait(timeout)
        return None if message is None else json.loads(message)

    def send(self, message: object) -> None:
        """Send one message to the client.

        ``str`` goes as a text frame, ``bytes`` (or ``bytearray``, ``memoryview``)
        as a binary frame, anything else as the text of ``str(message)``, as the
        original library did.

        Raises:
            ConnectionClosed: when the connection is already closed.
        """
        data = _as_message(message)
        transport = self._open()
        if transport is None:
            raise self._closed_error()
        transport.send(data)

    def send_json(self, value: Any) -> None:
        """Send ``value`` encoded as JSON, in a text frame."""
        self.send(encode_json(value))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection with ``code`` and ``reason``.

        On WSGI servers this runs the closing handshake and waits for the client
        (bounded by ``WEBSOCKET_CLOSE_TIMEOUT``); under ASGI the server runs it.

        Before the handshake, closing refuses the WebSocket: the client gets an
        HTTP 403 response instead of a connection. Closing twice does nothing.
        """
        with self._accept_lock:
            if self._transport is None:
                if self._refused is None:
                    self._refused = (code, reason)
                return
        self._transport.close(code, reason)


class AsyncWebSocket(_Connection[AsyncTransport]):
    """A WebSocket connection, seen from an ``async def`` view.

    The same names as :class:`WebSocket`, awaited where they wait:
    ``await ws.wait()``, ``await ws.send(...)``, ``async for message in ws``,
    ``await ws.close()``. :meth:`read`, :meth:`count_messages` and
    :meth:`has_messages` never wait and are not awaited; before the handshake
    nothing can have arrived, so they report nothing (they do not accept).
    """

    def __init__(
        self, endpoint: Endpoint, offered_protocols: Sequence[str] = (), max_pending: int = 16
    ) -> None:
        super().__init__(endpoint, offered_protocols, max_pending)
        self._accept_lock = asyncio.Lock()

    async def accept(self) -> None:
        """Send the 101 response now, if it was not sent yet (see :meth:`WebSocket.accept`)."""
        await self._open()

    async def _open(self) -> AsyncTransport | None:
        if self._transport is not None or self._refused is not None:
            return self._transport
        async with self._accept_lock:
            if self._transport is not None or self._refused is not None:
                return self._transport
            try:
                self._transport = await self._endpoint.open_async(self.protocol)
            except (OSError, MalformedWebSocket) as exc:
                self._handshake_failed(exc)
                return None
            await self._join_user_group(self._transport)
            return self._transport

    async def _join_user_group(self, transport: AsyncTransport) -> None:
        if self._request is None:
            return
        try:
            user_group, self._session = await _groups.aidentify(self._request)
            if user_group is not None:
                await _groups.ajoin(self._member(transport), user_group)
        except Exception:  # the connection works without it; say why it is unreachable
            logger.exception("Could not add a WebSocket to its user's group")

    async def join(self, group: str) -> None:
        """Join ``group`` (see :meth:`WebSocket.join`); the broker's I/O runs off the loop."""
        _groups.check_group(group)
        transport = self._transport or await self._open()
        if transport is None:
            raise self._closed_error()
        await _groups.ajoin(self._member(transport), group)

    async def leave(self, group: str) -> None:
        """Leave ``group`` (see :meth:`WebSocket.leave`)."""
        if self._membership is not None:
            _groups.get_hub().leave(self._membership, group)

    def _poll(self) -> Message:
        if self._transport is None:
            raise self._closed_error() if self._refused else TimeoutError("not accepted yet")
        return self._transport.receive_nowait()

    async def wait(self, timeout: float | None = None) -> Message | None:
        """Return the next message, waiting until one arrives.

        Returns ``None`` once the client has closed the connection and every
        message received before was handed out; raises ``TimeoutError`` when
        ``timeout`` seconds elapse first.
        """
        if (message := self._take_pending()) is not None:
            return message
        transport = self._transport or await self._open()
        if transport is None:
            return None
        try:
            return await transport.receive(timeout)
        except ConnectionClosed:
            return None

    async def __aiter__(self) -> AsyncIterator[Message]:
        """Yield every message from the client; stop once it closes the connection."""
        while (message := await self.wait()) is not None:
            yield message

    async def wait_json(self, timeout: float | None = None) -> Any:
        """Wait for one message and decode it as JSON (``None`` once closed)."""
        message = await self.wait(timeout)
        return None if message is None else json.loads(message)

    async def send(self, message: object) -> None:
        """Send one message to the client, typed as :meth:`WebSocket.send` does.

        Raises:
            ConnectionClosed: when the connection is already closed.
        """
        data = _as_message(message)
        transport = self._transport or await self._open()
        if transport is None:
            raise self._closed_error()
        await transport.send(data)

    async def send_json(self, value: Any) -> None:
        """Send ``value`` encoded as JSON, in a text frame."""
        await self.send(encode_json(value))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection with ``code`` and ``reason`` (before accept: refuse with 403)."""
        async with self._accept_lock:
            if self._transport is None:
                if self._refused is None:
                    self._refused = (code, reason)
                return
        await self._transport.close(code, reason)
