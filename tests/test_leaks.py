"""Nothing leaks: thousands of connections, ended every way a client ends them, leave each
server's threads, file descriptors and memory where they were.

Half the connections end abruptly mid-message (a frame announced, part of it sent, then
FIN or RST), a quarter without a close frame, a quarter with the closing handshake; each
exchanges an echo first, so the view really runs. The figures come from /proc, for the
whole process tree (gunicorn's worker, not only its arbiter), and are printed at the end.

DJWS_LEAK_CONNECTIONS sets the number of connections per server (2,000 by default).
``python -m tests.soak`` is the long version: 20,000 connections, 500 chatting at once.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, replace

import pytest

from .conftest import start_server, timeout
from .soak import (
    TARGETS,
    Client,
    Server,
    Tally,
    Usage,
    churn,
    serve,
    settle,
    usage,
    wait_for_release,
    warm_up,
)

pytestmark = pytest.mark.server

CONNECTIONS = int(os.environ.get("DJWS_LEAK_CONNECTIONS", "2000"))
#: The report section that tests/conftest.py prints after the run.
FIGURES_SECTION = "resource figures"
#: Connections open at once.
CONCURRENCY = 50


def objects_bound(connections: int) -> int:
    """How many more objects the server's garbage collector may track once ``connections``
    are over: one for every ten. Measured on every server: -14 to +3 after 2,000. A
    connection left behind leaves dozens (its request and META, its WebSocket, transport
    and engine objects), so a leak in any one of the four ways to end fails this."""
    return connections // 10


def memory_bound_kb(connections: int) -> int:
    """How much the memory the server holds may grow over ``connections``: 24 MB plus 4 kB
    each (32 MB for 2,000), for leaks the object count misses (bytes, C buffers).

    "Holds": RSS once the server has collected garbage and glibc has handed its free
    pages back (tests/views.memory). Without that, RSS also counts the zlib buffers of
    closed connections that glibc keeps for later in its arenas: +5 to +80 MB after
    2,000, flat from one run to the next. Measured on 2 CPUs: +1 to +7 MB after 2,000;
    hypercorn's swings between readings by up to 17 MB whatever the load did.
    """
    return 24 * 1024 + 4 * connections


#: How long the server may take to let go of threads and fds once the clients are gone:
#: a dropped client is noticed at once; WEBSOCKET_CLOSE_TIMEOUT is 2 s in the tests.
RELEASE_WITHIN = 15.0


@dataclass
class Figures:
    """What a server held before and after a run of connections."""

    target: str
    count: int
    tally: Tally
    seconds: float
    baseline: Usage
    after: Usage
    objects_before: int
    objects_after: int
    raw_rss_before_kb: int
    raw_rss_after_kb: int
    release_seconds: float

    @property
    def memory_growth_kb(self) -> int:
        return self.after.rss_kb - self.baseline.rss_kb

    def problems(self) -> list[str]:
        """What leaked, in words; empty when nothing did."""
        found = []
        tally = self.tally
        if tally.failures or tally.echoed != self.count:
            found.append(f"{tally.echoed} echoes; failures: {dict(tally.failures)}")
        if self.after.threads > self.baseline.threads:
            found.append(f"threads {self.baseline.threads} -> {self.after.threads}")
        if self.after.fds > self.baseline.fds:
            found.append(f"file descriptors {self.baseline.fds} -> {self.after.fds}")
        objects = self.objects_after - self.objects_before
        if objects > objects_bound(self.count):
            found.append(f"{objects} more objects (bound {objects_bound(self.count)})")
        bound = memory_bound_kb(self.count)
        if self.memory_growth_kb > bound:
            found.append(
                f"memory +{self.memory_growth_kb / 1024:.1f} MB (bound {bound / 1024:.1f} MB)"
            )
        return found

    def __str__(self) -> str:
        tally = self.tally
        raw = (self.raw_rss_after_kb - self.raw_rss_before_kb) / 1024
        return (
            f"{self.target:<18} {tally.opened} connections in {self.seconds:4.1f} s | "
            f"threads {self.baseline.threads} -> {self.after.threads}, "
            f"fds {self.baseline.fds} -> {self.after.fds} "
            f"(after {self.release_seconds:.1f} s) | "
            f"objects {self.objects_after - self.objects_before:+d} | "
            f"RSS held {self.baseline.rss_kb / 1024:.1f} -> {self.after.rss_kb / 1024:.1f} MB "
            f"({self.memory_growth_kb / 1024:+.1f}), untrimmed "
            f"{self.raw_rss_before_kb / 1024:.1f} -> {self.raw_rss_after_kb / 1024:.1f} MB "
            f"({raw:+.1f})"
        )


def measure(
    server: Server,
    path: str,
    count: int,
    label: str,
    *,
    warm: int = 400,
    release_within: float = RELEASE_WITHIN,
) -> Figures:
    """Warm the server up, read its baseline, run ``count`` connections to ``path``, and
    read it again once it has let go of them (or ``release_within`` seconds have passed)."""
    pid = server.process.pid
    # 64 at once, as many as gthread's pool has threads (conftest), then ``warm`` more.
    warmed = asyncio.run(warm_up(server, "/echo/", 64, churned=warm))
    assert not warmed.failures, warmed.failures
    time.sleep(0.5)
    raw_before = usage(pid).rss_kb
    objects_before = settle(server)
    time.sleep(0.5)
    baseline = usage(pid)
    started = time.monotonic()
    tally = asyncio.run(churn(server, path, count, CONCURRENCY))
    seconds = time.monotonic() - started
    raw_after = usage(pid).rss_kb
    released, release = wait_for_release(pid, baseline, timeout(release_within))
    objects_after = settle(server)
    time.sleep(0.5)
    after = replace(released, rss_kb=usage(pid).rss_kb)
    return Figures(
        label, count, tally, seconds, baseline, after, objects_before, objects_after,
        raw_before, raw_after, release,
    )  # fmt: skip


@pytest.fixture
def figures_report(request):
    """Leaves a test's figures in a report section, which conftest prints at the end.

    A report section travels from pytest-xdist's workers to the terminal, where a
    worker's own prints do not.
    """

    def report(figures: Figures) -> None:
        request.node.add_report_section("call", FIGURES_SECTION, str(figures))

    return report


LEAK_TARGETS = [
    "runserver",
    "gunicorn-gthread",
    "gunicorn-gevent",
    "uvicorn",
    "uvicorn-async",
    "daphne",
    "hypercorn",
]


@pytest.mark.timeout(timeout(180))
@pytest.mark.parametrize("target", LEAK_TARGETS)
def test_connections_ended_every_way_leave_no_thread_fd_or_memory_behind(target, figures_report):
    """Connections ended mid-message, without a close frame or with one leave nothing behind."""
    server = serve(TARGETS[target], concurrency=CONCURRENCY)
    try:
        figures = measure(server, "/echo/", CONNECTIONS, target)
    finally:
        server.stop()
    figures_report(figures)
    assert figures.tally.ended.total() == CONNECTIONS, figures.tally.ended
    assert not figures.problems(), f"{figures.problems()}\n{figures}"


def test_the_checks_catch_a_view_that_leaks(figures_report):
    """The checks above fail for a view that keeps a thread, an fd and 200 kB per connection."""
    server = serve(TARGETS["gunicorn-gthread"], concurrency=CONCURRENCY)
    try:
        figures = measure(
            server, "/leaky/?leak=thread,fd,memory", 200, "leaky view", warm=0, release_within=2
        )
    finally:
        server.stop()
    figures_report(figures)
    found = " ".join(figures.problems())
    for leak in ("threads", "file descriptors", "objects", "memory"):
        assert leak in found, figures


# ---- a close frame, and then nothing: the connection must still be let go -------------

#: Keepalive pings also end such a connection; this test is about the close timeout.
NO_KEEPALIVE = {"DJWS_PING_INTERVAL": "3600", "DJWS_PING_TIMEOUT": "3600"}
HALF_CLOSED_SERVERS = ["runserver", "gunicorn-gthread", "gunicorn-gevent", "uvicorn", "daphne",
                       "hypercorn"]  # fmt: skip


@pytest.mark.parametrize("kind", HALF_CLOSED_SERVERS)
def test_a_client_that_sends_a_close_frame_but_keeps_tcp_open_is_let_go(kind):
    """A client that answers nothing after its close frame holds the server no longer than
    WEBSOCKET_CLOSE_TIMEOUT (2 s here), keepalive off."""
    server = start_server(kind, extra_env=NO_KEEPALIVE)
    try:
        asyncio.run(warm_up(server, "/echo/", 20, churned=20))  # gthread's pool: 20 threads
        time.sleep(0.5)
        baseline = usage(server.process.pid)

        async def half_close() -> tuple[Usage, float]:
            clients = []
            for number in range(10):
                client = await Client.connect(server.port, "/echo/", server.origin)
                await client.send(f"before closing {number}")
                assert await client.recv() == f"before closing {number}"
                await client.close_frame_only()
                clients.append(client)
            # The clients stay connected: the server must hang up on them.
            try:
                return await asyncio.to_thread(
                    wait_for_release, server.process.pid, baseline, timeout(2 + 4)
                )
            finally:
                for client in clients:
                    client.abort()

        after, took = asyncio.run(half_close())
    finally:
        server.stop()
    assert after.threads <= baseline.threads and after.fds <= baseline.fds, (
        f"{kind} still holds half-closed connections {took:.1f} s on: {baseline} -> {after}"
    )
