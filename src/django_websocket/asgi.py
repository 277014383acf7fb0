"""The ASGI transport: WebSocket views on uvicorn, daphne and hypercorn.

:func:`get_asgi_application` is a drop-in for Django's own. Plain HTTP goes to
Django's ``ASGIHandler`` unchanged. A ``websocket`` scope becomes an ordinary
Django request (method ``GET``, scheme ``https`` behind ``wss``) that goes
through the project's middleware and URL resolver to the decorated view, so
sessions, ``request.user`` and every Origin check work as on WSGI.

The server owns the protocol (framing, keepalive pings, compression); this
module moves ASGI events. One reader task per connection pulls events into a
bounded inbox (``WEBSOCKET_MAX_QUEUE``): past it the task stops pulling and the
server's own flow control pushes back on the client. Messages larger than
``WEBSOCKET_MAX_MESSAGE_SIZE`` close the connection with 1009 whatever the
server allows.

An async view awaits the connection directly. A sync view runs in a thread of
its own (a ``ThreadSensitiveContext`` around the view, see
:meth:`WebSocketASGIHandler.make_view_atomic`) and reaches the event loop
through a :class:`ThreadBridge`. At most ``WEBSOCKET_MAX_SYNC_CONNECTIONS`` sync
views run at once; past that, connections are refused with 503. The sync hooks
of middleware run where asgiref runs thread-sensitive code outside any context,
in one thread for the process, so an async view's connection holds no thread.
"""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import contextvars
import functools
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping
from io import BytesIO
from typing import Any, TypeVar

import django
from asgiref.sync import ThreadSensitiveContext, iscoroutinefunction, sync_to_async
from django.conf import settings
from django.core import signals
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import response_for_exception
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.http import HttpRequest, HttpResponseBase
from django.urls import set_script_prefix, set_urlconf
from django.utils.deprecation import MiddlewareMixin
from django.utils.log import log_response
from django.utils.module_loading import import_string

from . import conf
from .delivery import TOO_SLOW, Outbox, run_close_callbacks
from .exceptions import ConnectionClosed, InvalidState

# ASGIConnection and ThreadBridge are the transport's internals, not public API.
__all__ = ["Slots", "WebSocketASGIHandler", "get_asgi_application"]

logger = logging.getLogger("django_websocket")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[Mapping[str, Any]], Awaitable[None]]
Message = str | bytes


def _send_event(data: Message) -> dict[str, Any]:
    if isinstance(data, str):
        return {"type": "websocket.send", "text": data}
    return {"type": "websocket.send", "bytes": data}


class _Resumed:
    """The rest of an awaitable whose first step was taken by hand.

    ``steps`` is its ``__await__`` iterator and ``waiting_on`` what that step
    yielded (the future it waits for). Awaiting this hands both to the running
    task exactly as ``await`` would have, cancellation included.
    """

    def __init__(self, steps: Any, waiting_on: object) -> None:
        self._steps = steps
        self._waiting_on = waiting_on

    def __await__(self) -> Generator[Any, Any, object]:
        steps, yielded = self._steps, self._waiting_on
        while True:
            try:
                sent = yield yielded
            except GeneratorExit:
                steps.close()
                raise
            except BaseException as exc:  # e.g. a cancellation, for the awaited send
                try:
                    yielded = steps.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    yielded = steps.send(sent)
                except StopIteration as stop:
                    return stop.value


_Result = TypeVar("_Result")

#: How often the loop watch checks that the event loops of sync views still run.
_LOOP_CHECK_INTERVAL = 1.0

#: Set in the context of a connection while Django handles its WebSocket request.
_serving_websocket: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "djws_serving_websocket", default=False
)
#: Set when the whole connection runs in a thread of its own (the test client).
_thread_of_the_connection: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "djws_thread_of_the_connection", default=False
)

#: The ASGI extension that lets an application refuse with a full HTTP response.
DENIAL_EXTENSION = "websocket.http.response"


