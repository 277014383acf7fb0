"""Small real clients for the tests: raw HTTP upgrade requests, a frame reader, and an
ASGI session that drives our application in process."""

import asyncio
import base64
import os
import socket
import time

import pytest
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.sync.client import connect
from websockets.uri import parse_uri

from django_websocket.asgi import get_asgi_application

from .conftest import timeout

#: Our ASGI application, driven in process by :class:`Session`.
application = get_asgi_application()


def connect_to(server, path: str, **kwargs):
    """Open a WebSocket to ``path`` on a test server, from the server's own origin."""
    kwargs.setdefault("origin", server.origin)
    kwargs.setdefault("open_timeout", timeout(10))
    kwargs.setdefault("close_timeout", timeout(5))
    return connect(server.url + server.path(path), **kwargs)


def assert_fails_with_1011(server, path: str, logged: str) -> str:
    """A view at ``path`` sends one message, raises: 1011 for the client, the error logged."""
    with connect_to(server, path) as client:
        assert client.recv(timeout(5)) == "about to fail"
        with pytest.raises(ConnectionClosed):
            client.recv(timeout(5))
        assert client.close_code == server.traits.error_close_code
    return server.wait_for_log(logged)


def upgrade_headers(port: int, **overrides: str | None) -> dict[str, str]:
    """Headers of a valid upgrade request; override or drop (None) any of them."""
    headers = {
        "Host": f"127.0.0.1:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Version": "13",
    }
    for name, value in overrides.items():
        name = name.replace("_", "-")
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    return headers


def raw_request(port: int, path: str, headers: dict[str, str], method: str = "GET") -> bytes:
    """Send one request on a new socket; return everything received until EOF (bounded)."""
    lines = [f"{method} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection(("127.0.0.1", port), timeout=timeout(10)) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        return read_until_eof(sock)


def read_until_eof(sock: socket.socket, limit: float = 10.0) -> bytes:
    chunks = []
    deadline = time.monotonic() + timeout(limit)
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not data:
            break
        chunks.append(data)
        if b"\r\n\r\n" in b"".join(chunks) and not b"".join(chunks).startswith(b"HTTP/1.1 101"):
            # A refusal: read the body announced by Content-Length, then stop.
            head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:") and len(body) >= int(
                    line.split(b":")[1]
                ):
                    return b"".join(chunks)
    return b"".join(chunks)


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


def body_of(raw: bytes) -> bytes:
    return raw.partition(b"\r\n\r\n")[2]


class RawWebSocket:
    """A client on a plain socket, driven by websockets' sans-I/O ClientProtocol.

    Unlike the high-level client it can misbehave on purpose: vanish without a
    close frame, never answer pings, send garbage.
    """

    def __init__(self, port: int, path: str, **headers: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout(10))
        self.protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}{path}"))
        request = self.protocol.connect()
        for name, value in headers.items():
            request.headers[name.replace("_", "-")] = value
        self.protocol.send_request(request)
        self.flush()
        self.received: list[bytes] = []
        self.pending: list = []
        self.response: Response | None = None
        while self.response is None:
            data = self.sock.recv(65536)
            assert data, "server closed during the handshake"
            self.received.append(data)
            self.protocol.receive_data(data)
            for event in self.protocol.events_received():
                if isinstance(event, Response):
                    self.response = event
                else:
                    self.pending.append(event)

    def flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.sock.sendall(data)

    def send_text(self, text: str) -> None:
        self.protocol.send_text(text.encode())
        self.flush()

    def send_close(self, code: int = 1000) -> None:
        self.protocol.send_close(code)
        self.flush()

    def events_until_eof(self) -> tuple[list[Frame], bytes]:
        """Read until the server closes the TCP connection; return frames and raw bytes."""
        frames: list[Frame] = []
        raw = read_until_eof(self.sock)
        self.received.append(raw)
        self.protocol.receive_data(raw)
        self.protocol.receive_eof()
        frames.extend(e for e in self.protocol.events_received() if isinstance(e, Frame))
        return frames, raw

    def vanish(self) -> None:
        """Drop the TCP connection without a close frame (RST)."""
        self.sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
        )
        self.sock.close()

    def close(self) -> None:
        self.sock.close()


__all__ = [
    "Opcode",
    "RawWebSocket",
    "assert_fails_with_1011",
    "body_of",
    "connect_to",
    "raw_request",
    "status_of",
    "upgrade_headers",
]


def websocket_scope(path, *, scheme="ws", origin="http://127.0.0.1", denial=True, **extra):
    """The scope an ASGI server would give for a WebSocket to ``path``."""
    headers = [(b"host", b"127.0.0.1"), (b"origin", origin.encode())]
    return {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "scheme": scheme,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 443 if scheme == "wss" else 80),
        "subprotocols": [],
        "extensions": {"websocket.http.response": {}} if denial else {},
        **extra,
    }


class Session:
    """One connection to the application, seen from the server's side."""

    def __init__(self, scope):
        self.to_app: asyncio.Queue = asyncio.Queue()
        self.from_app: asyncio.Queue = asyncio.Queue()
        self.to_app.put_nowait({"type": "websocket.connect"})
        self.task = asyncio.ensure_future(application(scope, self.to_app.get, self.from_app.put))

    async def output(self):
        return await asyncio.wait_for(self.from_app.get(), timeout(5))

    async def send_text(self, text):
        await self.to_app.put({"type": "websocket.receive", "text": text})

    async def disconnect(self, code=1000):
        await self.to_app.put({"type": "websocket.disconnect", "code": code})
        await asyncio.wait_for(self.task, timeout(5))
