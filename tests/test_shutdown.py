"""Stopping a WSGI server closes its WebSockets with 1001 and lets the views finish.

ASGI servers do it themselves (uvicorn sends 1012, hypercorn cancels and we send
1001): see test_asgi.py. On WSGI servers the WebSockets belong to us, so we do:
runserver through our command, gunicorn's workers through the signal handlers
wrapped at start-up.
"""

from __future__ import annotations

import signal

import pytest
from websockets.exceptions import ConnectionClosed

from .clients import connect_to
from .conftest import start_server, timeout

SERVERS_AND_VIEWS = [
    ("runserver", "/echo_until_closed/"),
    ("runserver", "/async/echo_until_closed/"),
    ("gunicorn-gthread", "/echo_until_closed/"),
    ("gunicorn-gthread", "/async/echo_until_closed/"),
    ("gunicorn-gevent", "/echo_until_closed/"),
]
CASES = [
    (kind, view, signal_number)
    for kind, view in SERVERS_AND_VIEWS
    for signal_number in (signal.SIGTERM, signal.SIGINT)  # SIGINT: the workers get SIGQUIT
]
# The sync worker runs the view in its main thread, where gunicorn's quick shutdown
# (SIGINT, SIGQUIT) raises SystemExit: only its graceful stop lets views finish.
CASES.append(("gunicorn-sync", "/echo_until_closed/", signal.SIGTERM))


@pytest.mark.parametrize(("kind", "view", "signal_number"), CASES)
def test_stopping_the_server_closes_every_websocket_with_1001_and_views_finish(
    kind, view, signal_number
):
    server = start_server(kind)
    try:
        clients = [connect_to(server, f"{view}?id={n}", legacy=True) for n in range(3)]
        for client in clients:
            client.send("up")
            assert client.recv(timeout(5)) == "up"  # every view is in its loop
        server.process.send_signal(signal_number)
        for client in clients:
            with pytest.raises(ConnectionClosed):
                client.recv(timeout(5))
            assert (client.close_code, client.close_reason) == (1001, "server shutting down")
        for n in range(3):
            assert server.result(f"until_closed-{n}") == {"code": 1001}
        assert server.process.wait(timeout(15)) == 0
        log = server.log()
        assert "Traceback" not in log, log
    finally:
        server.stop()
