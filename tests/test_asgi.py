"""The ASGI application in process: the request a view sees, limits, lifespan, shutdown.

Most ASGI behaviour is tested on real servers in test_servers.py; here the
application is driven directly where a real server cannot show the point
(``wss`` without certificates, the thread cap, database connections), and
real servers are stopped with signals.
"""

import asyncio
import contextlib
import json
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from django.core.signals import request_finished
from django.db.backends.signals import connection_created
from django.test import override_settings

from django_websocket.asgi import sync_view_slots

from .clients import Session, application, connect_to, websocket_scope
from .conftest import start_server, timeout

MIDDLEWARE_ABC = [f"tests.middleware.{name}" for name in ("A", "B", "C")]


def test_behind_wss_the_request_is_secure_and_absolute_uris_are_https():
    """A wss:// scope makes is_secure() True and build_absolute_uri() https."""

    async def scenario():
        session = Session(websocket_scope("/info/", scheme="wss", origin="https://127.0.0.1"))
        assert (await session.output())["type"] == "websocket.accept"
        info = json.loads((await session.output())["text"])
        await session.disconnect()
        return info

    info = asyncio.run(scenario())
    assert info["secure"] is True and info["uri"] == "https://127.0.0.1/info/"


def test_lifespan_start_up_and_shutdown_are_acknowledged():
    """The application answers lifespan events, so servers do not log it as unsupported."""

    async def scenario():
        events = asyncio.Queue()
        sent = []
        for kind in ("lifespan.startup", "lifespan.shutdown"):
            events.put_nowait({"type": kind})

        async def send(message):
            sent.append(message["type"])

        await application({"type": "lifespan"}, events.get, send)
        return sent

    assert asyncio.run(scenario()) == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_without_the_denial_extension_a_refusal_is_a_close_before_accept():
    """A server without websocket.http.response gets websocket.close (its 403)."""

    async def scenario():
        session = Session(websocket_scope("/forbidden/", denial=False))
        return await session.output()

    assert asyncio.run(scenario())["type"] == "websocket.close"


@override_settings(WEBSOCKET_MAX_SYNC_CONNECTIONS=1)
def test_past_the_sync_view_cap_connections_get_503_and_async_views_still_open():
    """With every sync-view thread taken, a sync view is refused with 503 and Retry-After."""

    async def scenario():
        first = Session(websocket_scope("/echo/"))
        assert (await first.output())["type"] == "websocket.accept"
        second = Session(websocket_scope("/echo/"))
        refusal = await second.output()
        body = await second.output()
        async_view = Session(websocket_scope("/async/echo/"))
        async_accepted = (await async_view.output())["type"]
        await async_view.disconnect()
        await first.disconnect()
        third = Session(websocket_scope("/echo/"))
        third_accepted = (await third.output())["type"]
        await third.disconnect()
        return refusal, body, async_accepted, third_accepted

    refusal, body, async_accepted, third_accepted = asyncio.run(scenario())
    assert refusal["type"] == "websocket.http.response.start" and refusal["status"] == 503
    assert (b"Retry-After", b"5") in refusal["headers"]
    assert b"Too many open WebSocket connections" in body["body"]
    assert async_accepted == "websocket.accept" and third_accepted == "websocket.accept"
    assert sync_view_slots.in_use == 0


def test_two_tasks_may_wait_at_once_and_a_stuck_send_ends_within_the_bound():
    """Concurrent waits each get a message; a send the server never completes is bounded."""

    async def scenario():
        release = asyncio.Event()
        session = Session(websocket_scope("/async_concurrent/"))
        blocking_send = session.from_app.put

        async def send(message):
            if message.get("text") == "block":
                await release.wait()  # a client that stopped reading
            await blocking_send(message)

        session.task.cancel()
        session.task = asyncio.ensure_future(
            application(websocket_scope("/async_concurrent/"), session.to_app.get, send)
        )
        assert (await session.output())["type"] == "websocket.accept"
        await session.send_text("one")
        await session.send_text("two")
        answer = (await session.output())["text"]
        started = time.monotonic()
        await asyncio.wait_for(session.task, timeout(5))
        return answer, time.monotonic() - started

    with override_settings(WEBSOCKET_PING_INTERVAL=0.2, WEBSOCKET_PING_TIMEOUT=0.2):
        answer, took = asyncio.run(scenario())
    assert answer in ("one+two", "two+one")  # concurrent waiters: either order
    assert took < timeout(2)  # the bound is 0.4 s, checked every 0.2 s


