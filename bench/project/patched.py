"""EXPERIMENT, not the library: the per-message fixes suggested for asgi.py, applied
by monkeypatching ``django_websocket.asgi.ASGIConnection`` so their effect can be
measured (``asgi_echo.py --only dw-async,dw-async-patched,...``).

BENCH_PATCH (comma-separated) picks the fixes:

* ``notimeout``: ``receive()`` awaits the waiter directly when ``timeout`` is
  None instead of entering ``asyncio.timeout(None)`` (a Timeout object,
  ``current_task()``, two extra awaits per message).
* ``nolock``: while no sync view's thread shares the connection (async views),
  the reader task and ``receive()`` skip the ``threading.Condition`` (acquire,
  release, ``notify()``) and ``_take()`` skips ``get_running_loop()``.
* ``direct``: an async view that is waiting with an empty inbox pulls the next
  ASGI event itself (one task wake-up per message instead of two: no hop
  through the reader task); the reader task is started only for a sync view or
  the first non-blocking read (``read``/``has_messages``/``count_messages``).
* ``nosendtimeout``: ``send()`` without the ``asyncio.timeout(send_timeout)``
  around every ``websocket.send`` (to price it; a real fix keeps the bound
  but arms no timer per message, see the report).
* ``bridge`` (sync views): ``ThreadBridge.run`` starts the coroutine as a Task
  from ``call_soon_threadsafe`` and wakes the thread with a bare ``_thread``
  lock, instead of ``run_coroutine_threadsafe`` (a Task, an
  asyncio Future, a concurrent Future, ``_chain_future`` callbacks and a
  ``threading.Condition``). A coroutine that does suspend continues as a Task.
* ``sendnowait`` (sync views, with ``bridge``): ``ThreadBridge.send`` queues the
  send on the loop and returns without waiting for it (FIFO, so order holds;
  an error surfaces on the next call). Measures what the third thread hand-off
  per message costs; a real version needs a bound on sends in flight.

Relies on private names of asgi.py as of git 9403faa + working tree: it is a
measurement aid, and may need updating when asgi.py changes.
"""

from __future__ import annotations

import _thread
import asyncio
import os

from django_websocket import asgi as dw
from django_websocket.exceptions import ConnectionClosed, InvalidState

PATCHES = {p for p in os.environ.get("BENCH_PATCH", "notimeout,nolock").split(",") if p}


