"""Soak: hundreds of WebSocket clients chat with a real server for minutes; nothing leaks.

``make soak`` runs it on each main transport in turn: 20,000 connections in all,
500 at a time, each one chatting (every message echoed, none lost) until it ends
in one of four ways: abruptly mid-message (FIN, or RST), without a close frame,
or with a normal close. The server's threads, file descriptors and memory are
read from /proc every few seconds; the report (Markdown) says whether memory
stayed flat and whether everything came back to where it started::

    python -m tests.soak                                  # every main transport, 10 min each
    python -m tests.soak --target uvicorn-async --duration 30 --connections 2000

The clients and the /proc readings here also serve tests/test_leaks.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import statistics
import struct
import sys
import time
import urllib.request
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import DATA_OPCODES, Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from .conftest import Server, start_server, timeout

# ---- what the server holds, read from /proc --------------------------------------------


@dataclass(frozen=True)
class Usage:
    """Threads, open file descriptors and resident memory of a process tree."""

    threads: int
    fds: int
    rss_kb: int

    def __str__(self) -> str:
        return f"{self.threads} threads, {self.fds} fds, {self.rss_kb / 1024:.1f} MB RSS"


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (gunicorn's arbiter and its worker, for example)."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                children = Path(f"/proc/{current}/task/{task}/children").read_text()
                todo.extend(int(child) for child in children.split())
    return pids


def usage(pid: int) -> Usage:
    """What the process tree under ``pid`` holds now (processes that just exited count 0)."""
    threads = fds = rss_kb = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            fds += len(os.listdir(f"/proc/{member}/fd"))
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("Threads:"):
                    threads += int(line.split()[1])
                elif line.startswith("VmRSS:"):
                    rss_kb += int(line.split()[1])
    return Usage(threads, fds, rss_kb)


def trim(server: Server) -> int:
    """Have the server collect garbage and hand its free heap pages back (tests/views.memory);
    return how many objects its garbage collector tracks.

    The RSS read after this is the memory the server holds; without it, RSS also counts
    what glibc keeps in its per-thread arenas once a connection's buffers are freed.
    """
    url = f"http://127.0.0.1:{server.port}/memory/"
    with urllib.request.urlopen(url, timeout=timeout(10)) as response:
        return int(json.loads(response.read())["objects"])


def settle(server: Server, wait: float = 10.0) -> int:
    """Wait until the count of the server's objects holds still for a second (connections
    still being torn down, such as uvicorn's last ones, leave ~2,000 for up to a second);
    trim (see :func:`trim`) and return that count."""
    deadline = time.monotonic() + timeout(wait)
    counts = [trim(server)]
    while time.monotonic() < deadline:
        time.sleep(0.5)
        counts.append(trim(server))
        if len(counts) >= 3 and max(counts[-3:]) - min(counts[-3:]) <= 10:
            break
    return counts[-1]


def wait_for_release(pid: int, baseline: Usage, wait: float) -> tuple[Usage, float]:
    """Poll until threads and fds are back to ``baseline`` (at most ``wait`` seconds).

    Returns the last reading and how long it took.
    """
    started = time.monotonic()
    deadline = started + wait
    while True:
        now = usage(pid)
        if now.threads <= baseline.threads and now.fds <= baseline.fds:
            return now, time.monotonic() - started
        if time.monotonic() >= deadline:
            return now, time.monotonic() - started
        time.sleep(0.2)


# ---- a client that can misbehave on purpose --------------------------------------------


class Closed(Exception):
    """The server closed the connection (or the TCP connection ended) before an answer."""


class Client:
    """One WebSocket client on an asyncio stream, driven by websockets' sans-I/O protocol.

    Light enough to run thousands from one process, and able to end a connection
    the ways real clients do: politely, by vanishing, or halfway through a frame.
    It offers permessage-deflate, as browsers do.
    """

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, protocol: ClientProtocol
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.protocol = protocol
        self.messages: deque[str | bytes] = deque()
        self._fragments: list[bytes] = []
        self._opcode = Opcode.TEXT  # of the message being reassembled
        self._eof = False

    @classmethod
    async def connect(cls, port: int, path: str, origin: str, *, deflate: bool = True) -> Client:
        """Open a WebSocket to ``path``; raise Closed if the server refuses it."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**20)
        extensions = [ClientPerMessageDeflateFactory()] if deflate else None
        protocol = ClientProtocol(
            parse_uri(f"ws://127.0.0.1:{port}{path}"), extensions=extensions, max_size=None
        )
        request = protocol.connect()
        request.headers["Origin"] = origin
        protocol.send_request(request)
        client = cls(reader, writer, protocol)
        try:
            await client._flush()
            while protocol.state is State.CONNECTING and not client._eof:
                await client._read()
            if protocol.state is not State.OPEN:
                raise Closed(f"handshake failed: {protocol.handshake_exc}")
        except BaseException:
            client.writer.transport.abort()
            raise
        return client

    async def _flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.writer.write(data)
            elif self.writer.can_write_eof() and not self.writer.is_closing():
                self.writer.write_eof()
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()

    async def _read(self) -> None:
        try:
            data = await self.reader.read(2**16)
        except ConnectionError:
            data = b""
        if data:
            self.protocol.receive_data(data)
        else:
            self._eof = True
            self.protocol.receive_eof()
        for event in self.protocol.events_received():
            # The handshake's Response, pings and close frames need nothing here.
            if isinstance(event, Frame) and event.opcode in DATA_OPCODES:
                if event.opcode is not Opcode.CONT:
                    self._opcode = event.opcode
                self._fragments.append(bytes(event.data))
                if event.fin:
                    data = b"".join(self._fragments)
                    self._fragments = []
                    self.messages.append(data.decode() if self._opcode is Opcode.TEXT else data)
        await self._flush()  # pongs and the answer to a close frame

    async def send(self, message: str) -> None:
        """Send one text message."""
        if self.protocol.state is not State.OPEN:
            raise Closed(f"cannot send: the connection is {self.protocol.state.name}")
        self.protocol.send_text(message.encode())
        await self._flush()

    async def recv(self) -> str | bytes:
        """Return the next message; raise Closed once the connection is over."""
        while not self.messages:
            if self._eof or self.protocol.state is State.CLOSED:
                raise Closed(f"closed: {self.protocol.close_rcvd}")
            await self._read()
        return self.messages.popleft()

    async def close(self) -> None:
        """The closing handshake (RFC 6455 section 7): close frame, its answer, then EOF."""
        if self.protocol.state is State.OPEN:
            self.protocol.send_close(1000)
            await self._flush()
        while not self._eof:
            await self._read()
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()

    async def drop(self) -> None:
        """End the TCP connection cleanly (FIN) without any close frame."""
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()

    async def abort_mid_message(self, *, reset: bool) -> None:
        """Announce a 64 KiB text message, send 1 KiB of it, then FIN (or RST if ``reset``)."""
        frame = Frame(Opcode.TEXT, b"x" * 2**16).serialize(mask=True, extensions=[])
        self.writer.write(frame[: 14 + 1024])  # 2 + 8 (length) + 4 (mask) header bytes
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()
        if reset:
            sock = self.writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.writer.transport.abort()
        else:
            await self.drop()

    async def close_frame_only(self) -> None:
        """Send a close frame, read the answer, and keep the TCP connection open."""
        self.protocol.send_close(1000)
        for data in self.protocol.data_to_send():
            if data:
                self.writer.write(data)
        await self.writer.drain()
        while not self._eof and self.protocol.close_rcvd is None:
            await self._read()

    def abort(self) -> None:
        """Drop the connection at once, whatever its state (cleanup after a failure)."""
        self.writer.transport.abort()


