"""WEBSOCKET_MAX_CONNECTIONS: past it a process refuses WebSockets with 503 and Retry-After,
and the connections already open keep working."""

from __future__ import annotations

import time

import pytest
from django.test import override_settings
from websockets.exceptions import InvalidStatus

from django_websocket.request import open_connections
from django_websocket.test import WebSocketClient, WebSocketRefused

from .clients import connect_to, raw_request, upgrade_headers
from .conftest import ALL_SERVERS, start_server, timeout

PREFIXES = ["", "/async"]


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("middleware", [False, True])
def test_past_the_limit_the_process_answers_503_and_open_connections_go_on(prefix, middleware):
    client = WebSocketClient()
    extra = ["django_websocket.middleware.WebSocketMiddleware"] if middleware else []
    with (
        override_settings(WEBSOCKET_MAX_CONNECTIONS=2, MIDDLEWARE=extra),
        client.websocket(f"{prefix}/echo/") as first,
        client.websocket(f"{prefix}/echo/") as second,
    ):
        with pytest.raises(WebSocketRefused) as refused, client.websocket(f"{prefix}/echo/"):
            pass
        assert refused.value.status_code == 503
        assert refused.value.response["Retry-After"] == "5"
        assert b"Too many open WebSocket connections" in refused.value.response.content
        for ws in (first, second):
            ws.send("still here")
            assert ws.receive() == "still here"
        second.close()
        with client.websocket(f"{prefix}/echo/") as third:  # a slot was given back
            third.send("in")
            assert third.receive() == "in"
    assert open_connections.in_use == 0


@pytest.mark.parametrize("path", ["/fail_before_accept/", "/forbidden/", "/refuse_by_close/"])
def test_views_that_refuse_or_raise_give_their_slot_back(path):
    client = WebSocketClient(raise_request_exception=False)
    for _ in range(3):
        with pytest.raises(WebSocketRefused), client.websocket(path):
            pass
    assert open_connections.in_use == 0


def test_no_limit_with_none():
    client = WebSocketClient()
    with (
        override_settings(WEBSOCKET_MAX_CONNECTIONS=None),
        client.websocket("/echo/") as ws,
    ):
        ws.send("x")
        assert ws.receive() == "x"


def connect_when_a_slot_is_free(server):
    """A slot comes back when the view returns, a moment after the client saw the close."""
    deadline = time.monotonic() + timeout(10)
    while True:
        try:
            return connect_to(server, "/echo/", legacy=True)
        except InvalidStatus as refused:
            if refused.response.status_code != 503 or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# gunicorn-sync runs 4 worker processes, each with its own limit.
@pytest.mark.parametrize("kind", [kind for kind in ALL_SERVERS if kind != "gunicorn-sync"])
def test_every_server_refuses_past_the_limit_and_keeps_the_open_ones(kind):
    server = start_server(kind, extra_env={"DJWS_MAX_CONNECTIONS": "2"})
    try:
        first = connect_to(server, "/echo/", legacy=True)
        second = connect_to(server, "/echo/", legacy=True)
        refusal = raw_request(server.port, "/echo/", upgrade_headers(server.port))
        if server.traits.denial:
            assert refusal.startswith(b"HTTP/1.1 503"), refusal
            assert b"\r\nretry-after: 5\r\n" in refusal.lower(), refusal
        else:  # daphne cannot send a response of our own: only its 403
            assert refusal.startswith(b"HTTP/1.1 403"), refusal
        assert "this process serves 2 WebSockets already" in server.log()
        for client in (first, second):
            client.send("still here")
            assert client.recv(timeout(5)) == "still here"
        first.close()
        second.close()
        third = connect_when_a_slot_is_free(server)
        third.send("in")
        assert third.recv(timeout(5)) == "in"
        third.close()
    finally:
        server.stop()
