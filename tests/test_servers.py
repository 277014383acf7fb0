"""The whole API on every server we support, sync and async views, with a real client.

One suite for both transports: every test runs on runserver, gunicorn (gthread,
gevent, sync), uvicorn (websockets and wsproto), daphne and hypercorn, once with
the sync views and once with their async twins. Where a server cannot do
something, SERVER_TRAITS says so (and docs/deployment.md lists it).
"""

import json
import time
import urllib.request

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Opcode

from .clients import (
    RawWebSocket,
    assert_fails_with_1011,
    body_of,
    connect_to,
    raw_request,
    status_of,
    upgrade_headers,
)
from .conftest import NO_ASYNC_VIEWS, timeout

pytestmark = pytest.mark.server


def test_readme_echo_once_echoes_one_message_then_closes_with_1000(running_server):
    """echo_once (README, verbatim) sends the message back and closes normally."""
    server = running_server
    with connect_to(server, "/echo_once/") as client:
        client.send("Hello, world")
        assert client.recv(timeout(5)) == "Hello, world"
        with pytest.raises(ConnectionClosed):
            client.recv(timeout(5))
        assert client.close_code == 1000


def test_readme_lower_case_serves_websocket_and_plain_http(running_server):
    """lower_case (README, verbatim) lowercases over WebSocket and over plain GET."""
    server = running_server
    with connect_to(server, "/lower_case/") as client:
        for text in ["HeLLo", "WORLD", "ÉTÉ"]:
            client.send(text)
            assert client.recv(timeout(5)) == text.lower()
    with urllib.request.urlopen(f"{server.origin}/lower_case/?message=HeLLo") as response:
        assert response.status == 200
        assert response.read() == b"hello"


def test_text_arrives_as_str_and_binary_as_bytes(server):
    """Text frames come back as text, binary frames as binary."""
    with connect_to(server, "/echo/") as client:
        client.send("text")
        assert client.recv(timeout(5)) == "text"
        client.send(b"\x00\xffbinary")
        assert client.recv(timeout(5)) == b"\x00\xffbinary"
        if server.traits.empty_text:
            client.send("")
            assert client.recv(timeout(5)) == ""


def test_send_maps_types_to_frames(server):
    """send() sends str as text, bytes as binary, anything else through str()."""
    with connect_to(server, "/types/") as client:
        received = [client.recv(timeout(5)) for _ in range(5)]
        assert received == ["text", b"\x00\x01binary", "42", b"ba", '{"a":[1,"é"]}']
        client.send(json.dumps("from wait_json"))
        assert client.recv(timeout(5)) == "from wait_json"
        client.send(b"bytes please")
        assert client.recv(timeout(5)) == "bytes"


def test_messages_up_to_the_limit_pass_and_larger_ones_close_with_1009(server):
    """A message of 1 MiB is echoed; a larger one closes the connection with 1009."""
    with connect_to(server, "/echo/", max_size=None) as client:
        big = b"x" * 2**20
        client.send(big)
        assert client.recv(timeout(10)) == big
        with pytest.raises(ConnectionClosed):
            # daphne may drop the connection while the client is still writing.
            client.send(big + b"x")
            client.recv(timeout(10))
        assert client.close_code == server.traits.too_big_code


def test_subprotocol_is_the_first_offered_by_the_client_that_the_view_speaks(server):
    """protocols=[...] picks the client's first match; no match means no header."""
    with connect_to(server, "/chat/", subprotocols=["chat.v1", "chat.v2"]) as client:
        assert client.subprotocol == "chat.v1"
        assert client.recv(timeout(5)) == "protocol=chat.v1"
    with connect_to(server, "/chat/", subprotocols=["other", "chat.v2"]) as client:
        assert client.subprotocol == "chat.v2"
    with connect_to(server, "/chat/") as client:
        assert client.subprotocol is None
        assert client.recv(timeout(5)) == "protocol=None"
    with connect_to(server, "/echo/", subprotocols=["chat.v1"]) as client:
        assert client.subprotocol is None


