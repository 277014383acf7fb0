"""WebSocketMiddleware on every server: routing, one handshake, WEBSOCKET_ACCEPT_ALL.

Under ASGI the middleware runs in Django's async middleware chain; under WSGI in
the sync one. Keepalive and slow readers are checked on one server of each kind.
"""

import urllib.request

import pytest

from .clients import (
    RawWebSocket,
    assert_fails_with_1011,
    body_of,
    connect_to,
    raw_request,
    status_of,
    upgrade_headers,
)
from .conftest import NO_ASYNC_VIEWS, WSGI_SERVERS, start_server, timeout

pytestmark = pytest.mark.server


def test_a_websocket_to_a_view_that_does_not_accept_it_gets_400(server_with_middleware):
    """Without a decorator or attribute, a WebSocket request is refused with 400."""
    server = server_with_middleware
    raw = raw_request(
        server.port, "/undecorated/", upgrade_headers(server.port, Origin=server.origin)
    )
    if not server.traits.denial:
        assert status_of(raw) == 403
        return
    assert status_of(raw) == 400
    assert b"does not accept WebSocket" in body_of(raw)


def test_plain_requests_get_is_websocket_false(server_with_middleware):
    """Every plain request has is_websocket() (False) and reaches any view."""
    server = server_with_middleware
    with urllib.request.urlopen(f"{server.origin}/undecorated/", timeout=timeout(5)) as response:
        assert response.read() == b"undecorated plain, is_websocket=False"


def test_the_original_accept_websocket_attribute_accepts(server_with_middleware):
    """A view with accept_websocket = True (the original mechanism) takes WebSockets."""
    server = server_with_middleware
    with connect_to(server, "/legacy/") as client:
        assert client.recv(timeout(5)) == "legacy attribute accepted"


def test_decorator_and_middleware_together_send_exactly_one_handshake(server_with_middleware):
    """A decorated view under the middleware answers with one 101, then frames only."""
    server = server_with_middleware
    client = RawWebSocket(server.port, "/echo_once/", Origin=server.origin)
    client.send_text("once")
    frames, raw = client.events_until_eof()
    client.close()
    handshake_bytes = b"".join(client.received)
    assert handshake_bytes.count(b"HTTP/1.1 101") == 1
    assert b"HTTP/" not in raw
    assert next(frame.data for frame in frames) == b"once"


def test_readme_examples_work_under_the_middleware(server_with_middleware):
    """Both README examples behave the same with the middleware installed."""
    server = server_with_middleware
    with connect_to(server, "/lower_case/") as client:
        client.send("MiDDle")
        assert client.recv(timeout(5)) == "middle"
    with connect_to(server, "/echo_once/") as client:
        client.send("x")
        assert client.recv(timeout(5)) == "x"


def test_async_views_work_under_the_middleware(server_with_middleware):
    """An async view under the middleware gets AsyncWebSocket (the chain may be sync or async)."""
    server = server_with_middleware
    if server.kind in NO_ASYNC_VIEWS:
        return
    with connect_to(server, "/async/chat/", subprotocols=["chat.v1"]) as client:
        assert client.recv(timeout(5)) == "protocol=chat.v1"
        client.send("async under middleware")
        assert client.recv(timeout(5)) == "async under middleware"


def test_class_based_views_accept_through_method_decorator(server_with_middleware):
    """method_decorator(accept_websocket, name="dispatch") works with the middleware,
    on sync and async class-based views."""
    server = server_with_middleware
    with connect_to(server, "/cbv/alice/") as client:
        assert client.recv(timeout(5)) == "class-based alice"
    with urllib.request.urlopen(f"{server.origin}/cbv/bob/", timeout=timeout(5)) as response:
        assert response.read() == b"class-based plain bob"
    if server.kind not in NO_ASYNC_VIEWS:
        with connect_to(server, "/acbv/dan/") as client:
            assert client.recv(timeout(5)) == "async class-based dan"
        with urllib.request.urlopen(f"{server.origin}/acbv/eve/", timeout=timeout(5)) as r:
            assert r.read() == b"async class-based plain eve"


def test_require_websocket_refuses_plain_http_under_the_middleware(server_with_middleware):
    """Plain HTTP to a require_websocket view is 400 with the middleware too."""
    server = server_with_middleware
    raw = raw_request(server.port, "/echo_once/", {"Host": f"127.0.0.1:{server.port}"})
    assert status_of(raw) == 400


def test_malformed_upgrades_are_refused_for_any_url(server_with_middleware):
    """The middleware answers a malformed upgrade with 400 even for unknown URLs."""
    server = server_with_middleware
    headers = upgrade_headers(server.port, Sec_WebSocket_Key=None)
    assert status_of(raw_request(server.port, "/no/such/url/", headers)) == 400