# ---- one connection's life, and many of them -------------------------------------------

#: How connection number ``n`` ends: ``END_MODES[n % 4]``. Half end abruptly mid-message
#: (a FIN or an RST after a partial frame), a quarter without a close frame, a quarter
#: with the closing handshake.
END_MODES = ("abort-fin", "abort-rst", "no-close-frame", "close")


@dataclass
class Tally:
    """What the clients saw."""

    opened: int = 0
    sent: int = 0
    echoed: int = 0
    ended: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.sent - self.echoed

    def fail(self, exc: BaseException) -> None:
        self.failures[f"{type(exc).__name__}: {exc}"[:160]] += 1


def payload(number: int, sequence: int, size: int) -> str:
    """A message that names its connection and place, padded to ``size`` characters."""
    head = f"{number}:{sequence}:"
    return head + "m" * max(0, size - len(head))


async def end_connection(client: Client, mode: str) -> None:
    """End ``client``'s connection the way ``mode`` (one of END_MODES) says."""
    if mode == "abort-fin":
        await client.abort_mid_message(reset=False)
    elif mode == "abort-rst":
        await client.abort_mid_message(reset=True)
    elif mode == "no-close-frame":
        await client.drop()
    else:
        await client.close()


async def echo(client: Client, message: str, tally: Tally) -> None:
    """Send ``message`` and check that the same comes back, counting both."""
    tally.sent += 1
    await client.send(message)
    answer = await client.recv()
    if answer != message:
        raise AssertionError(f"echo of {message[:20]!r} was {answer[:20]!r}")
    tally.echoed += 1