def test_view_gets_url_arguments_query_and_a_real_request(server):
    """A WebSocket view receives URL kwargs, GET, request.user, is_websocket()."""
    with connect_to(server, "/info/lobby/7/?q=search") as client:
        info = json.loads(client.recv(timeout(5)))
    assert info == {
        "path": server.path("/info/lobby/7/"),
        "room": "lobby",
        "number": 7,
        "query": "search",
        "secure": False,
        "uri": f"{server.origin}{server.path('/info/lobby/7/')}?q=search",
        "user": "AnonymousUser",
        "protocol": None,
        "is_websocket": True,
    }


def test_close_code_and_reason_reach_the_client(server):
    """close(code, reason) in the view is what the client sees."""
    with connect_to(server, "/close_with/?code=4001&reason=bye") as client:
        with pytest.raises(ConnectionClosed):
            client.recv(timeout(5))
        reason = "bye" if server.traits.close_reasons else ""
        assert (client.close_code, client.close_reason) == (4001, reason)
    assert server.result("close_with") == {"closed": True, "code": 4001}


def test_a_view_that_raises_closes_with_1011_and_logs_the_error(server):
    """An exception after the handshake closes with 1011 and is logged with its traceback."""
    log = assert_fails_with_1011(server, "/fail/", "ValueError: boom in a WebSocket view")
    assert f"Internal Server Error: {server.path('/fail/')} (WebSocket closed with 1011)" in log


@pytest.mark.parametrize(
    ("path", "status", "body"),
    [
        ("/forbidden/", 403, b"no entry\n"),
        ("/refuse_by_close/", 403, None),
        ("/private/", 302, None),
    ],
)
def test_a_view_refuses_with_its_own_response_before_the_handshake(server, path, status, body):
    """A response returned (or close() called) before first use refuses the WebSocket."""
    headers = upgrade_headers(server.port, Origin=server.origin)
    raw = raw_request(server.port, server.path(path), headers)
    if not server.traits.denial:
        assert status_of(raw) == 403  # the only refusal the server can send
        return
    assert status_of(raw) == status
    assert not raw.startswith(b"HTTP/1.1 101")
    if body is not None:
        assert body_of(raw) == body
    if status == 302:
        location = f"\r\nLocation: /login/?next={server.path('/private/')}\r\n"
        assert location.encode() in raw


def test_an_async_wait_cancelled_by_a_timeout_loses_no_message(running_server):
    """asyncio.wait_for around await ws.wait() may time out; the next wait gets the message."""
    if running_server.kind in NO_ASYNC_VIEWS:
        pytest.skip(f"async views are not supported on {running_server.kind}")
    with connect_to(running_server, "/async_cancelled_wait/") as client:
        assert client.recv(timeout(5)) == "timed out"
        client.send("later")
        assert client.recv(timeout(5)) == "then later"


def test_two_tasks_of_an_async_view_may_wait_and_send_at_once(running_server):
    """Concurrent waits each get one message (none twice); concurrent sends both arrive."""
    if running_server.kind in NO_ASYNC_VIEWS:
        pytest.skip(f"async views are not supported on {running_server.kind}")
    with connect_to(running_server, "/async_concurrent/") as client:
        client.send("one")
        client.send("two")
        received = {client.recv(timeout(5)), client.recv(timeout(5))}
    assert received in ({"block", "one+two"}, {"block", "two+one"})


def test_wait_timeout_raises_timeout_error_and_the_connection_stays_open(server):
    """wait(timeout=...) raises TimeoutError; the next wait still works."""
    with connect_to(server, "/timeout/") as client:
        assert client.recv(timeout(5)) == "timed out"
        client.send("later")
        assert client.recv(timeout(5)) == "then later"


def test_messages_queued_before_the_close_are_handed_out_then_none(server):
    """After the client closes, wait/read return queued messages first, then None at once."""
    with connect_to(server, "/drain_after_close/") as client:
        for text in ["a", "b", "c"]:
            client.send(text)
    assert server.result("drain_after_close") == {
        "received": ["a", "b", "c"],
        "after": [None, "fallback"],
        "iterated": [],
        "count": 0,
        "has": False,
        "code": 1000 if server.traits.client_close_code else 1006,
        "reason": "",
    }


