"""The demo project that `make demo` serves works as the README says."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest
from websockets.sync.client import connect

from .conftest import READY, ROOT, timeout
from .redis_support import REDIS_URL, delete_prefix, require_redis, unique_prefix

pytestmark = pytest.mark.server


DEMO_COMMANDS = {
    # `make demo`
    "runserver": [sys.executable, "example/manage.py", "runserver", "127.0.0.1:0", "--noreload"],
    # `make demo-asgi`
    "uvicorn": [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        "example",
        "example_project.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
    ],
}


@contextlib.contextmanager
def run_demo(kind, extra_env=None):
    """Serve the demo with ``kind`` on a free port; yield the port."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DJANGO_SETTINGS_MODULE", "WEBSOCKET_BROKER_URL", "WEBSOCKET_BROKER_PREFIX"}
    }
    process = subprocess.Popen(
        DEMO_COMMANDS[kind],
        cwd=ROOT,
        env={**env, **(extra_env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    output = b""
    deadline = time.monotonic() + timeout(30)
    os.set_blocking(process.stdout.fileno(), False)
    try:
        while not (match := READY.search(output)):
            assert time.monotonic() < deadline and process.poll() is None, output.decode()
            output += process.stdout.read() or b""
            time.sleep(0.05)
        yield int(match.group(1))
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout(10))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        process.stdout.close()


@pytest.fixture(scope="module", params=list(DEMO_COMMANDS))
def demo(request):
    with run_demo(request.param) as port:
        yield port


def test_the_demo_page_loads_with_its_assets(demo):
    """The page and its script and style are served."""
    with urllib.request.urlopen(f"http://127.0.0.1:{demo}/") as response:
        page = response.read().decode()
    assert "django-websocket demo" in page
    for asset in ["demo.js", "demo.css"]:
        assert asset in page


def test_the_demo_echo_and_lowercase_views_answer(demo):
    """The page's WebSockets (echo, lower case) and the plain GET all answer."""
    origin = f"http://127.0.0.1:{demo}"
    with connect(f"ws://127.0.0.1:{demo}/ws/echo/", origin=origin) as client:
        client.send("Hello demo")
        assert client.recv(timeout(5)) == "Hello demo"
    with connect(f"ws://127.0.0.1:{demo}/lower_case/", origin=origin) as client:
        client.send("LOUD")
        assert client.recv(timeout(5)) == "loud"
    with urllib.request.urlopen(f"{origin}/lower_case/?message=QUIET") as response:
        assert response.read() == b"quiet"


# The chat room.


def new_room():
    """A room no other test uses (the demo server lives for the whole module)."""
    return f"test-{uuid.uuid4().hex[:12]}"


def chat(port, room):
    """A client of the room's WebSocket on the demo at ``port``."""
    return connect(
        f"ws://127.0.0.1:{port}/ws/chat/{room}/",
        origin=f"http://127.0.0.1:{port}",
        open_timeout=timeout(10),
    )


def send(client, **message):
    client.send(json.dumps(message))


def receive(client):
    return json.loads(client.recv(timeout(5)))


def assert_silent(client, wait=0.3):
    """Nothing more arrives on ``client`` for ``wait`` seconds."""
    with pytest.raises(TimeoutError):
        client.recv(wait)


def test_the_chat_page_and_its_link_on_the_index(demo):
    """/chat/<room>/ serves the room's page; the index links to the lobby; bad names 404."""
    origin = f"http://127.0.0.1:{demo}"
    with urllib.request.urlopen(f"{origin}/") as response:
        assert 'href="/chat/lobby/"' in response.read().decode()
    with urllib.request.urlopen(f"{origin}/chat/lobby/") as response:
        page = response.read().decode()
    for expected in ['data-ws-path="/ws/chat/lobby/"', "chat.js", "demo.css"]:
        assert expected in page
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(f"{origin}/chat/no%20spaces/")
    error.value.close()
    assert error.value.code == 404


def test_two_clients_in_a_room_chat_and_see_joins_and_leaves(demo):
    """Each sees the other's messages, and the joins and leaves with the room's count."""
    room = new_room()
    with chat(demo, room) as ann:
        send(ann, type="hello", nick="  ann  ")
        assert receive(ann) == {"type": "joined", "nick": "ann", "count": 1}
        with chat(demo, room) as bob:
            send(bob, type="hello", nick="bob")
            joined = {"type": "joined", "nick": "bob", "count": 2}
            assert receive(bob) == joined
            assert receive(ann) == joined

            # Everyone, the sender included, gets each message, in the same order.
            send(ann, type="say", text="hi bob")
            message = {"type": "message", "nick": "ann", "text": "hi bob"}
            assert receive(ann) == message
            assert receive(bob) == message
            send(bob, type="say", text="<b>hi</b> ann & co ")
            message = {"type": "message", "nick": "bob", "text": "<b>hi</b> ann & co"}
            assert receive(bob) == message
            assert receive(ann) == message
        assert receive(ann) == {"type": "left", "nick": "bob", "count": 1}
        assert_silent(ann)
    # The room is empty again: a newcomer counts only itself.
    with chat(demo, room) as cid:
        send(cid, type="hello", nick="cid")
        assert receive(cid) == {"type": "joined", "nick": "cid", "count": 1}


def test_the_chat_ignores_malformed_input(demo):
    """Bad JSON, binary frames, unknown types, say before hello: ignored; bad nicks: an error."""
    room = new_room()
    with chat(demo, room) as client:
        client.send("not json")
        client.send(b"\x00\x01")
        client.send("[1, 2]")
        send(client, type="say", text="before hello")
        send(client, type="dance")
        assert_silent(client)
        for nick in ["", "   ", "x" * 33, 42, None, "tab\there"]:
            send(client, type="hello", nick=nick)
            assert receive(client)["type"] == "error"
        send(client, type="hello", nick="x" * 32)
        assert receive(client) == {"type": "joined", "nick": "x" * 32, "count": 1}
        send(client, type="hello", nick="again")  # a second hello changes nothing
        for text in ["", "   ", 7, None]:
            send(client, type="say", text=text)
        assert_silent(client)
        send(client, type="say", text="y" * 5000)
        assert receive(client) == {"type": "message", "nick": "x" * 32, "text": "y" * 2000}


def test_the_chat_spans_two_servers_over_redis():
    """With WEBSOCKET_BROKER_URL, a client on runserver and one on uvicorn share a room."""
    require_redis()
    prefix = unique_prefix()
    env = {"WEBSOCKET_BROKER_URL": REDIS_URL, "WEBSOCKET_BROKER_PREFIX": prefix}
    room = new_room()
    try:
        with (
            run_demo("runserver", env) as wsgi_port,
            run_demo("uvicorn", env) as asgi_port,
            chat(wsgi_port, room) as ann,
        ):
            send(ann, type="hello", nick="ann")
            assert receive(ann) == {"type": "joined", "nick": "ann", "count": 1}
            with chat(asgi_port, room) as bob:
                send(bob, type="hello", nick="bob")
                joined = {"type": "joined", "nick": "bob", "count": 2}
                assert receive(bob) == joined
                assert receive(ann) == joined
                send(ann, type="say", text="from runserver")
                message = {"type": "message", "nick": "ann", "text": "from runserver"}
                assert receive(ann) == message
                assert receive(bob) == message
                send(bob, type="say", text="from uvicorn")
                message = {"type": "message", "nick": "bob", "text": "from uvicorn"}
                assert receive(bob) == message
                assert receive(ann) == message
            left = receive(ann)
            assert (left["type"], left["nick"]) == ("left", "bob")
            assert left["count"] == 1  # group_size waits for this process's own writes
            # join() waits for its presence write, queued after bob's leave on the same
            # server: a newcomer there counts ann and itself, exactly.
            with chat(asgi_port, room) as cid:
                send(cid, type="hello", nick="cid")
                joined = {"type": "joined", "nick": "cid", "count": 2}
                assert receive(cid) == joined
                assert receive(ann) == joined
    finally:
        delete_prefix(REDIS_URL, prefix)