async def end_numbered(client: Client, number: int, tally: Tally) -> None:
    """End connection ``number`` the way END_MODES gives its turn, counting it."""
    mode = END_MODES[number % len(END_MODES)]
    await end_connection(client, mode)
    tally.ended[mode] += 1


async def converse(
    server: Server,
    path: str,
    number: int,
    tally: Tally,
    *,
    until: float | None = None,
    interval: float = 1.0,
    size: int = 64,
    limit: float = 30.0,
    deflate: bool = True,
) -> None:
    """Open a connection, echo one message (or chat until ``until``), then end it."""
    try:
        async with asyncio.timeout(timeout(limit) + max(0.0, (until or 0) - time.monotonic())):
            client = await Client.connect(
                server.port, server.path(path), server.origin, deflate=deflate
            )
            tally.opened += 1
            try:
                sequence = 0
                while True:
                    started = time.monotonic()
                    await echo(client, payload(number, sequence, size), tally)
                    tally.latencies.append(time.monotonic() - started)
                    sequence += 1
                    if until is None or time.monotonic() + interval > until:
                        break
                    await asyncio.sleep(interval * random.uniform(0.5, 1.5))
                await end_numbered(client, number, tally)
            except BaseException:
                client.abort()
                raise
    except (OSError, Closed, AssertionError, TimeoutError) as exc:
        tally.fail(exc)


async def churn(
    server: Server, path: str, count: int, concurrency: int, *, deflate: bool = True
) -> Tally:
    """Open ``count`` connections, ``concurrency`` at a time; each echoes once, then ends."""
    tally = Tally()
    numbers = iter(range(count))

    async def worker() -> None:
        for number in numbers:
            await converse(server, path, number, tally, deflate=deflate)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return tally


async def hold(server: Server, path: str, count: int) -> Tally:
    """Open ``count`` connections at once, echo once on each, then end them all together."""
    tally = Tally()
    gate = asyncio.Event()
    opened = [0]
    # A few connects at a time: runserver listens with a backlog of 10, and a dropped
    # SYN costs a second.
    connecting = asyncio.Semaphore(8)

    async def one(number: int) -> None:
        try:
            async with asyncio.timeout(timeout(30)):
                async with connecting:
                    client = await Client.connect(server.port, server.path(path), server.origin)
                tally.opened += 1
                try:
                    await echo(client, payload(number, 0, 64), tally)
                    opened[0] += 1
                    if opened[0] == count:
                        gate.set()
                    await gate.wait()
                    await end_numbered(client, number, tally)
                except BaseException:
                    client.abort()
                    raise
        except (OSError, Closed, AssertionError, TimeoutError) as exc:
            gate.set()
            tally.fail(exc)

    await asyncio.gather(*(one(number) for number in range(count)))
    return tally