def test_count_messages_has_messages_and_read_never_block(server):
    """count_messages/has_messages/read report what arrived, without waiting."""
    with connect_to(server, "/counting/") as client:
        client.send("3")
        for text in ["one", "two", "three"]:
            client.send(text)
        result = json.loads(client.recv(timeout(10)))
    assert result == {
        "count": 3,
        "has": True,
        "first": "one",
        "rest": ["two", "three"],
        "empty_read": "none",
        "has_after": False,
    }


def test_a_client_that_vanishes_makes_wait_return_none(server):
    """A dropped TCP connection (no close frame) ends wait() with None and code 1006."""
    client = RawWebSocket(server.port, server.path("/watch_close/"), Origin=server.origin)
    time.sleep(0.2 * 1)
    client.vanish()
    expected = {"message": None, "closed": True, "code": server.traits.vanish_code}
    assert server.result("watch_close") == expected


def test_a_client_that_vanishes_mid_message_makes_wait_return_none(server):
    """Half a frame, then a dropped connection: wait() returns None, code 1006."""
    client = RawWebSocket(server.port, server.path("/watch_close/"), Origin=server.origin)
    client.sock.sendall(b"\x81\xfe\x01\x00" + b"mask" + b"partial payload")
    time.sleep(0.1)
    client.vanish()
    expected = {"message": None, "closed": True, "code": server.traits.vanish_code}
    assert server.result("watch_close") == expected


def test_permessage_deflate_is_negotiated_by_default(server):
    """WEBSOCKET_COMPRESSION defaults to permessage-deflate (RFC 7692)."""
    with connect_to(server, "/echo/") as client:
        expected = ["permessage-deflate"] if server.traits.deflate else []
        assert [ext.name for ext in client.protocol.extensions] == expected
        client.send("compressible " * 100)
        assert client.recv(timeout(5)) == "compressible " * 100


def test_send_after_the_client_closed_raises_connection_closed(server):
    """send() on a closed connection raises ConnectionClosed, which ends the view quietly."""
    with connect_to(server, "/push_after_close/"):
        pass
    assert server.result("push_after_close") == {"outcome": "ConnectionClosed"}
    assert "django_websocket.exceptions.ConnectionClosed" not in server.log()


def test_a_view_that_returns_none_without_using_the_websocket_accepts_and_closes(server):
    """Returning None accepts the WebSocket and closes it with 1000."""
    with connect_to(server, "/untouched/") as client:
        with pytest.raises(ConnectionClosed):
            client.recv(timeout(5))
        assert client.close_code == 1000


def test_not_one_byte_of_http_follows_the_close_frame(server):
    """After the 101 the stream holds WebSocket frames only, up to the server's EOF."""
    client = RawWebSocket(server.port, server.path("/echo/"), Origin=server.origin)
    assert client.response.status_code == 101
    client.send_text("once")
    client.send_close()
    frames, raw = client.events_until_eof()
    assert [frame.opcode for frame in frames] == [Opcode.TEXT, Opcode.CLOSE]
    assert b"HTTP/" not in raw
    assert client.protocol.handshake_exc is None
    client.close()
    assert sum(chunk.count(b"HTTP/1.1 101") for chunk in client.received) == 1


def test_plain_http_to_require_websocket_gets_400_with_a_short_reason(server):
    """require_websocket answers plain HTTP with 400 and says why."""
    raw = raw_request(server.port, server.path("/chat/"), {"Host": f"127.0.0.1:{server.port}"})
    assert status_of(raw) == 400
    assert b"only takes WebSocket connections" in body_of(raw)


