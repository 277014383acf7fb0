"""The demo project that `make demo` serves works as the README says."""

import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from websockets.sync.client import connect

from .conftest import READY, ROOT, timeout

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


@pytest.fixture(scope="module", params=list(DEMO_COMMANDS))
def demo(request):
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    process = subprocess.Popen(
        DEMO_COMMANDS[request.param],
        cwd=ROOT,
        env=env,
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
        process.wait(timeout(10))
        process.stdout.close()


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