async def warm_up(server: Server, path: str, concurrency: int, churned: int = 200) -> Tally:
    """Bring the server to its steady state before a baseline is read.

    Memory a process once used for ``concurrency`` live connections stays with it
    (allocator free lists, a thread pool that grew): holding that many open at
    once, twice, then churning some, makes that high-water mark part of the baseline.
    """
    parts = [
        await hold(server, path, concurrency),
        await hold(server, path, concurrency),
        await churn(server, path, churned, concurrency),
    ]
    tally = Tally()
    for part in parts:
        tally.opened += part.opened
        tally.sent += part.sent
        tally.echoed += part.echoed
        tally.failures.update(part.failures)
    return tally


# ---- the soak --------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A server and the views it runs: sync ones, or their async twins under /async."""

    name: str
    server: str
    prefix: str = ""


TARGETS = {
    target.name: target
    for target in (
        Target("runserver", "runserver"),
        Target("gunicorn-gthread", "gunicorn-gthread"),
        Target("gunicorn-gevent", "gunicorn-gevent"),
        Target("uvicorn", "uvicorn"),
        Target("uvicorn-async", "uvicorn", "/async"),
        Target("daphne", "daphne"),
        Target("daphne-async", "daphne", "/async"),
        Target("hypercorn", "hypercorn"),
        Target("hypercorn-async", "hypercorn", "/async"),
        Target("gunicorn-gthread-async", "gunicorn-gthread", "/async"),
    )
}
#: What ``make soak`` runs by default, in turn.
MAIN_TARGETS = ["runserver", "gunicorn-gthread", "gunicorn-gevent", "uvicorn", "uvicorn-async"]


def serve(target: Target, *, concurrency: int, extra_env: dict | None = None) -> Server:
    """Start ``target``'s server, sized for ``concurrency`` connections at once."""
    extra_args: tuple[str, ...] = ()
    if target.server == "gunicorn-gthread":
        # Each WebSocket holds one of the worker's threads for its whole life; the pool
        # never shrinks, so warm_up() fills it before a baseline is read.
        extra_args = ("--threads", str(max(64, concurrency)))
    elif target.server == "gunicorn-gevent":
        extra_args = ("--worker-connections", str(max(1000, concurrency + 50)))
    server = start_server(target.server, extra_args=extra_args, extra_env=extra_env)
    server.prefix = target.prefix
    return server


@dataclass
class Sample:
    at: float
    usage: Usage
    open_connections: int


@dataclass
class SoakResult:
    """One soak's figures, and whether it passed."""

    target: str
    #: Seconds of load asked for, and how long the run took (the last connections end after).
    load: float
    took: float
    tally: Tally
    samples: list[Sample]
    baseline: Usage
    after: Usage
    release_seconds: float
    sample_every: float

    #: Memory counts as flat when the last minute is within this of the first one.
    FLAT_KB = 10 * 1024
    FLAT_RATIO = 0.05

    @property
    def warmup(self) -> float:
        """Seconds left out before the first window: ramp-up (a minute of a 10-minute run)."""
        return min(60.0, self.load / 5)

    @property
    def width(self) -> float:
        """A minute, or a fifth of a short run (two samples at least)."""
        return max(min(60.0, self.load / 5), 2 * self.sample_every)

    def rss_around(self, start: float) -> float:
        """Median RSS (kB) of the samples in the window from ``start``."""
        width = self.width
        values = [s.usage.rss_kb for s in self.samples if start <= s.at < start + width]
        return statistics.median(values) if values else float("nan")

    @property
    def rss_first(self) -> float:
        return self.rss_around(self.warmup)

    @property
    def rss_middle(self) -> float:
        return self.rss_around((self.warmup + self.load - self.width) / 2)

    @property
    def rss_last(self) -> float:
        """The last minute under full load (not the drain after it)."""
        return self.rss_around(self.load - self.width)

    @property
    def memory_flat(self) -> bool:
        bound = max(self.FLAT_KB, self.FLAT_RATIO * self.rss_first)
        return self.rss_last - self.rss_first <= bound

    @property
    def released(self) -> bool:
        return self.after.threads <= self.baseline.threads and self.after.fds <= self.baseline.fds

    @property
    def passed(self) -> bool:
        tally = self.tally
        return self.memory_flat and self.released and tally.lost == 0 and not tally.failures