@pytest.mark.parametrize(
    ("overrides", "method", "status", "reason"),
    [
        ({"Sec-WebSocket-Key": None}, "GET", 400, b"Sec-WebSocket-Key"),
        ({"Sec-WebSocket-Key": "not base64!"}, "GET", 400, b"base64"),
        ({"Sec-WebSocket-Key": "c2hvcnQ="}, "GET", 400, b"16 bytes"),
        ({"Sec-WebSocket-Version": None}, "GET", 400, b"Sec-WebSocket-Version"),
        ({"Sec-WebSocket-Version": "8"}, "GET", 426, b"version"),
        ({"Connection": "keep-alive"}, "GET", 400, b"Connection"),
        ({}, "POST", 400, b"GET"),
        ({"Upgrade": "websocket, h2c"}, "GET", 400, b"Upgrade"),
    ],
)
def test_malformed_upgrade_requests_get_400_or_426_never_500(
    server, overrides, method, status, reason
):
    """Each handshake error gets its status and a short reason, and the server goes on."""
    headers = upgrade_headers(server.port, Origin=server.origin, **overrides)
    if method == "POST":
        headers["Content-Length"] = "0"
    raw = raw_request(server.port, server.path("/echo/"), headers, method=method)
    if server.traits.our_handshake_errors:
        assert status_of(raw) == status
        assert reason in body_of(raw)
        if status == 426:
            assert b"\r\nSec-WebSocket-Version: 13\r\n" in raw
    else:  # the ASGI server checks the handshake before the application sees it
        assert 400 <= status_of(raw) < 500
    with connect_to(server, "/echo/") as client:
        client.send("still serving")
        assert client.recv(timeout(5)) == "still serving"


@pytest.mark.parametrize(
    "origin", ["http://evil.example", "null", "http://127.0.0.1:1", "https://127.0.0.1"]
)
def test_a_foreign_origin_gets_403(server, origin):
    """Cross-site WebSocket hijacking fails: other origins (and null) get 403."""
    with pytest.raises(InvalidStatus) as refused:
        connect_to(server, "/echo/", origin=origin)
    assert refused.value.response.status_code == 403


def test_the_same_origin_and_no_origin_are_allowed(server):
    """The page's own origin connects; so does a non-browser client without Origin."""
    for origin in [server.origin, None]:
        with connect_to(server, "/echo/", origin=origin) as client:
            client.send("ok")
            assert client.recv(timeout(5)) == "ok"


def _assert_closed_for_protocol_error(server, client, code: int) -> None:
    """The server closes with ``code`` (or drops the connection) and goes on serving."""
    frames, _ = client.events_until_eof()
    client.close()
    if server.traits.protocol_error_close_frame:
        assert frames[-1].opcode == Opcode.CLOSE
        assert frames[-1].data[:2] == code.to_bytes(2, "big")
    else:
        assert frames == []  # the server drops the connection
    with connect_to(server, "/echo/") as other:
        other.send(f"after {code}")
        assert other.recv(timeout(5)) == f"after {code}"


def test_garbage_from_the_client_closes_with_1002_and_the_worker_survives(server):
    """Bytes that are not WebSocket frames close the connection with 1002."""
    client = RawWebSocket(server.port, server.path("/echo/"), Origin=server.origin)
    client.sock.sendall(b"\x8f\x00this is not a frame")
    _assert_closed_for_protocol_error(server, client, 1002)


def test_invalid_utf8_closes_with_1007(server):
    """A text frame that is not UTF-8 closes the connection with 1007."""
    client = RawWebSocket(server.port, server.path("/echo/"), Origin=server.origin)
    client.protocol.send_frame(__import__("websockets").frames.Frame(Opcode.TEXT, b"\xff\xfe"))
    client.flush()
    _assert_closed_for_protocol_error(server, client, 1007)


def test_many_websockets_and_plain_requests_at_once(server):
    """Several WebSockets stay open while plain HTTP requests are served."""
    count = 3 if server.kind == "gunicorn-sync" else 12
    clients = [connect_to(server, "/echo/", legacy=True) for _ in range(count)]
    try:
        if server.kind != "gunicorn-sync":  # its 4 workers are all taken by now
            with urllib.request.urlopen(
                f"{server.origin}/lower_case/?message=BUSY", timeout=timeout(5)
            ) as r:
                assert r.read() == b"busy"
        for index, client in enumerate(clients):
            client.send(f"n{index}")
        assert [c.recv(timeout(5)) for c in clients] == [f"n{i}" for i in range(count)]
    finally:
        for client in clients:
            client.close()