class Slots:
    """Counts what the process holds for its WebSockets (threads, connections), up to a limit.

    Each sync view holds a thread for as long as its connection lives, and every
    connection holds memory and a file descriptor; an unbounded number of them
    would exhaust the process, and queueing them would leave clients hanging.
    Past the limit :meth:`claim` says no, and the connection is refused (503).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.in_use = 0

    def claim(self, limit: int | None) -> bool:
        """Take a slot if fewer than ``limit`` are in use (``None``: no limit); tell
        whether it was taken."""
        with self._lock:
            if limit is not None and self.in_use >= limit:
                return False
            self.in_use += 1
            return True

    def release(self) -> None:
        """Give a slot back."""
        with self._lock:
            self.in_use -= 1


#: The threads of sync views under ASGI (``WEBSOCKET_MAX_SYNC_CONNECTIONS``).
sync_view_slots = Slots()


class LoopWatch:
    """One thread that tells the sync views waiting on a stopped event loop.

    Some servers (daphne) stop their event loop without a disconnect event; a
    view waiting for it in its thread would keep the process from exiting. One
    watcher checks every loop once a second, so that thousands of waiting views
    sleep until something happens instead of each waking every second.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connections: weakref.WeakSet[ASGIConnection] = weakref.WeakSet()
        self._running = False

    def add(self, connection: ASGIConnection) -> None:
        """Watch the loop of ``connection`` until :meth:`discard`."""
        with self._lock:
            self._connections.add(connection)
            if not self._running:
                self._running = True
                threading.Thread(target=self._watch, name="djws-loop-watch", daemon=True).start()

    def discard(self, connection: ASGIConnection) -> None:
        """Stop watching ``connection``."""
        with self._lock:
            self._connections.discard(connection)

    def _watch(self) -> None:
        while True:
            time.sleep(_LOOP_CHECK_INTERVAL)
            with self._lock:
                connections = list(self._connections)
                if not connections:
                    self._running = False
                    return
            for connection in connections:
                if not connection._loop.is_running():
                    self.discard(connection)
                    connection._loop_stopped()


loop_watch = LoopWatch()