async def soak(
    server: Server,
    path: str,
    *,
    connections: int,
    concurrency: int,
    duration: float,
    interval: float,
    size: int,
    sample_every: float,
    progress: bool = True,
) -> tuple[Tally, list[Sample]]:
    """``concurrency`` clients chat for ``duration`` seconds over ``connections`` connections.

    Each slot opens connections one after another; each lives long enough that
    the slots share the connections out over the duration, chatting every
    ``interval`` seconds (jittered), and ends in its END_MODES way.
    """
    tally = Tally()
    samples: list[Sample] = []
    started = time.monotonic()
    deadline = started + duration
    remaining = [connections]
    numbers = iter(range(connections))
    live = [0]

    async def slot(index: int) -> None:
        # Spread the first connects over a few seconds: a SYN storm is not the point.
        await asyncio.sleep(min(5.0, duration / 10) * index / concurrency)
        for number in numbers:
            remaining[0] -= 1
            left = max(0.0, deadline - time.monotonic())
            # Each slot's share of what is left, jittered so closes are spread out.
            lifetime = left * concurrency / max(concurrency, remaining[0] + concurrency)
            lifetime *= random.uniform(0.5, 1.5) if number >= concurrency else random.random()
            live[0] += 1
            try:
                await converse(
                    server,
                    path,
                    number,
                    tally,
                    until=time.monotonic() + lifetime,
                    interval=interval,
                    size=size,
                )
            finally:
                live[0] -= 1

    async def sampler() -> None:
        while True:
            now = time.monotonic() - started
            samples.append(Sample(now, usage(server.process.pid), live[0]))
            if progress:
                print(
                    f"  {now:6.0f} s  {live[0]:4d} live  {tally.opened:6d} opened  "
                    f"{tally.echoed:8d} echoed  {tally.lost:3d} in flight/lost  "
                    f"{samples[-1].usage}",
                    flush=True,
                )
            await asyncio.sleep(sample_every)

    sampling = asyncio.create_task(sampler())
    try:
        await asyncio.gather(*(slot(index) for index in range(concurrency)))
    finally:
        sampling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampling
    return tally, samples


def run_target(target: Target, args: argparse.Namespace) -> SoakResult:
    """Warm ``target``'s server up, soak it, wait for it to let go, and say how it went."""
    print(f"== {target.name}: {args.connections} connections, {args.concurrency} at once, "
          f"{args.duration:.0f} s", flush=True)  # fmt: skip
    server = serve(target, concurrency=args.concurrency)
    pid = server.process.pid
    try:
        # At full concurrency: gthread's pool and the allocators reach their high-water mark.
        warm = asyncio.run(warm_up(server, "/echo/", args.concurrency, 600))
        time.sleep(1)
        trim(server)
        time.sleep(0.5)
        baseline = usage(pid)
        print(f"  warmed up ({warm.opened} connections): {baseline}", flush=True)
        began = time.monotonic()
        tally, samples = asyncio.run(
            soak(
                server,
                "/echo/",
                connections=args.connections,
                concurrency=args.concurrency,
                duration=args.duration,
                interval=args.interval,
                size=args.size,
                sample_every=args.sample_every,
            )
        )
        took = time.monotonic() - began
        untrimmed = usage(pid).rss_kb
        trim(server)
        after, release = wait_for_release(pid, baseline, timeout(30))
        print(f"  after: {after} ({untrimmed / 1024:.1f} MB before trimming)", flush=True)
        return SoakResult(
            target=target.name,
            load=args.duration,
            took=took,
            tally=tally,
            samples=samples,
            baseline=baseline,
            after=after,
            release_seconds=release,
            sample_every=args.sample_every,
        )
    finally:
        server.stop()