def _threads_and_fds(pid: int) -> tuple[int, int]:
    import os

    return len(os.listdir(f"/proc/{pid}/task")), len(os.listdir(f"/proc/{pid}/fd"))


def test_no_thread_or_file_descriptor_leaks_after_many_connections(server):
    """Clean closes, vanished clients and garbage leave threads and fds where they were."""
    pids = server.worker_pids()

    def exercise() -> None:
        for round_ in range(12):
            if round_ % 3 == 0:
                raw = RawWebSocket(server.port, server.path("/echo/"), Origin=server.origin)
                raw.vanish()
            elif round_ % 3 == 1:
                raw = RawWebSocket(server.port, server.path("/echo/"), Origin=server.origin)
                raw.sock.sendall(b"\xff\xff\xff")
                raw.events_until_eof()
                raw.close()
            else:
                with connect_to(server, "/echo/") as client:
                    client.send("x")
                    client.recv(timeout(5))

    exercise()  # warm-up: thread pools and lazy imports settle
    time.sleep(0.5)
    before = {pid: _threads_and_fds(pid) for pid in pids}
    exercise()
    deadline = time.monotonic() + timeout(10)
    while time.monotonic() < deadline:
        after = {pid: _threads_and_fds(pid) for pid in pids}
        if all(after[p][0] <= before[p][0] and after[p][1] <= before[p][1] for p in pids):
            break
        time.sleep(0.1)
    assert after == before or all(
        after[p][0] <= before[p][0] and after[p][1] <= before[p][1] for p in pids
    ), (before, after)


def test_the_server_logs_no_error_for_normal_closes(server):
    """Normal WebSocket closes leave no traceback or error line in the server log."""
    with connect_to(server, "/echo/") as client:
        client.send("quiet")
        client.recv(timeout(5))
    log = server.log()
    for line in log.splitlines():
        assert "Broken pipe" not in line and "Socket error" not in line, line
    # uvicorn logs a traceback of its own for a client's invalid UTF-8 (and closes with 1007).
    expected = log.count("ValueError: boom in a WebSocket view") + log.count(
        "UnicodeDecodeError: 'utf-8' codec can't decode"
    )
    assert log.count("Traceback") == expected


def test_group_members_get_broadcasts_until_they_leave_or_close(server):
    """With the in-memory broker, members of a room get each other's broadcasts (not
    their own, excluded), stop after leave, and drop out of group_size when closed."""
    if server.kind == "gunicorn-sync":
        pytest.skip("4 worker processes: a group across them needs the Redis broker")
    room = f"/room/{server.kind}-{server.prefix.strip('/') or 'sync'}/"
    with connect_to(server, room) as alice, connect_to(server, room) as bob:
        for client in (alice, bob):
            assert client.recv(timeout(5)).startswith("in ")
        alice.send("say:hello")
        assert bob.recv(timeout(5)) == "hello"
        bob.send("bytes:raw")
        assert alice.recv(timeout(5)) == b"raw"
        alice.send("size")
        assert alice.recv(timeout(5)) == "2"  # and not "hello": the sender was excluded
        bob.send("leave")
        assert bob.recv(timeout(5)) == "left"
        alice.send("all:anyone?")
        assert alice.recv(timeout(5)) == "anyone?"
        with pytest.raises(TimeoutError):
            bob.recv(0.3)
        with connect_to(server, room) as carol:
            assert carol.recv(timeout(5)).startswith("in ")
        deadline = time.monotonic() + timeout(5)
        while True:
            alice.send("size")
            if alice.recv(timeout(5)) == "1":
                break
            assert time.monotonic() < deadline, "a closed connection stayed in its group"
            time.sleep(0.05)