@pytest.mark.parametrize("path", ["/close_with/", "/async/close_with/"])
def test_a_close_the_server_never_completes_is_bounded_by_the_close_timeout(path):
    """close() gives up after WEBSOCKET_CLOSE_TIMEOUT when the server's send hangs."""

    async def scenario():
        sent = asyncio.Queue()

        async def send(message):
            if message["type"] == "websocket.close":
                await asyncio.Event().wait()  # a client that stopped reading
            await sent.put(message)

        to_app = asyncio.Queue()
        to_app.put_nowait({"type": "websocket.connect"})
        task = asyncio.ensure_future(application(websocket_scope(path), to_app.get, send))
        assert (await asyncio.wait_for(sent.get(), timeout(5)))["type"] == "websocket.accept"
        started = time.monotonic()
        await asyncio.wait_for(task, timeout(10))
        return time.monotonic() - started

    with override_settings(WEBSOCKET_CLOSE_TIMEOUT=0.3):
        took = asyncio.run(scenario())
    assert took < timeout(3)
    assert sync_view_slots.in_use == 0


@pytest.mark.django_db(transaction=True)
def test_database_connections_of_a_sync_view_are_closed_when_it_ends():
    """The connection a sync view opened in its thread is closed once the view returns."""
    opened = []

    def remember(sender, connection, **kwargs):
        opened.append((connection, threading.get_ident()))

    connection_created.connect(remember)
    try:

        async def scenario():
            session = Session(websocket_scope("/db_count/"))
            assert (await session.output())["type"] == "websocket.accept"
            answer = (await session.output())["text"]
            await session.disconnect()
            return answer

        assert asyncio.run(scenario()) == "users=0"
    finally:
        connection_created.disconnect(remember)
    in_other_threads = [conn for conn, thread in opened if thread != threading.get_ident()]
    assert in_other_threads and all(conn.connection is None for conn in in_other_threads)


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("view", ["/watch_close/", "/async/watch_close/"])
def test_stopping_uvicorn_closes_websockets_with_1012_and_views_finish(signal_number, view):
    """SIGTERM/SIGINT: uvicorn sends its going-away code (1012); the view sees None and ends."""
    from websockets.exceptions import ConnectionClosed

    server = start_server("uvicorn")
    try:
        client = connect_to(server, view, legacy=True)
        server.wait_for_log('"WebSocket ' + view)
        server.process.send_signal(signal_number)
        with pytest.raises(ConnectionClosed):
            client.recv(timeout(5))
        assert client.close_code == 1012
        assert server.result("watch_close") == {"message": None, "closed": True, "code": 1012}
        # uvicorn exits with the signal it got, once its graceful shutdown is done.
        assert server.process.wait(timeout(10)) in (0, -signal_number)
        assert "Traceback" not in server.log()
    finally:
        server.stop()


@pytest.mark.skipif(
    sys.version_info >= (3, 13),
    reason="hypercorn 0.18 ignores SIGTERM while a WebSocket is open on Python 3.13 "
    "(also with a bare ASGI app; docs/deployment.md)",
)
@pytest.mark.parametrize("view", ["/watch_close/", "/async/watch_close/"])
def test_stopping_hypercorn_closes_websockets_with_1001_and_views_finish(view):
    """hypercorn cancels applications when it stops: we close with 1001, the view sees None."""
    from websockets.exceptions import ConnectionClosed

    server = start_server("hypercorn")
    try:
        client = connect_to(server, view, legacy=True)
        time.sleep(0.5)  # the view is waiting by now
        server.process.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed):
            client.recv(timeout(5))
        assert (client.close_code, client.close_reason) == (1001, "server shutting down")
        assert server.result("watch_close") == {"message": None, "closed": True, "code": 1001}
    finally:
        server.stop()