def report(results: list[SoakResult], args: argparse.Namespace) -> str:
    """The soak's figures as a Markdown report."""
    lines = [
        "# Soak report",
        "",
        f"{args.connections} connections per server, {args.concurrency} at once, chatting for "
        f"{args.duration:.0f} s (a {args.size}-character message every ~{args.interval:g} s "
        "per connection, each echoed); connections end as END_MODES says: a quarter each "
        "abruptly mid-message with FIN, with RST, without a close frame, and with a normal "
        f"close. Python {sys.version.split()[0]}, {os.cpu_count()} CPUs. RSS is the server's "
        "whole process tree, sampled every few seconds; memory counts as flat when the median "
        f"RSS of the last minute under load is within max({SoakResult.FLAT_KB // 1024} MB, "
        f"{SoakResult.FLAT_RATIO:.0%}) of the first minute after the ramp-up (the first "
        "minute, or a fifth of a short run). Held RSS is read "
        "after the server collected garbage and glibc handed free pages back "
        "(tests/views.memory), before the load and after it.",
        "",
        "| server | took | opened | messages echoed | lost | failures | p50 / p99 echo ms "
        "| peak threads / fds | RSS first → middle → last minute (MB) | flat "
        "| held RSS before → after "
        "(MB) | baseline → after (threads, fds) | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        tally = result.tally
        latencies = sorted(tally.latencies) or [float("nan")]
        p50 = latencies[len(latencies) // 2] * 1000
        p99 = latencies[int(len(latencies) * 0.99)] * 1000
        peak_threads = max((s.usage.threads for s in result.samples), default=0)
        peak_fds = max((s.usage.fds for s in result.samples), default=0)
        lines.append(
            f"| {result.target} | {result.took:.0f} s | {tally.opened} | {tally.echoed} "
            f"| {tally.lost} | {sum(tally.failures.values())} | {p50:.1f} / {p99:.1f} "
            f"| {peak_threads} / {peak_fds} "
            f"| {result.rss_first / 1024:.1f} → {result.rss_middle / 1024:.1f} "
            f"→ {result.rss_last / 1024:.1f} "
            f"| {'yes' if result.memory_flat else 'NO'} "
            f"| {result.baseline.rss_kb / 1024:.1f} → {result.after.rss_kb / 1024:.1f} "
            f"| {result.baseline.threads}, {result.baseline.fds} → "
            f"{result.after.threads}, {result.after.fds} ({result.release_seconds:.1f} s) "
            f"| {'pass' if result.passed else 'FAIL'} |"
        )
    for result in results:
        if result.tally.failures:
            lines += ["", f"Failures on {result.target}:", ""]
            lines += [f"- {count} x {what}" for what, count in result.tally.failures.most_common()]
    lines += ["", "RSS (MB) by minute, per server:", ""]
    for result in results:
        by_minute: dict[int, list[int]] = {}
        for sample in result.samples:
            by_minute.setdefault(int(sample.at // 60), []).append(sample.usage.rss_kb)
        figures = ", ".join(
            f"{statistics.median(values) / 1024:.1f}" for _, values in sorted(by_minute.items())
        )
        lines.append(f"- {result.target}: {figures}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--target",
        action="append",
        choices=sorted(TARGETS),
        help=f"a server to soak (repeatable); default: {', '.join(MAIN_TARGETS)}",
    )
    parser.add_argument("--connections", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=500)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between messages")
    parser.add_argument("--size", type=int, default=200, help="characters per message")
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds")
    parser.add_argument("--report", type=Path, default=Path("soak-report.md"))
    args = parser.parse_args(argv)
    results = []
    for name in args.target or MAIN_TARGETS:
        results.append(run_target(TARGETS[name], args))
        text = report(results, args)
        args.report.write_text(text)
    print(text)
    print(f"(written to {args.report})")
    return 0 if all(result.passed for result in results) else 1


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    sys.exit(main())
