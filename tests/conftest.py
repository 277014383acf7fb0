"""Shared fixtures: real servers as subprocesses, real clients."""

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Every timeout in the tests scales with this factor, so a slow machine is not a flaky one.
TIMEOUT_FACTOR = float(os.environ.get("DJWS_TIMEOUT_FACTOR", "1"))


def timeout(seconds: float) -> float:
    """Scale a test timeout by DJWS_TIMEOUT_FACTOR."""
    return seconds * TIMEOUT_FACTOR


def gunicorn(worker: str, *options: str) -> list[str]:
    """The command line of a one-process gunicorn of the test project with ``worker``."""
    return [
        sys.executable, "-m", "gunicorn", "tests.wsgi:application", "-b", "127.0.0.1:0",
        "-k", worker, "--no-control-socket", *options,
    ]  # fmt: skip


def uvicorn(*options: str) -> list[str]:
    """The command line of uvicorn serving the test project's ASGI application."""
    return [
        sys.executable, "-m", "uvicorn", "tests.asgi:application", "--host", "127.0.0.1",
        "--port", "0", *options,
    ]  # fmt: skip


SERVER_COMMANDS = {
    "runserver": [sys.executable, "-m", "django", "runserver", "127.0.0.1:0", "--noreload"],
    "gunicorn-gthread": gunicorn("gthread", "--threads", "64"),
    "gunicorn-gevent": gunicorn("gevent"),
    "gunicorn-sync": gunicorn("sync", "--workers", "4", "--timeout", "0"),
    # uvicorn's default WebSocket implementation is websockets' sans-I/O one.
    "uvicorn": uvicorn(),
    "uvicorn-wsproto": uvicorn("--ws", "wsproto"),
    "daphne": [
        sys.executable,
        "-m",
        "daphne",
        "-b",
        "127.0.0.1",
        "-p",
        "0",
        "tests.asgi:application",
    ],
    "hypercorn": [sys.executable, "-m", "hypercorn", "-b", "127.0.0.1:0", "tests.asgi:application"],
}
READY = re.compile(
    rb"(?:Starting (?:WSGI )?development server at http://|Listening at: http://"
    rb"|Uvicorn running on http://|Listening on TCP address |Running on http://)"
    rb"127\.0\.0\.1:(\d+)"
)


@dataclass(frozen=True)
class Traits:
    """What a server does that our code cannot change; docs/deployment.md has the table."""

    #: A refusal reaches the client with the view's own status and body (else a bare 403).
    denial: bool = True
    #: Close reasons reach the client.
    close_reasons: bool = True
    #: The close code a view that raised ends with (daphne cannot send 1011).
    error_close_code: int = 1011
    #: Empty text messages are delivered.
    empty_text: bool = True
    #: permessage-deflate is negotiated by default.
    deflate: bool = True
    #: The code a view sees when the client drops the TCP connection without a close frame.
    vanish_code: int = 1006
    #: The view sees the client's own close code (hypercorn reports 1006 instead).
    client_close_code: bool = True
    #: A protocol error gets a close frame with its code (else the connection is dropped).
    protocol_error_close_frame: bool = True
    #: Malformed handshakes get our 400/426 and reason (else the server's own 4xx).
    our_handshake_errors: bool = True
    #: The close code of a message over WEBSOCKET_MAX_MESSAGE_SIZE (daphne's own 1 MiB cap wins).
    too_big_code: int = 1009


ASGI_HANDSHAKE = {"our_handshake_errors": False}
TRAITS = {
    "uvicorn": Traits(vanish_code=1005, **ASGI_HANDSHAKE),
    "uvicorn-wsproto": Traits(vanish_code=1005, protocol_error_close_frame=False, **ASGI_HANDSHAKE),
    "daphne": Traits(
        denial=False,
        close_reasons=False,
        error_close_code=4011,
        empty_text=False,
        deflate=False,
        protocol_error_close_frame=False,
        too_big_code=1006,
        **ASGI_HANDSHAKE,
    ),
    "hypercorn": Traits(
        client_close_code=False, protocol_error_close_frame=False, **ASGI_HANDSHAKE
    ),
}


