"""Our runserver: Django's options, autoreload and static files kept, WebSockets added."""

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from django.core.management.base import CommandError
from websockets.sync.client import connect

from django_websocket.management.commands.runserver import Command
from django_websocket.wsgi import WebSocketWSGIServer

from .conftest import READY, ROOT, timeout

pytestmark = pytest.mark.server


def test_the_command_extends_staticfiles_runserver():
    """With staticfiles installed, our command is a staticfiles runserver with our server."""
    from django.contrib.staticfiles.management.commands.runserver import Command as Static

    assert issubclass(Command, Static) and Command.server_cls is WebSocketWSGIServer


def test_multithreaded_is_accepted_for_compatibility():
    """--multithreaded parses (the original's option); Django's options remain."""
    parser = Command().create_parser("manage.py", "runserver")
    options = parser.parse_args(["--multithreaded", "--nostatic", "--noreload", "8001"])
    assert options.multithreaded and not options.use_static_handler and not options.use_reloader


def start_autoreloading_runserver(log, *options: str) -> tuple[subprocess.Popen, int]:
    """Start runserver with its autoreloader (two processes, in a session of their own);
    return the process and the port it listens on."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "django", "runserver", "127.0.0.1:0", *options,
             "--settings=tests.settings"],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + timeout(30)
    try:
        while not (match := READY.search(log.read_bytes())):
            assert time.monotonic() < deadline and process.poll() is None, log.read_text()
            time.sleep(0.05)
    except BaseException:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise
    return process, int(match.group(1))


def test_autoreload_static_files_and_websockets_together(tmp_path):
    """runserver with its autoreloader serves static files, plain views and WebSockets."""
    log = tmp_path / "runserver.log"
    process, port = start_autoreloading_runserver(log, "--multithreaded", "--insecure")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/static/test.css") as response:
            assert b"color" in response.read()
        with connect(f"ws://127.0.0.1:{port}/echo/", open_timeout=timeout(10)) as client:
            client.send("reloading server")
            assert client.recv(timeout(5)) == "reloading server"
        assert "Watching for file changes" in log.read_text() or process.poll() is None
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout(10))


def test_a_reload_closes_websockets_with_1012_and_ctrl_c_with_1001(tmp_path):
    """The autoreloader's restart says "service restart"; Ctrl-C (SIGINT to the
    process group, as a terminal sends it) says "going away"."""
    from websockets.exceptions import ConnectionClosed

    log = tmp_path / "runserver.log"
    process, port = start_autoreloading_runserver(log)
    try:
        client = connect(f"ws://127.0.0.1:{port}/echo/", open_timeout=timeout(10), legacy=True)
        client.send("before the reload")
        assert client.recv(timeout(5)) == "before the reload"
        # A watched file changes: the server restarts. The reloader watches the URLconf
        # from its first poll after the import, so touch it until the restart comes.
        with pytest.raises(ConnectionClosed):
            for _ in range(10):
                os.utime(ROOT / "tests" / "urls.py")
                with contextlib.suppress(TimeoutError):
                    client.recv(timeout(1.5))
        assert (client.close_code, client.close_reason) == (1012, "server restarting")

        deadline = time.monotonic() + timeout(30)
        while len(starts := READY.findall(log.read_bytes())) < 2:  # port 0: a new port
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        client = connect(f"ws://127.0.0.1:{int(starts[1])}/echo/", legacy=True)
        client.send("after the reload")
        assert client.recv(timeout(5)) == "after the reload"
        os.killpg(process.pid, signal.SIGINT)
        with pytest.raises(ConnectionClosed):
            client.recv(timeout(10))
        assert (client.close_code, client.close_reason) == (1001, "server shutting down")
        assert process.wait(timeout(10)) == 0
        assert "Traceback" not in log.read_text(), log.read_text()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_nothreading_warns_that_a_websocket_blocks_everything(capsys):
    """--nothreading prints a warning before serving."""
    command = Command()
    command.stderr.write = lambda message, *a, **k: print(message, file=sys.stderr)
    options = {
        "use_threading": False,
        "addrport": "127.0.0.1:notaport",
        "use_ipv6": False,
        "use_reloader": False,
        "skip_checks": True,
    }
    with pytest.raises(CommandError):
        command.handle(**options)
    assert "--nothreading" in capsys.readouterr().err
