"""Slow clients are bounded by timeouts and do not stop the others from being served.

A client that never reads is covered in test_middleware_servers.py (the send
bound), and one that stops answering pings too (keepalive). Here: a handshake
that never finishes, and a frame sent one byte at a time.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
from websockets.frames import Frame, Opcode

from .clients import RawWebSocket, connect_to
from .conftest import start_server, timeout
from .test_middleware_servers import FAST_PINGS

pytestmark = pytest.mark.server

#: How long each server lets a client sit on an unfinished HTTP request, in seconds:
#: runserver's is ours; the others are the servers' own (gevent: gunicorn's
#: --keep-alive, 2 s; Hypercorn: its keep-alive timeout, 5 s; Daphne: 60 s, too long
#: to wait for here). uvicorn and gunicorn gthread have none, and 100 stalled requests
#: take all 64 of gthread's threads: put a proxy in front (docs/deployment.md).
STALLED_REQUEST_LIMIT = {"runserver": 10, "gunicorn-gevent": 2, "hypercorn": 5}


def stalled_requests(port: int, count: int) -> list[socket.socket]:
    """Open ``count`` connections that each send half a WebSocket handshake, then stop."""
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout(10))
        sock.sendall(b"GET /echo/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
        sockets.append(sock)
    return sockets


def seconds_until_dropped(sock: socket.socket, limit: float) -> float:
    """Wait for the server to close ``sock``; return how long it took."""
    start = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"the server kept a stalled request open for more than {limit} s")
    return time.monotonic() - start


def assert_still_serving(server) -> None:
    try:
        with connect_to(server, "/echo/", open_timeout=timeout(5)) as client:
            client.send("still serving")
            assert client.recv(timeout(5)) == "still serving"
    except OSError as exc:
        alive = "running" if server.process.poll() is None else "exited"
        pytest.fail(f"{server.kind} ({alive}) refused a client: {exc!r}\n{server.log()}")


@pytest.mark.parametrize("kind", ["runserver", "gunicorn-gevent", "uvicorn", "hypercorn", "daphne"])
def test_handshakes_that_never_finish_do_not_stop_other_clients(kind):
    server = start_server(kind)
    stalled = stalled_requests(server.port, 100)
    try:
        time.sleep(0.5)
        assert_still_serving(server)
        limit = STALLED_REQUEST_LIMIT.get(kind)
        if limit is not None:
            # Every stalled request is dropped within the server's bound (plus slack).
            for sock in stalled:
                assert seconds_until_dropped(sock, timeout(limit + 5)) <= timeout(limit + 5)
            assert_still_serving(server)
    finally:
        for sock in stalled:
            sock.close()
        server.stop()


@pytest.mark.parametrize("kind", ["runserver", "gunicorn-gthread", "gunicorn-gevent", "uvicorn"])
def test_a_frame_sent_one_byte_at_a_time_is_cut_off_by_keepalive(kind):
    """A client in the middle of a frame cannot answer pings: keepalive ends it,
    the view sees the connection closed, and other clients are served meanwhile."""
    server = start_server(
        kind,
        extra_env={"DJWS_PING_INTERVAL": "0.3", "DJWS_PING_TIMEOUT": "0.5"},
        extra_args=FAST_PINGS[kind],
    )
    try:
        client = RawWebSocket(server.port, "/watch_close/", Origin=server.origin)
        assert client.response is not None and client.response.status_code == 101
        frame = Frame(Opcode.TEXT, b"x" * 200)
        data = frame.serialize(mask=True, extensions=[])
        trickled = threading.Event()

        def trickle() -> None:
            for byte in data:
                try:
                    client.sock.sendall(bytes([byte]))
                except OSError:
                    return  # the server cut us off
                time.sleep(0.1)
            trickled.set()

        writer = threading.Thread(target=trickle, daemon=True)
        writer.start()
        assert_still_serving(server)
        result = server.result("watch_close", wait=15)
        assert result["message"] is None and result["closed"] is True
        writer.join(timeout(15))
        assert not trickled.is_set(), "the whole 200-byte frame went through"
        client.sock.close()
        assert_still_serving(server)
    finally:
        server.stop()