def test_stopping_daphne_drops_websockets_at_once():
    """daphne stops without a close frame (1006) and without waiting for views (documented)."""
    from websockets.exceptions import ConnectionClosed

    server = start_server("daphne")
    try:
        client = connect_to(server, "/watch_close/", legacy=True)
        server.wait_for_log("WSCONNECT /watch_close/")
        server.process.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed):
            client.recv(timeout(5))
        assert client.close_code == 1006
        assert server.process.wait(timeout(10)) == 0
    finally:
        server.stop()


def _echoing(server, path: str):
    """A client connected to ``path`` that got one echo back (so its view runs)."""
    client = connect_to(server, path, legacy=True)
    client.send(path)
    assert client.recv(timeout(5)) == path
    return client


def _threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("Threads:"))


def test_async_views_hold_no_thread_and_sync_views_one_each():
    """The middleware's sync hooks share one thread; each sync view has a thread of its own."""
    server = start_server("uvicorn")
    clients = []
    try:
        warm = connect_to(server, "/async/echo/", legacy=True)
        warm.send("warm")
        assert warm.recv(timeout(5)) == "warm"
        before = _threads(server.process.pid)
        clients += [_echoing(server, "/async/echo/") for _ in range(20)]
        after_async = _threads(server.process.pid)
        clients += [_echoing(server, "/echo/") for _ in range(10)]
        after_sync = _threads(server.process.pid)
        assert after_async - before <= 1, (before, after_async)
        assert 10 <= after_sync - after_async <= 11, (after_async, after_sync)
    finally:
        for client in clients:
            client.close()
        server.stop()


def _context_switches(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass  # a thread that just ended
    return total


def test_idle_sync_views_sleep_until_something_happens():
    """Waiting sync views do not wake up on their own: one watcher checks the event loop
    for all of them (a server that stops its loop without telling us, see daphne)."""
    server = start_server("uvicorn")
    clients = []
    try:
        for _ in range(200):
            client = connect_to(server, "/echo/", legacy=True)
            clients.append(client)
        clients[-1].send("up")
        assert clients[-1].recv(timeout(5)) == "up"
        time.sleep(1)
        before = _context_switches(server.process.pid)
        time.sleep(3)
        woken = _context_switches(server.process.pid) - before
        # The loop watch wakes once a second; 200 views polling would wake 600 times.
        assert woken < 100, woken
    finally:
        for client in clients:
            client.close()
        server.stop()


def test_a_sync_only_middleware_gives_each_connection_a_thread_of_its_own():
    """Such a middleware holds its thread while the view below runs: connections must not
    share one, or the first would stall every other handshake."""
    server = start_server("uvicorn", extra_env={"DJWS_SYNC_MIDDLEWARE": "1"})
    clients = []
    try:
        clients += [_echoing(server, path) for path in ["/async/echo/", "/echo/"] * 2]
    finally:
        for client in clients:
            client.close()
        server.stop()


@pytest.mark.parametrize("middleware", [[], ["tests.middleware.A"], MIDDLEWARE_ABC])
@pytest.mark.parametrize("path", ["/echo/", "/async/echo/"])
@override_settings(WEBSOCKET_CLOSE_TIMEOUT=0.2)
def test_a_server_that_cancels_the_application_still_ends_the_request(path, middleware):
    """Cancelled mid-connection (as hypercorn stops), the request ends once and frees its slot."""
    finished = []

    def count(**kwargs):
        finished.append(kwargs["sender"])

    async def scenario():
        session = Session(websocket_scope(path))
        assert (await session.output())["type"] == "websocket.accept"
        session.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(session.task, timeout(5))

    request_finished.connect(count)
    try:
        with override_settings(MIDDLEWARE=middleware):
            asyncio.run(scenario())
    finally:
        request_finished.disconnect(count)
    assert len(finished) == 1
    assert sync_view_slots.in_use == 0