@dataclass
class Server:
    """A server subprocess serving the test project."""

    kind: str
    process: subprocess.Popen
    port: int
    log_path: Path
    results: Path
    env: dict = field(default_factory=dict)
    #: Where the views under test live: "" for the sync views, "/async" for their twins.
    prefix: str = ""

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def is_asgi(self) -> bool:
        return self.kind in ASGI_SERVERS

    @property
    def traits(self) -> Traits:
        return TRAITS.get(self.kind, Traits())

    def path(self, path: str) -> str:
        """The path of a view under test, sync or async as the test runs."""
        return self.prefix + path

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, wait: float = 5.0) -> str:
        """Wait until ``text`` appears in the server log; return the log."""
        deadline = time.monotonic() + timeout(wait)
        while text not in (log := self.log()):
            assert time.monotonic() < deadline, f"{text!r} never logged:\n{log}"
            time.sleep(0.05)
        return log

    def result(self, name: str, wait: float = 5.0):
        """Read what a view recorded, waiting for it to appear."""
        import json

        path = self.results / f"{name}.json"
        deadline = time.monotonic() + timeout(wait)
        while time.monotonic() < deadline:
            if path.exists():
                try:
                    value = json.loads(path.read_text())
                except ValueError:
                    pass
                else:
                    path.unlink()
                    return value
            time.sleep(0.02)
        raise AssertionError(f"view never recorded {name!r}; server log:\n{self.log()}")

    def worker_pids(self) -> list[int]:
        """The pids serving requests: gunicorn's workers, or runserver itself."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        pids = [int(p) for p in children.read_text().split()] if children.exists() else []
        return pids if self.kind.startswith("gunicorn") else [self.process.pid]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout(10))
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start_server(
    kind: str,
    *,
    middleware: bool = False,
    extra_env: dict | None = None,
    extra_args: tuple[str, ...] = (),
) -> Server:
    """Start a server of ``kind`` on a free port; return once it listens."""
    results = Path(tempfile.mkdtemp(prefix=f"djws-{kind}-"))
    log_path = results / "server.log"
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        PYTHONUNBUFFERED="1",
        DJWS_RESULTS=str(results),
        DJWS_MIDDLEWARE="1" if middleware else "0",
    )
    env.update(extra_env or {})
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*SERVER_COMMANDS[kind], *extra_args],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout(30)
    while time.monotonic() < deadline:
        match = READY.search(log_path.read_bytes())
        if match:
            server = Server(kind, process, int(match.group(1)), log_path, results, env)
            if kind.startswith("gunicorn"):
                time.sleep(0.3 * TIMEOUT_FACTOR)  # workers boot after the arbiter listens
            return server
        if process.poll() is not None:
            break
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    raise RuntimeError(f"{kind} did not start:\n{log_path.read_text(errors='replace')}")


WSGI_SERVERS = ["runserver", "gunicorn-gthread", "gunicorn-gevent", "gunicorn-sync"]
ASGI_SERVERS = ["uvicorn", "uvicorn-wsproto", "daphne", "hypercorn"]
ALL_SERVERS = WSGI_SERVERS + ASGI_SERVERS
#: Async views need an event loop per OS thread: gevent's greenlets share one thread, and
#: Django's async_to_sync refuses to start a second loop there (docs/deployment.md).
NO_ASYNC_VIEWS = {"gunicorn-gevent"}


@pytest.fixture(scope="module", params=ALL_SERVERS)
def running_server(request):
    """Each server we support, without WebSocketMiddleware."""
    running = start_server(request.param)
    yield running
    running.stop()


@pytest.fixture(params=["sync", "async"])
def server(request, running_server):
    """Each server we support, with its sync views and then their async twins."""
    return replace(running_server, prefix="/async" if request.param == "async" else "")


@pytest.fixture(scope="module", params=ALL_SERVERS)
def server_with_middleware(request):
    """Each server we support, with WebSocketMiddleware installed."""
    running = start_server(request.param, middleware=True)
    yield running
    running.stop()


def pytest_collection_modifyitems(config, items):
    """Leave out the server and view combinations we do not support (NO_ASYNC_VIEWS)."""
    unsupported = [
        item
        for item in items
        if (params := getattr(item, "callspec", None))
        and params.params.get("server") == "async"
        and params.params.get("running_server") in NO_ASYNC_VIEWS
    ]
    if unsupported:
        config.hook.pytest_deselected(items=unsupported)
        items[:] = [item for item in items if item not in unsupported]


def pytest_terminal_summary(terminalreporter):
    """Print the figures tests left as report sections (test_leaks.py), from every worker."""
    title = "Captured resource figures call"
    lines = [
        content
        for status in ("passed", "failed")
        for report in terminalreporter.getreports(status)
        for name, content in report.sections
        if name == title
    ]
    if lines:
        terminalreporter.write_sep("-", "resources before and after the leak tests' connections")
        for line in sorted(lines):
            terminalreporter.write_line(line)