class FastConnection(dw.ASGIConnection):
    _bridged = False

    def open(self, subprotocol):
        self._bridged = True  # a sync view's thread shares the inbox from now on
        if "direct" in PATCHES and self.accepted and self._reader is None:
            self._reader = asyncio.run_coroutine_threadsafe(self._start_reader(), self._loop).result()
        return super().open(subprotocol)

    async def _start_reader(self):
        return asyncio.create_task(self._read_events())

    async def open_async(self, subprotocol):
        if "direct" not in PATCHES or self._bridged:
            return await super().open_async(subprotocol)
        if not self.accepted:
            await self._send({"type": "websocket.accept", "subprotocol": subprotocol})
            self.accepted = True
            self.subprotocol = subprotocol
        return self

    def _push(self, message) -> None:
        if self._bridged or "nolock" not in PATCHES:
            with self._arrived:
                self._inbox.append(message)
                self._arrived.notify()
        else:
            self._inbox.append(message)
        self._wake()

    async def _read_events(self) -> None:
        try:
            while True:
                if len(self._inbox) >= self._max_queue:
                    self._space.clear()
                    if len(self._inbox) >= self._max_queue:
                        await self._space.wait()
                    continue
                if not await self._handle(await self._receive()):
                    return
        except Exception:
            self._set_closed(1006, "")

    async def _handle(self, event) -> bool:
        kind = event["type"]
        if kind == "websocket.receive":
            message = event.get("text")
            if message is None:
                message = event.get("bytes") or b""
            if self._too_big(message):
                await self.close(1009, "message too big")
                return False
            self._push(message)
        elif kind == "websocket.disconnect":
            self._set_closed(event.get("code", 1005), event.get("reason") or "")
            return False
        return True

    def _take(self):
        message = self._inbox.popleft()
        if len(self._inbox) == self._max_queue - 1:
            if not self._bridged:
                self._space.set()
            elif self._loop_is_here():
                self._space.set()
            else:
                self._loop.call_soon_threadsafe(self._space.set)
        return message

    def receive_nowait(self):
        if "direct" in PATCHES and self._reader is None and self.accepted and not self._bridged:
            self._reader = asyncio.create_task(self._read_events())
        return super().receive_nowait()

    if "nosendtimeout" in PATCHES:

        async def send(self, data):
            if self._close_info[0] is not None or self._closing:
                raise ConnectionClosed(*self._close_info)
            key = "text" if isinstance(data, str) else "bytes"
            try:
                await self._send({"type": "websocket.send", key: data})
            except Exception as exc:
                self._set_closed(1006, "")
                raise ConnectionClosed(*self._close_info) from exc

    async def receive(self, timeout):
        inbox = self._inbox
        if not inbox and "direct" in PATCHES and self._reader is None and self.accepted:
            # Nobody else reads: pull the next event on this task.
            if self._close_info[0] is not None:
                raise ConnectionClosed(*self._close_info)
            if timeout is not None and timeout <= 0:
                raise TimeoutError("no message waiting")
            try:
                if timeout is None:
                    event = await self._receive()
                else:
                    # A timeout must not lose an event half-received: fall back to a reader.
                    self._reader = asyncio.create_task(self._read_events())
                    return await self.receive(timeout)
            except (asyncio.CancelledError, TimeoutError):
                raise
            except Exception:
                self._set_closed(1006, "")
                raise ConnectionClosed(*self._close_info) from None
            if not await self._handle(event) and not inbox:
                raise ConnectionClosed(*self._close_info)
        while not inbox:
            if self._close_info[0] is not None:
                raise ConnectionClosed(*self._close_info)
            if timeout is not None and timeout <= 0:
                raise TimeoutError("no message waiting")
            waiter = self._waiter = self._loop.create_future()
            try:
                if timeout is None and "notimeout" in PATCHES:
                    await waiter
                else:
                    async with asyncio.timeout(timeout):
                        await waiter
            finally:
                self._waiter = None
        if self._bridged or "nolock" not in PATCHES:
            with self._arrived:
                return self._take()
        return self._take()


dw.ASGIConnection = FastConnection  # handle_websocket looks the name up per connection


def _bridge_run(self, coroutine):
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is self._loop:
        coroutine.close()
        raise InvalidState("the blocking WebSocket API was called on the event loop")
    done = _thread.allocate_lock()
    done.acquire()
    outcome: list = [None, None]  # result, exception

    def finished(task):
        if task.cancelled():
            outcome[1] = asyncio.CancelledError()
        elif task.exception() is not None:
            outcome[1] = task.exception()
        else:
            outcome[0] = task.result()
        done.release()

    self._loop.call_soon_threadsafe(lambda: self._loop.create_task(coroutine).add_done_callback(finished))
    done.acquire()
    if outcome[1] is not None:
        raise outcome[1]
    return outcome[0]


if "bridge" in PATCHES:
    dw.ThreadBridge.run = _bridge_run


def _bridge_send(self, data):
    connection = self._connection
    if connection.closed:
        raise ConnectionClosed(*connection.close_info)
    failure = getattr(self, "_send_failure", None)
    if failure is not None:
        raise failure

    def finished(task):
        if not task.cancelled() and task.exception() is not None:
            self._send_failure = task.exception()

    # Tasks take their first step in creation order: sends stay in order.
    self._loop.call_soon_threadsafe(
        lambda: self._loop.create_task(connection.send(data)).add_done_callback(finished)
    )


if "sendnowait" in PATCHES:
    dw.ThreadBridge.send = _bridge_send