def test_class_based_views_work_without_middleware():
    """method_decorator(accept_websocket) on a class-based view works with no middleware."""
    server = start_server("runserver")
    try:
        with connect_to(server, "/cbv/carol/") as client:
            assert client.recv(timeout(5)) == "class-based carol"
    finally:
        server.stop()


@pytest.fixture(scope="module", params=["runserver", "gunicorn-gthread", "uvicorn", "hypercorn"])
def accept_all_server(request):
    running = start_server(request.param, middleware=True, extra_env={"DJWS_ACCEPT_ALL": "1"})
    yield running
    running.stop()


def test_accept_all_opens_every_view(accept_all_server):
    """With WEBSOCKET_ACCEPT_ALL an undecorated view takes WebSockets."""
    with connect_to(accept_all_server, "/undecorated/") as client:
        client.send("all")
        assert client.recv(timeout(5)) == "all"


def test_an_undecorated_view_that_raises_closes_with_1011(accept_all_server):
    """The middleware closes with 1011 and logs, as the decorator does."""
    logged = "ValueError: boom in an undecorated view"
    assert_fails_with_1011(accept_all_server, "/undecorated_fail/", logged)


#: Under ASGI keepalive is the server's: these are the options that match our settings.
FAST_PINGS = {
    "runserver": (),
    "gunicorn-gthread": (),
    "gunicorn-gevent": (),
    "uvicorn": ("--ws-ping-interval", "0.2", "--ws-ping-timeout", "0.3"),
    "daphne": ("--ping-interval", "1", "--ping-timeout", "1"),  # whole seconds only
}


# hypercorn pings (--websocket-ping-interval) but never declares a silent peer dead.
@pytest.mark.parametrize("kind", ["runserver", "gunicorn-gthread", "uvicorn", "daphne"])
def test_keepalive_detects_a_peer_that_stopped_answering(kind):
    """A client that never answers pings is declared dead; the view's wait() returns None."""
    server = start_server(
        kind,
        extra_env={"DJWS_PING_INTERVAL": "0.2", "DJWS_PING_TIMEOUT": "0.3"},
        extra_args=FAST_PINGS[kind],
    )
    try:
        client = RawWebSocket(server.port, "/watch_close/", Origin=server.origin)
        # This client never reads, so it never answers the server's pings.
        result = server.result("watch_close", wait=10)
        client.close()
        assert result["message"] is None and result["closed"] is True
        assert result["code"] in (1011, 1006, 1005)
    finally:
        server.stop()


@pytest.mark.parametrize("kind", ["runserver", "gunicorn-gthread", "gunicorn-gevent", "uvicorn"])
def test_a_client_that_never_reads_cannot_block_a_sending_view(kind):
    """A view sending to a client that stopped reading sees the connection close, bounded."""
    server = start_server(
        kind,
        extra_env={"DJWS_PING_INTERVAL": "0.3", "DJWS_PING_TIMEOUT": "0.5"},
        extra_args=FAST_PINGS[kind],
    )
    try:
        client = RawWebSocket(server.port, "/flood/", Origin=server.origin)
        client.sock.setsockopt(
            __import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, 4096
        )
        result = server.result("flood", wait=20)
        client.close()
        assert result["outcome"] == "ConnectionClosed" and result["closed"] is True
        with connect_to(server, "/echo/") as other:
            other.send("still serving")
            assert other.recv(timeout(5)) == "still serving"
    finally:
        server.stop()


def test_an_unsupported_wsgi_server_gets_a_clear_501_and_a_log_line():
    """Under a WSGI server that cannot lend its socket (wsgiref), the answer is 501."""
    import subprocess
    import sys

    code = (
        "import io, sys, django, os\n"
        "os.environ['DJANGO_SETTINGS_MODULE']='tests.settings'\n"
        "from wsgiref.util import setup_testing_defaults\n"
        "from django.core.wsgi import get_wsgi_application\n"
        "app = get_wsgi_application()\n"
        "env = {}\n"
        "setup_testing_defaults(env)\n"
        "env.update(PATH_INFO='/echo/', HTTP_HOST='127.0.0.1', SERVER_NAME='127.0.0.1',\n"
        "  HTTP_UPGRADE='websocket', HTTP_CONNECTION='Upgrade', HTTP_SEC_WEBSOCKET_VERSION='13',\n"
        "  HTTP_SEC_WEBSOCKET_KEY='dGhlIHNhbXBsZSBub25jZQ==', SERVER_SOFTWARE='wsgiref')\n"
        "seen = []\n"
        "body = b''.join(app(env, lambda status, headers: seen.append(status)))\n"
        "print(seen[0]); print(body.decode())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout(30),
        cwd=str(__import__("tests.conftest").conftest.ROOT),
    )
    assert done.stdout.startswith("501"), done.stdout + done.stderr
    assert "Supported: Django runserver" in done.stdout
    assert "gunicorn" in done.stdout
    assert "Cannot serve a WebSocket at /echo/" in done.stderr


assert WSGI_SERVERS
