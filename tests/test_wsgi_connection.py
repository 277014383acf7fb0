"""The blocking connection over a taken-over socket, driven by hand-made client frames."""

import socket
import time

from websockets.frames import Close, Frame, Opcode
from websockets.protocol import OPEN
from websockets.server import ServerProtocol

from django_websocket.protocol import EngineLimits, open_blocking_connection
from django_websocket.wsgi import WSGIConnection


def client_frame(opcode, data):
    return Frame(opcode, data).serialize(mask=True)


def test_a_view_that_sees_the_client_close_can_read_every_message_before_it():
    # The engine leaves OPEN when it parses the close frame, before it hands the
    # messages that came with it to the reader: `closed` must wait for those.
    burst = b"".join(
        [client_frame(Opcode.TEXT, text.encode()) for text in "abc"]
        + [client_frame(Opcode.CLOSE, Close(1000, "").serialize())]
    )
    limits = EngineLimits(ping_interval=None, compression=None)
    for _ in range(200):
        server_side, client_side = socket.socketpair()
        with client_side:
            engine = open_blocking_connection(server_side.dup(), ServerProtocol(state=OPEN), limits)
            connection = WSGIConnection({}, server_side, engine)
            client_side.sendall(burst)
            deadline = time.monotonic() + 5
            while not connection.closed and time.monotonic() < deadline:
                pass
            assert connection.closed
            assert [connection.receive(0) for _ in range(3)] == ["a", "b", "c"]
            assert connection.close_info == (1000, "")
            connection.finish()
            server_side.close()


def upgrade_environ(server_side: socket.socket) -> dict:
    """A WSGI environ of a valid upgrade request on gunicorn, lending ``server_side``."""
    return {
        "gunicorn.socket": server_side,
        "PATH_INFO": "/echo/",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_UPGRADE": "websocket",
        "HTTP_CONNECTION": "Upgrade",
        "HTTP_SEC_WEBSOCKET_KEY": "dGhlIHNhbXBsZSBub25jZQ==",
        "HTTP_SEC_WEBSOCKET_VERSION": "13",
    }


def test_out_of_file_descriptors_refuses_with_503_before_the_101(monkeypatch):
    """Nothing of the handshake goes out until the connection has all it needs: out of
    file descriptors, the request gets a 503 (not a 101 followed by the server's own
    response in the middle of the WebSocket stream)."""
    import errno

    import pytest

    from django_websocket.protocol import HandshakeFailed
    from django_websocket.wsgi import TAKEN_OVER_KEY, open_connection

    server_side, client_side = socket.socketpair()
    environ = upgrade_environ(server_side)

    def no_descriptor_left(self):
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(socket.socket, "dup", no_descriptor_left)
    with server_side, client_side:
        with pytest.raises(HandshakeFailed) as refused:
            open_connection(environ, None, EngineLimits(ping_interval=None))
        assert refused.value.status == 503
        assert TAKEN_OVER_KEY not in environ
        client_side.setblocking(False)
        with pytest.raises(BlockingIOError):
            client_side.recv(100)  # not one byte was sent


def test_a_failure_after_the_101_drops_the_client_without_any_http_after_it(monkeypatch):
    """Out of file descriptors for the engine's own sockets, after the 101: the client is
    dropped, and the server is told the socket was taken (it writes nothing)."""
    import errno

    import pytest

    from django_websocket import wsgi

    server_side, client_side = socket.socketpair()
    environ = upgrade_environ(server_side)

    def no_descriptor_left(*args, **kwargs):
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(wsgi, "open_blocking_connection", no_descriptor_left)
    with server_side, client_side:
        with pytest.raises(OSError):
            wsgi.open_connection(environ, None, EngineLimits(ping_interval=None))
        assert environ.get(wsgi.TAKEN_OVER_KEY)
        client_side.settimeout(5)
        received = b""
        while chunk := client_side.recv(4096):
            received += chunk
        head, _, rest = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ") and rest == b""