class ASGIConnection:
    """One ``websocket`` scope, as the connection a view talks through.

    It is the transport behind ``request.websocket``: async views await its
    methods on the event loop; sync views go through :meth:`open` and the
    :class:`ThreadBridge` it returns. It turns ASGI events into messages and
    closes, and the server's errors into
    :class:`~django_websocket.exceptions.ConnectionClosed`.
    """

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        self._loop = asyncio.get_running_loop()
        limits = conf.engine_limits()
        self._max_size = limits.max_message_size
        self._max_queue = limits.max_queue
        self._send_timeout = limits.send_timeout
        self.close_timeout = limits.close_timeout
        # ASGI 2.3 added close reasons; the servers older than that (daphne) send
        # no reason and refuse close codes an application may not send itself.
        spec_version = (scope.get("asgi") or {}).get("spec_version", "2.0")
        self._legacy_close = tuple(map(int, spec_version.split("."))) < (2, 3)
        self.subprotocol: str | None = None
        self.accepted = False
        self.holds_thread_slot = False
        # Shared with the view's thread when the view is sync (then guarded by the
        # lock); an async view's connection never takes the lock. What only a sync
        # view needs is made by open(), and the inbox exists only while it holds
        # messages: thousands of idle connections must not each carry a condition
        # and empty queues (an empty deque keeps a 64-slot block).
        self._inbox: deque[Message] | None = None
        self._lock = threading.Lock()
        self._arrived: threading.Condition | None = None
        self._threaded = False
        # The bare locks of ThreadBridge.run calls waiting for the loop, and whether
        # the loop watch found the loop stopped.
        self._pending_runs: set[_thread.LockType] | None = None
        self._loop_gone = False
        self._close_info: tuple[int | None, str] = (None, "")
        self._closing = False
        # Every task waiting in receive(): each re-checks the inbox when woken.
        self._waiters: set[asyncio.Future[None]] = set()
        # Made when the inbox first fills up (see _read_events).
        self._space: asyncio.Event | None = None
        self._reader: asyncio.Task[None] | None = None
        # The send bound: one timer per connection, not one per message.
        self._sends_in_flight: dict[asyncio.Task[Any], float] = {}
        self._send_expired = False
        self._watchdog: asyncio.TimerHandle | None = None
        # Group messages wait here for the drain task (see django_websocket.groups).
        self._outbox = Outbox(conf.get("WEBSOCKET_GROUP_QUEUE"))
        self._drainer: asyncio.Task[None] | None = None
        self._close_callbacks: list[Callable[[], None]] = []

    # ---- handshake ---------------------------------------------------------------------

    @property
    def offered_subprotocols(self) -> list[str]:
        """The subprotocols the client offered (servers may strip the header itself)."""
        return list(self.scope.get("subprotocols") or ())

    @property
    def supports_denial(self) -> bool:
        """Whether the server can refuse with a full HTTP response (else only 403)."""
        return DENIAL_EXTENSION in (self.scope.get("extensions") or {})

    def claim_sync_view(self) -> bool:
        """Reserve one of the process's threads for a sync view; ``False`` when none is left."""
        if not self.holds_thread_slot:
            limit = conf.get("WEBSOCKET_MAX_SYNC_CONNECTIONS")
            self.holds_thread_slot = sync_view_slots.claim(limit)
        return self.holds_thread_slot

    async def open_async(self, subprotocol: str | None) -> ASGIConnection:
        """Accept the WebSocket with ``subprotocol`` and start reading from it.

        Raises:
            ConnectionResetError: when the connection closed before the handshake
                (the server is stopping); the view then sees a closed WebSocket.
        """
        if not self.accepted and self.closed:
            raise ConnectionResetError("the connection closed before the handshake")
        if not self.accepted:
            await self._send({"type": "websocket.accept", "subprotocol": subprotocol})
            self.accepted = True
            self.subprotocol = subprotocol
            self._reader = asyncio.create_task(self._read_events())
            if self._send_timeout is not None:
                # In an empty context: a cancelled timer stays queued until it is due, and
                # must not keep the connection's context (asgiref's thread-sensitive
                # context and locals) alive for send_timeout after the connection ended.
                self._watchdog = self._loop.call_later(
                    self._send_timeout, self._check_send, context=contextvars.Context()
                )
        return self

    def open(self, subprotocol: str | None) -> ThreadBridge:
        """Accept from a sync view's thread; return the blocking side of the connection."""
        if self._arrived is None:
            self._arrived = threading.Condition(self._lock)
            self._pending_runs = set()
        self._threaded = True
        loop_watch.add(self)
        bridge = ThreadBridge(self)
        bridge.run(self.open_async(subprotocol))
        return bridge

    async def deny(self, response: HttpResponseBase) -> None:
        """Refuse the WebSocket with ``response`` (or a bare 403 where the server cannot)."""
        if not self.supports_denial:
            # ASGI: a close before the accept makes the server answer 403.
            await self._send({"type": "websocket.close", "code": 1008})
            return
        await self._send(
            {
                "type": "websocket.http.response.start",
                "status": response.status_code,
                "headers": response_headers(response),
            }
        )
        body = b"" if response.streaming else response.content  # type: ignore[attr-defined]
        await self._send({"type": "websocket.http.response.body", "body": body})

    # ---- receiving ---------------------------------------------------------------------

    async def _read_events(self) -> None:
        try:
            while True:
                if self._queued() >= self._max_queue:
                    if self._space is None:
                        self._space = asyncio.Event()
                    self._space.clear()
                    if self._queued() >= self._max_queue:
                        await self._space.wait()
                    continue
                event = await self._receive()
                kind = event["type"]
                if kind == "websocket.receive":
                    message = event.get("text")
                    if message is None:
                        message = event.get("bytes") or b""
                    if self._too_big(message):
                        await self.close(1009, "message too big")
                        return
                    with self._lock:
                        self._put(message)
                        if self._arrived is not None:
                            self._arrived.notify()
                    self._wake()
                elif kind == "websocket.disconnect":
                    self._set_closed(event.get("code", 1005), event.get("reason") or "")
                    return
        except Exception as exc:  # the server failed: the connection is gone either way
            logger.debug("ASGI receive failed: %r", exc)
            self._set_closed(1006, "")

    def _too_big(self, message: Message) -> bool:
        limit = self._max_size
        if limit is None or len(message) <= limit // 4:
            return False
        size = len(message.encode()) if isinstance(message, str) else len(message)
        return size > limit

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _loop_stopped(self) -> None:
        # From the loop watch: the loop is gone, so nothing will wake the view's thread.
        with self._lock:
            self._loop_gone = True
            if self._close_info[0] is None:
                self._close_info = (1006, "")
            pending, self._pending_runs = self._pending_runs or set(), set()
            self._notify_thread()
        for done in pending:
            with contextlib.suppress(RuntimeError):  # released by the task after all
                done.release()
        self._run_close_callbacks()

    def _notify_thread(self) -> None:
        # With self._lock held: wakes a sync view's thread, if there is one.
        if self._arrived is not None:
            self._arrived.notify_all()

    def _set_closed(self, code: int, reason: str) -> None:
        with self._lock:
            if self._close_info[0] is None:
                self._close_info = (code, reason)
            self._notify_thread()
        self._wake()
        self._run_close_callbacks()

    def _queued(self) -> int:
        # The reader asks without the lock: a sync view's thread may drop the inbox.
        inbox = self._inbox
        return len(inbox) if inbox is not None else 0

    def _put(self, message: Message) -> None:
        # Called with self._lock held: a take from another thread may drop the inbox.
        if self._inbox is None:
            self._inbox = deque()
        self._inbox.append(message)

    def _take(self) -> Message:
        # Called with self._lock held (sync views), or on the loop (async views).
        inbox = self._inbox
        assert inbox, "called when a message is waiting"
        message = inbox.popleft()
        if not inbox:
            self._inbox = None
        if len(inbox) == self._max_queue - 1 and self._space is not None:
            if self._threaded:  # taken by the view's thread, off the loop
                self._loop.call_soon_threadsafe(self._space.set)
            else:
                self._space.set()
        return message

    def receive_nowait(self) -> Message:
        """Return a message that has already arrived.

        Raises:
            TimeoutError: when none is waiting.
            ConnectionClosed: once the connection is closed and drained.
        """
        with self._lock:
            if self._inbox:
                return self._take()
            if self._close_info[0] is not None:
                raise ConnectionClosed(*self._close_info)
        raise TimeoutError("no message waiting")

    async def receive(self, timeout: float | None) -> Message:
        """Return the next message, waiting at most ``timeout`` seconds.

        Raises:
            TimeoutError: when ``timeout`` elapses first.
            ConnectionClosed: once the connection is closed and drained.
        """
        while not self._inbox:
            if self._close_info[0] is not None:
                raise ConnectionClosed(*self._close_info)
            if timeout is not None and timeout <= 0:
                raise TimeoutError("no message waiting")
            waiter = self._loop.create_future()
            self._waiters.add(waiter)
            try:
                if timeout is None:
                    await waiter
                else:
                    async with asyncio.timeout(timeout):
                        await waiter
            finally:
                self._waiters.discard(waiter)
        if self._threaded:
            with self._lock:
                return self._take()
        return self._take()

    # ---- sending and closing -----------------------------------------------------------

    async def send(self, data: Message) -> None:
        """Send one message (``str`` as text, ``bytes`` as binary).

        Raises:
            ConnectionClosed: once the connection is closed or the server says it is.
        """
        if self._close_info[0] is not None or self._closing:
            raise ConnectionClosed(*self._close_info)
        await self._bounded_send(self._send(_send_event(data)))

    async def _bounded_send(self, sending: Awaitable[object]) -> None:
        # Runs one ASGI send under the watchdog, and turns the server's errors into ours.
        task = asyncio.current_task()
        if task is not None:
            self._sends_in_flight[task] = self._loop.time()
        try:
            await sending
        except asyncio.CancelledError:
            if not self._send_expired or task is None:
                raise
            task.uncancel()  # our watchdog's cancel, not the caller's
            raise ConnectionClosed(*self._close_info) from None
        except Exception as exc:  # ASGI 2.4: an OSError; older servers raise others
            self._set_closed(1006, "")
            raise ConnectionClosed(*self._close_info) from exc
        finally:
            if task is not None:
                self._sends_in_flight.pop(task, None)

    def _check_send(self) -> None:
        # A client that stops reading must not hold a view forever, whatever the
        # server's keepalive does: a send stuck for the keepalive bound (as on WSGI,
        # checked every half of it) ends the connection.
        assert self._send_timeout is not None
        now = self._loop.time()
        if any(now - started >= self._send_timeout for started in self._sends_in_flight.values()):
            self._send_expired = True
            self._set_closed(1006, "")
            for task in self._sends_in_flight:
                task.cancel()
        elif self._close_info[0] is None:
            self._watchdog = self._loop.call_later(
                self._send_timeout / 2, self._check_send, context=contextvars.Context()
            )

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame with ``code`` and ``reason``; the server finishes the handshake.

        The send is bounded by ``WEBSOCKET_CLOSE_TIMEOUT``; ``close_info`` is ours from
        here on (the server does not report the client's answering code).
        """
        if self._closing or self._close_info[0] is not None:
            return
        self._closing = True
        sent = code
        if self._legacy_close and code != 1000 and not 3000 <= code <= 4999:
            # Autobahn (daphne) drops other codes silently and the connection would
            # stay open: 1011 goes out as 4011, 1009 as 4009.
            sent = 4000 + code % 1000
        # The client may be gone already, or may have stopped reading: bounded.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.close_timeout):
                await self._send({"type": "websocket.close", "code": sent, "reason": reason})
        self._set_closed(code, reason)

    @property
    def closed(self) -> bool:
        """Whether the connection is closing or closed."""
        return self._closing or self._close_info[0] is not None

    @property
    def close_info(self) -> tuple[int | None, str]:
        """The close code and reason, ``(None, "")`` while open."""
        return self._close_info

    # ---- group messages ----------------------------------------------------------------

    @property
    def deliverer(self) -> ASGIConnection:
        """Where group messages for this connection go: the connection itself."""
        return self

    @property
    def delivery_loop(self) -> asyncio.AbstractEventLoop:
        """The event loop :meth:`deliver` and :meth:`kick` must be called on."""
        return self._loop

    def deliver(self, message: Message) -> None:
        """Queue a group message for the client without waiting (on the event loop).

        A client that stays over ``WEBSOCKET_GROUP_QUEUE`` waiting messages (see
        :class:`~django_websocket.delivery.Outbox`) is closed with 1013 (try again
        later): it must not hold back its groups.
        """
        if self.closed or self._outbox.closed:
            return  # closed, or kicked and closing
        if self._drainer is None and not self._outbox:
            self._send_eagerly(message)
            return
        if not self._outbox.put(message):
            logger.warning("%s", self._outbox.overflow_report(self.scope.get("path", "")))
            self.kick(*TOO_SLOW)
            return
        if self._drainer is None:
            self._drainer = self._loop.create_task(self._drain_outbox())

    def _send_eagerly(self, message: Message) -> None:
        # A broadcast reaches hundreds of members at once; a task for each would
        # cost more than the write. Servers take a frame without waiting unless the
        # client reads slowly, so the send's first step runs here, and only a send
        # that has to wait becomes the drain task (then the outbox fills behind it).
        steps = self._send(_send_event(message)).__await__()
        try:
            waiting_on = steps.send(None)
        except StopIteration:
            return
        except Exception:
            logger.debug("A group message found the connection closed", exc_info=True)
            self._set_closed(1006, "")
            self._outbox.close()
            return
        self._drainer = self._loop.create_task(self._drain_outbox(_Resumed(steps, waiting_on)))

    async def _drain_outbox(self, unfinished: Awaitable[object] | None = None) -> None:
        try:
            if unfinished is not None:
                await self._bounded_send(unfinished)
            while (message := self._outbox.take()) is not None:
                await self.send(message)
        except ConnectionClosed:
            self._outbox.close()
        finally:
            self._drainer = None

    def kick(self, code: int, reason: str) -> None:
        """Close the connection from outside its view, without waiting (on the event loop)."""
        self._outbox.close()
        if not self.closed:
            self._loop.create_task(self._close_from_outside(code, reason))

    async def _close_from_outside(self, code: int, reason: str) -> None:
        if self._drainer is not None:
            self._drainer.cancel()  # its send may wait on a client that does not read
        await self.close(code, reason)

    def add_close_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the connection is closed (at once if it is already)."""
        self._close_callbacks.append(callback)
        if self._close_info[0] is not None:
            self._run_close_callbacks()

    def _run_close_callbacks(self) -> None:
        # From the loop, or from a sync view's thread when the loop is gone.
        callbacks, self._close_callbacks = self._close_callbacks, []
        run_close_callbacks(callbacks)

    async def finish(self) -> None:
        """Stop reading and give back the thread slot; the view has returned."""
        self._outbox.close()
        self._run_close_callbacks()
        if self._watchdog is not None:
            self._watchdog.cancel()
        try:
            if self._reader is not None and not self._reader.done():
                self._reader.cancel()
                try:
                    await self._reader
                except asyncio.CancelledError:
                    current = asyncio.current_task()
                    if current is not None and current.cancelling():
                        raise  # the server cancelled us too, not only the reader
        finally:
            if self._threaded:
                loop_watch.discard(self)
            if self.holds_thread_slot:
                self.holds_thread_slot = False
                sync_view_slots.release()


class ThreadBridge:
    """The blocking side of an :class:`ASGIConnection`, for a sync view's thread.

    Receiving waits on a condition the reader task signals, so a message costs
    no trip through the event loop; sending and closing run on the loop.
    """

    def __init__(self, connection: ASGIConnection) -> None:
        self._connection = connection
        self._loop = connection._loop

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol sent in the handshake."""
        return self._connection.subprotocol

    def run(self, coroutine: Coroutine[Any, Any, _Result]) -> _Result:
        """Run ``coroutine`` on the connection's event loop and wait for its result.

        Raises:
            ConnectionClosed: when the event loop stopped (the server is gone).
        """
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            coroutine.close()
            raise InvalidState(
                "the blocking WebSocket API was called on the event loop; "
                "use an async view, which gets AsyncWebSocket"
            )
        if not self._loop.is_running():
            coroutine.close()
            raise self._server_gone()
        # Cheaper than run_coroutine_threadsafe (no concurrent Future, no chained
        # callbacks): the task's completion releases a bare lock the thread waits on.
        finished: list[asyncio.Task[_Result]] = []
        done = _thread.allocate_lock()
        done.acquire()

        def on_done(task: asyncio.Task[_Result]) -> None:
            finished.append(task)
            done.release()

        def start() -> None:
            self._loop.create_task(coroutine).add_done_callback(on_done)

        connection = self._connection
        with connection._lock:
            if connection._loop_gone or connection._pending_runs is None:
                coroutine.close()
                raise self._server_gone()
            connection._pending_runs.add(done)
        try:
            self._loop.call_soon_threadsafe(start)
        except RuntimeError:  # the loop is closed
            coroutine.close()
            with connection._lock:
                connection._pending_runs.discard(done)
            raise self._server_gone() from None
        # Released by the task, or by the loop watch; the view may also outlive its
        # connection's watch (a server that cancels it), so check the loop meanwhile.
        while not done.acquire(timeout=_LOOP_CHECK_INTERVAL):
            if not self._loop.is_running():
                break
        with connection._lock:
            connection._pending_runs.discard(done)
        if not finished:
            raise self._server_gone()
        return finished[0].result()

    def _server_gone(self) -> ConnectionClosed:
        # The event loop stopped: the connection is over, without a close frame.
        connection = self._connection
        with connection._lock:
            if connection._close_info[0] is None:
                connection._close_info = (1006, "")
        return ConnectionClosed(*connection.close_info)

    def receive(self, timeout: float | None) -> Message:
        """Return the next message.

        Raises:
            TimeoutError: when ``timeout`` elapses first (0 means "only if waiting").
            ConnectionClosed: once the connection is closed and drained.
        """
        connection = self._connection
        deadline = None if timeout is None else time.monotonic() + timeout
        arrived = connection._arrived
        assert arrived is not None, "made by ASGIConnection.open"
        with arrived:
            while not connection._inbox and connection._close_info[0] is None:
                remaining = None
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                # Woken by a message, a close, or the loop watch (see LoopWatch).
                arrived.wait(remaining)
        return connection.receive_nowait()

    def send(self, data: Message) -> None:
        """Send one message; raise ConnectionClosed once closed."""
        self.run(self._connection.send(data))

    def close(self, code: int, reason: str) -> None:
        """Send a close frame; the server finishes the closing handshake."""
        self.run(self._connection.close(code, reason))

    @property
    def deliverer(self) -> ASGIConnection:
        """Where group messages go: the connection, on its event loop."""
        return self._connection

    @property
    def closed(self) -> bool:
        """Whether the connection is closing or closed."""
        return self._connection.closed

    @property
    def close_info(self) -> tuple[int | None, str]:
        """The close code and reason, ``(None, "")`` while open."""
        return self._connection.close_info


def response_headers(response: HttpResponseBase) -> list[tuple[bytes, bytes]]:
    """The headers of ``response`` as ASGI wants them, cookies included."""
    headers = [(name.encode("ascii"), value.encode("latin-1")) for name, value in response.items()]
    headers.extend(
        (b"Set-Cookie", cookie.OutputString().encode("ascii"))
        for cookie in response.cookies.values()
    )
    return headers


def _http_scope(scope: Scope) -> dict[str, Any]:
    # Django's ASGIRequest wants an HTTP scope: a method, and an http(s) scheme so
    # that is_secure() and build_absolute_uri() are right behind wss://.
    scheme = "https" if scope.get("scheme") == "wss" else "http"
    return {**scope, "type": "http", "method": "GET", "scheme": scheme}


class FusedMiddleware:
    """Consecutive ``MiddlewareMixin`` middleware, their hooks run in one thread hop each way.

    Under ASGI, Django runs every ``process_request`` and ``process_response``
    hook of a ``MiddlewareMixin`` (every middleware Django ships) through its own
    ``sync_to_async`` call: about fifteen trips to a thread and back for the
    default ``MIDDLEWARE``, which costs a WebSocket handshake more than
    everything else together. This runs the hooks of a run of such middleware
    in one call each way, in the same order, in the same thread, with the same
    rules: a hook that returns a response skips the inner layers, and an
    exception becomes a response where Django's handler would turn it into one.

    The request's own sync work rides along: ``before`` runs first in the
    first hop (``request_started``) and ``after`` last in the second (the end of
    the request), each once.
    """

    def __init__(
        self,
        layers: tuple[MiddlewareMixin, ...],
        inner: Callable[..., Any],
        *,
        before: Callable[[HttpRequest], object] | None = None,
        after: Callable[[HttpRequest, HttpResponseBase], object] | None = None,
    ) -> None:
        self.layers = layers
        self.inner = inner
        self.before = before
        self.after = after

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        """Run the request hooks, the inner layers (unless a hook answered), the response hooks."""
        response, entered = await sync_to_async(self._requests)(request)
        if response is None:
            response = await self.inner(request)
        result: HttpResponseBase = await sync_to_async(self._responses)(request, response, entered)
        return result

    def _requests(self, request: HttpRequest) -> tuple[HttpResponseBase | None, int]:
        # Returns a response (or None) and how many layers see it on the way out.
        if self.before is not None:
            self.before(request)
        for depth, layer in enumerate(self.layers):
            hook = getattr(layer, "process_request", None)
            if hook is None:
                continue
            try:
                response = hook(request)
            except Exception as exc:
                return response_for_exception(request, exc), depth
            if response is not None:
                return response, depth + 1
        return None, len(self.layers)

    def _responses(
        self, request: HttpRequest, response: HttpResponseBase, entered: int
    ) -> HttpResponseBase:
        for layer in reversed(self.layers[:entered]):
            hook = getattr(layer, "process_response", None)
            if hook is None:
                continue
            try:
                response = hook(request, response)
            except Exception as exc:
                response = response_for_exception(request, exc)
        if self.after is not None:
            try:
                self.after(request, response)
            except Exception:  # as in Django's handler, it cannot change the response
                logger.exception("Ending the request of a WebSocket failed")
        return response


def _plain_mixin(handler: Callable[..., Any]) -> MiddlewareMixin | None:
    # The middleware that Django's exception wrapper around ``handler`` calls, when
    # it behaves exactly as MiddlewareMixin does (nothing of its call overridden).
    layer = getattr(handler, "__wrapped__", None)
    if (
        isinstance(layer, MiddlewareMixin)
        and type(layer).__call__ is MiddlewareMixin.__call__
        and type(layer).__acall__ is MiddlewareMixin.__acall__
    ):
        return layer
    return None


def fuse_middleware(
    chain: Callable[..., Any],
    *,
    before: Callable[[HttpRequest], object] | None = None,
    after: Callable[[HttpRequest, HttpResponseBase], object] | None = None,
) -> Callable[..., Any]:
    """Return ``chain`` with its outer run of plain ``MiddlewareMixin`` layers fused.

    ``before`` and ``after`` join the fused hops (see :class:`FusedMiddleware`);
    a chain left as it is does not run them.
    """
    layers: list[MiddlewareMixin] = []
    inner = chain
    while (layer := _plain_mixin(inner)) is not None:
        layers.append(layer)
        inner = layer.get_response
    if len(layers) < 2:
        return chain
    return FusedMiddleware(tuple(layers), inner, before=before, after=after)


class WebSocketASGIHandler(ASGIHandler):
    """Django's ASGI handler, extended to ``websocket`` and ``lifespan`` scopes."""

    def load_middleware(self, is_async: bool = False) -> None:
        """Build Django's middleware chain, and the same chain with fused hooks for WebSockets.

        A WebSocket request goes through the same middleware, in the same order,
        as HTTP; only the trips to a thread are fewer (see :class:`FusedMiddleware`).
        """
        super().load_middleware(is_async)
        chain: Callable[..., Any] = self._middleware_chain  # type: ignore[attr-defined]
        self._websocket_chain = (
            fuse_middleware(chain, before=self._start_request, after=self._end_request)
            if is_async
            else chain
        )
        # A middleware that cannot run async holds a thread for as long as the view
        # below it runs: each connection then needs a thread of its own.
        self._thread_per_connection = any(
            not getattr(import_string(path), "async_capable", False) for path in settings.MIDDLEWARE
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        """Serve one ASGI connection: HTTP as Django does, WebSockets through views."""
        kind = scope["type"]
        if kind == "websocket":
            await self.serve_websocket(scope, receive, send)
        elif kind == "lifespan":
            await self.handle_lifespan(receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def handle_lifespan(self, receive: Receive, send: Send) -> None:
        """Acknowledge start-up and shutdown; Django has nothing to run at either."""
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif event["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def serve_websocket(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        shared_connections: Mapping[str, BaseDatabaseWrapper] | None = None,
    ) -> None:
        """Serve one ``websocket`` scope.

        The sync code of the middleware runs where asgiref runs thread-sensitive
        code by default: one thread for the process. It is short (it runs while
        the handshake is answered and when the connection ends), and a thread per
        connection would sit idle for as long as the connection lives. Only a
        sync view gets a thread of its own (see :meth:`make_view_atomic`).

        The whole connection runs in one thread of its own instead when a
        middleware cannot run async (it holds its thread while the view runs),
        and with ``shared_connections``, which is for :mod:`django_websocket.test`:
        that thread then uses these database connections (a test's, inside its
        transaction) and leaves them open.
        """
        if shared_connections is None and not self._thread_per_connection:
            await self.handle_websocket(scope, receive, send)
            return
        async with ThreadSensitiveContext():
            if shared_connections is not None:
                await sync_to_async(_use_connections)(shared_connections)
            token = _thread_of_the_connection.set(True)
            try:
                await self.handle_websocket(scope, receive, send)
            finally:
                _thread_of_the_connection.reset(token)

    def make_view_atomic(self, view: Callable[..., Any]) -> Callable[..., Any]:
        """Django's hook around the view; a sync WebSocket view also gets its own thread.

        A sync WebSocket view holds its thread for as long as its connection
        lives, so it cannot run in the thread that the other connections share.
        """
        view = super().make_view_atomic(view)
        if not _serving_websocket.get() or iscoroutinefunction(view):
            return view
        return _in_a_thread_of_its_own(view)

    async def handle_websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run one WebSocket connection through Django's middleware and the view."""
        if (await receive())["type"] != "websocket.connect":
            return  # the client left before the handshake
        serving = _serving_websocket.set(True)
        try:
            await self._handle_connected(scope, receive, send)
        finally:
            _serving_websocket.reset(serving)

    async def _handle_connected(self, scope: Scope, receive: Receive, send: Send) -> None:
        set_script_prefix(get_script_prefix(scope))
        connection = ASGIConnection(scope, receive, send)
        request, response = self.create_request(_http_scope(scope), BytesIO())
        # A fused chain starts and ends the request in its own trips to a thread.
        fused = request is not None and isinstance(self._websocket_chain, FusedMiddleware)
        if not fused:
            await signals.request_started.asend(sender=self.__class__, scope=scope)
        try:
            if request is not None:
                request.websocket_transport = connection  # type: ignore[attr-defined]
                response = await self._run_view(request, connection)
            if not connection.accepted:
                # 101 without an accept: the client left during the handshake.
                if response is not None and response.status_code != 101:
                    await connection.deny(response)
            elif not connection.closed:
                # Only an exception that no WebSocket code handled gets here as a 500.
                failed = response is not None and response.status_code >= 500
                await connection.close(1011 if failed else 1000)
        finally:
            try:
                await connection.finish()
            finally:
                if request is None or not getattr(request, "_websocket_ended", False):
                    # Shielded: a server that cancels us (hypercorn) must not skip it.
                    await asyncio.shield(sync_to_async(self._end_request)(request, response))

    def _start_request(self, request: HttpRequest) -> None:
        # In a thread: what Django's handler does first, with the WebSocket's own scope.
        scope = request.websocket_transport.scope  # type: ignore[attr-defined]
        signals.request_started.send(sender=self.__class__, scope=scope)

    def _end_request(self, request: HttpRequest | None, response: HttpResponseBase | None) -> None:
        # In a thread, once: request_finished closes what Django closes after a request.
        if request is not None:
            if getattr(request, "_websocket_ended", False):
                return
            request._websocket_ended = True  # type: ignore[attr-defined]
        if response is None:
            signals.request_finished.send(sender=self.__class__)
            return
        response._handler_class = self.__class__  # type: ignore[attr-defined]
        if request is not None:
            response._resource_closers.append(request.close)  # type: ignore[attr-defined]
        response.close()

    async def _get_websocket_response(self, request: HttpRequest) -> HttpResponseBase:
        # Django's get_response_async, through the chain with fused hooks.
        set_urlconf(settings.ROOT_URLCONF)
        response: HttpResponseBase = await self._websocket_chain(request)
        if response.status_code >= 400:
            await sync_to_async(log_response, thread_sensitive=False)(
                "%s: %s",
                response.reason_phrase,
                request.path,
                response=response,  # type: ignore[arg-type]
                request=request,
            )
        return response

    async def _run_view(self, request: HttpRequest, connection: ASGIConnection) -> HttpResponseBase:
        view = asyncio.ensure_future(self._get_websocket_response(request))
        try:
            return await asyncio.shield(view)
        except asyncio.CancelledError:
            # A server that cancels applications when it stops (hypercorn): the view sees
            # its connection closed (1001, going away) and gets the close timeout to end.
            await connection.close(1001, "server shutting down")
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(view, connection.close_timeout)
            raise


def _use_connections(shared: Mapping[str, BaseDatabaseWrapper]) -> None:
    # In the connection's thread, before anything else runs there.
    for alias, connection in shared.items():
        connections[alias] = connection


def _in_a_thread_of_its_own(view: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(view)
    async def run(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        if _thread_of_the_connection.get():
            return await sync_to_async(view)(request, *args, **kwargs)
        # The outermost context: asgiref gives it a thread, ended on exit.
        async with ThreadSensitiveContext():
            try:
                return await sync_to_async(view)(request, *args, **kwargs)
            finally:
                # The thread ends with the view: nothing it opened may stay open.
                await sync_to_async(connections.close_all)()

    return run


def get_asgi_application() -> WebSocketASGIHandler:
    """Return the ASGI application of the project: HTTP and WebSockets.

    Use it where Django's ``get_asgi_application`` was, in the project's
    ``asgi.py``::

        from django_websocket.asgi import get_asgi_application
        application = get_asgi_application()

    and serve it with ``uvicorn project.asgi:application`` (or daphne, or hypercorn).
    """
    django.setup(set_prefix=False)
    return WebSocketASGIHandler()
