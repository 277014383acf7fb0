"""Load generator: WebSocket clients against one server, measuring the server's CPU too.

Scenarios (``--scenario``), each printing one JSON object:

echo
    ``--connections`` connections, each sending a ``--size``-byte message
    (text for 32 bytes, binary otherwise), waiting for the echo, sending the
    next, for ``--warmup`` seconds (not counted) then ``--duration`` seconds
    (measured): messages/s, latency percentiles, CPU per message. ``rtt`` is
    one connection of 32-byte text, ``echo-c100`` 100, ``big`` one connection
    of 1 MiB binary (MB/s of payload, one direction).
connect
    Open a connection, complete the handshake, close it (client close frame,
    wait for the server to drop TCP), next; one loop (``seq``) then
    ``--parallel`` loops at once (``par10``), ``--duration`` seconds each:
    handshakes/s and CPU per handshake + close.
idle
    Open ``--counts`` connections in steps (at most 20 handshakes at a time),
    one echo on each so the view is known to run, wait until the server is
    idle, and read its resident memory: KB per connection over the memory
    before the first connection (after a 10-connection warm-up).

The server's CPU time is ``utime + stime`` of ``/proc/<pid>/stat`` of the
server and its descendants (dead threads included), its memory the sum of
their ``VmRSS``; ours is ``getrusage`` of this process, reported beside it to
show that the client is not the bottleneck.

Bounded: at most ``--max-messages`` round trips, and the whole run is cut at
``--timeout`` seconds. Only connects to loopback addresses.

Client: picows (asyncio, Cython) on uvloop. ``--deflate`` negotiates
permessage-deflate and does the compression in this file (zlib), since picows
has no extensions of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import ipaddress
import json
import resource
import sys
import time
import urllib.parse
import zlib
from collections.abc import Callable

import uvloop
from harness import (
    percentile,
    process_tree_cpu_seconds,
    process_tree_fds,
    process_tree_memory,
    process_tree_sched_seconds,
)
from picows import WSCloseCode, WSListener, WSMsgType, WSTransport, ws_connect

PAD = b"abcdefghijklmnopqrstuvwx"  # 24 bytes; with an 8-digit counter: 32 bytes
SYNC_TAIL = b"\x00\x00\xff\xff"
#: Handshakes in flight at once while opening many connections.
CONNECT_GATE = 20


# ---- CPU accounting (the server's from /proc, ours from getrusage) ---------------------


def own_cpu_seconds() -> float:
    """CPU seconds this process used so far (user + system, every thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CpuWindow:
    """Server and client CPU seconds and wall time between start() and stop()."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid

    def start(self) -> None:
        """Take the first sample."""
        self.server0 = process_tree_cpu_seconds(self.server_pid)
        self.client0 = own_cpu_seconds()
        self.t0 = time.perf_counter()

    def stop(self) -> dict[str, float]:
        """The window's elapsed seconds, server and client CPU seconds and utilisation."""
        elapsed = time.perf_counter() - self.t0
        server = process_tree_cpu_seconds(self.server_pid) - self.server0
        client = own_cpu_seconds() - self.client0
        return {
            "elapsed_s": elapsed,
            "server_cpu_s": server,
            "client_cpu_s": client,
            "server_cpu_util": server / elapsed,
            "client_cpu_util": client / elapsed,
        }


def per_unit(cpu: dict[str, float], units: int, scale: float = 1e6) -> dict[str, float | None]:
    """Server and client CPU per unit of work (µs by default), None without work."""
    return {
        "server_cpu_per_unit": cpu["server_cpu_s"] * scale / units if units else None,
        "client_cpu_per_unit": cpu["client_cpu_s"] * scale / units if units else None,
    }


# ---- permessage-deflate, client side (RFC 7692) ---------------------------------------


class Deflate:
    """Compress what we send and decompress what we get, as the server negotiated."""

    def __init__(self, response_header: str) -> None:
        params: dict[str, str | None] = {}
        for part in response_header.split(";")[1:]:
            name, _, value = part.strip().partition("=")
            params[name.strip()] = value.strip().strip('"') or None
        self.client_no_takeover = "client_no_context_takeover" in params
        self.server_no_takeover = "server_no_context_takeover" in params
        self.client_bits = int(params.get("client_max_window_bits") or 15)
        self._compressor = self._new_compressor()
        self._decompressor = zlib.decompressobj(-15)

    def _new_compressor(self):
        return zlib.compressobj(6, zlib.DEFLATED, -self.client_bits, 8)

    def compress(self, data: bytes) -> bytes:
        if self.client_no_takeover:
            self._compressor = self._new_compressor()
        out = self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
        return out[:-4] if out.endswith(SYNC_TAIL) else out

    def decompress(self, data: bytes) -> bytes:
        if self.server_no_takeover:
            self._decompressor = zlib.decompressobj(-15)
        return self._decompressor.decompress(data + SYNC_TAIL)


# ---- echo: sequential round trips on N connections -----------------------------------


class Run:
    """What all connections share: the phase, counters, latencies."""

    def __init__(self, max_messages: int) -> None:
        self.running = False
        self.measuring = False
        self.max_messages = max_messages
        self.total = 0
        self.measured = 0
        self.latencies_ns: list[int] = []
        self.errors: list[str] = []
        self.in_flight = 0
        self.drained: asyncio.Event = asyncio.Event()


def message_maker(size: int) -> Callable[[int], tuple[WSMsgType, bytes]]:
    """Messages of ``size`` bytes: 32-byte text with a counter, or binary, two alternating."""
    if size == 32:
        return lambda seq: (WSMsgType.TEXT, b"%08d" % (seq % 100_000_000) + PAD)
    blobs = (b"a" * size, b"b" * size)
    return lambda seq: (WSMsgType.BINARY, blobs[seq % 2])


class EchoClient(WSListener):
    """One connection: send, wait for the echo (reassembling fragments), check it, send next."""

    def __init__(self, run: Run, make: Callable[[int], tuple[WSMsgType, bytes]], deflate: bool):
        self.run = run
        self.make = make
        self.deflate_offered = deflate
        self.deflate: Deflate | None = None
        self.transport: WSTransport | None = None
        self.seq = 0
        self.expected = b""
        self.sent_ns = 0
        self.busy = False
        self.parts: list[bytes] = []
        self.compressed = False
        self.echoed: asyncio.Future[None] | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        if self.deflate_offered:
            header = transport.response.headers.get("Sec-WebSocket-Extensions", "")
            if header.startswith("permessage-deflate"):
                self.deflate = Deflate(header)

    def send_next(self) -> None:
        """Send the next message and start timing its round trip."""
        self.seq += 1
        kind, message = self.make(self.seq)
        self.expected = message
        self.busy = True
        self.run.in_flight += 1
        self.sent_ns = time.perf_counter_ns()
        if self.deflate is not None:
            self.transport.send(kind, self.deflate.compress(message), rsv1=True)
        else:
            self.transport.send(kind, message)

    def echo_once(self) -> asyncio.Future[None]:
        """Send one message outside any measurement; the future completes with its echo."""
        self.echoed = asyncio.get_running_loop().create_future()
        self.send_next()
        return self.echoed

    def on_ws_frame(self, transport: WSTransport, frame) -> None:
        kind = frame.msg_type
        if kind in (WSMsgType.TEXT, WSMsgType.BINARY):
            self.compressed = frame.rsv1
            if not frame.fin:
                self.parts = [frame.get_payload_as_bytes()]
                return
            self.on_message(frame.get_payload_as_bytes())
        elif kind == WSMsgType.CONTINUATION:
            self.parts.append(frame.get_payload_as_bytes())
            if frame.fin:
                payload = b"".join(self.parts)
                self.parts = []
                self.on_message(payload)
        elif kind == WSMsgType.CLOSE:
            if self.run.running or self.busy:
                self.run.errors.append(f"server closed: {int(frame.get_close_code())}")
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif kind == WSMsgType.PING:
            transport.send_pong(frame.get_payload_as_bytes())
        elif kind != WSMsgType.PONG:
            self.run.errors.append(f"unexpected frame {kind!r}")

    def on_message(self, payload: bytes) -> None:
        run = self.run
        if not self.busy:
            run.errors.append("a message nobody asked for")
            return
        now = time.perf_counter_ns()
        if self.compressed and self.deflate is not None:
            payload = self.deflate.decompress(payload)
        self.busy = False
        run.in_flight -= 1
        if payload != self.expected:
            run.errors.append(f"echo mismatch: {payload[:40]!r} != {self.expected[:40]!r}")
        if self.echoed is not None:
            if not self.echoed.done():
                self.echoed.set_result(None)
            self.echoed = None
            return
        run.total += 1
        if run.measuring:
            run.measured += 1
            run.latencies_ns.append(now - self.sent_ns)
        if run.running and run.total < run.max_messages:
            self.send_next()
        elif run.in_flight == 0:
            run.drained.set()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.busy:
            self.busy = False
            self.run.in_flight -= 1
            self.run.errors.append("disconnected with a message in flight")
            if self.echoed is not None and not self.echoed.done():
                self.echoed.set_exception(ConnectionError("disconnected"))
            self.echoed = None
            if self.run.in_flight == 0:
                self.run.drained.set()


async def open_connections(
    count: int,
    factory: Callable[[], EchoClient],
    args: argparse.Namespace,
    timeout: float | None = None,
) -> tuple[list[tuple[WSTransport, EchoClient]], list[str]]:
    """Open ``count`` connections, at most CONNECT_GATE handshakes at a time.

    Returns the connections that opened and one error line per one that did not
    (within ``timeout`` seconds for all, if given).
    """
    gate = asyncio.Semaphore(CONNECT_GATE)
    extra_headers = (
        {"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}
        if args.deflate
        else None
    )

    async def connect() -> tuple[WSTransport, EchoClient]:
        async with gate:
            return await ws_connect(
                factory, args.url, extra_headers=extra_headers, websocket_handshake_timeout=15
            )

    tasks = [asyncio.ensure_future(connect()) for _ in range(count)]
    finished, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    opened = [t.result() for t in finished if t.exception() is None]
    failed = [repr(t.exception())[:200] for t in finished if t.exception() is not None]
    if pending:
        failed += [f"not open after {timeout:.0f} s"] * len(pending)
    return opened, failed


async def close_all(connections: list[tuple[WSTransport, EchoClient]], timeout: float) -> None:
    """Close every connection cleanly, dropping those that do not finish within ``timeout``."""
    for transport, _ in connections:
        with contextlib.suppress(Exception):  # already gone
            transport.send_close(WSCloseCode.OK)
    deadline = time.monotonic() + timeout
    for transport, _ in connections:
        try:
            await asyncio.wait_for(
                transport.wait_disconnected(), max(0.01, deadline - time.monotonic())
            )
        except TimeoutError:
            transport.disconnect()
        except Exception:
            transport.disconnect()  # a broken connection (its error was counted before)


async def echo(args: argparse.Namespace) -> dict:
    """The echo scenario (rtt, echo-c100, big)."""
    run = Run(args.max_messages)
    make = message_maker(args.size)
    sched0 = process_tree_sched_seconds(args.server_pid)
    connections, failed = await open_connections(
        args.connections, lambda: EchoClient(run, make, args.deflate), args
    )
    run.errors.extend(f"connect failed: {f}" for f in failed)
    if not connections:
        raise SystemExit(f"no connection opened: {failed[:3]}")
    await asyncio.sleep(0.2)  # let the views start iterating
    cpu_connect = process_tree_sched_seconds(args.server_pid) - sched0
    negotiated = [client.deflate is not None for _, client in connections]
    if args.deflate and not all(negotiated):
        run.errors.append(f"deflate negotiated on {sum(negotiated)}/{len(negotiated)} connections")

    run.running = True
    for _, client in connections:
        client.send_next()
    await asyncio.sleep(args.warmup)

    window = CpuWindow(args.server_pid)
    window.start()
    run.measured = 0
    run.latencies_ns.clear()
    run.measuring = True
    await asyncio.sleep(args.duration)
    run.measuring = False
    cpu = window.stop()
    rss_mb, threads = process_tree_memory(args.server_pid)
    measured = run.measured
    latencies = sorted(run.latencies_ns)

    run.running = False
    if run.in_flight:
        try:
            await asyncio.wait_for(run.drained.wait(), 10)
        except TimeoutError:
            run.errors.append(f"{run.in_flight} echoes never came back")
    await close_all(connections, 5)
    units = per_unit(cpu, measured)
    megabytes = measured * args.size / 1e6
    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    return {
        **cpu,
        "connections": len(connections),
        "size": args.size,
        "deflate": args.deflate,
        "messages": measured,
        "msgs_per_s": measured / cpu["elapsed_s"],
        "mb_per_s": megabytes / cpu["elapsed_s"],
        "p50_us": None if p50 is None else p50 / 1000,
        "p99_us": None if p99 is None else p99 / 1000,
        "server_cpu_us_per_msg": units["server_cpu_per_unit"],
        "client_cpu_us_per_msg": units["client_cpu_per_unit"],
        "server_cpu_ms_per_mb": cpu["server_cpu_s"] * 1e3 / megabytes if megabytes else None,
        "client_cpu_ms_per_mb": cpu["client_cpu_s"] * 1e3 / megabytes if megabytes else None,
        "server_cpu_us_per_connect": cpu_connect * 1e6 / len(connections),
        "server_rss_mb": rss_mb,
        "server_threads": threads,
        "total_round_trips": run.total,
        "errors": run.errors[:20],
        "error_count": len(run.errors),
    }


# ---- connect: handshake + close, sequential and in parallel ------------------------------


#: A fixed key is enough: servers check its form, not its novelty (RFC 6455, 4.2.1).
HANDSHAKE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
HANDSHAKE_ACCEPT = base64.b64encode(
    hashlib.sha1((HANDSHAKE_KEY + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
)
#: A masked close frame with code 1000 (RFC 6455, 5.5.1), the same mask every time.
MASK = b"\x37\xfa\x21\x3d"
CLOSE_FRAME = (
    bytes([0x88, 0x82]) + MASK + bytes(b ^ m for b, m in zip(b"\x03\xe8", MASK[:2], strict=True))
)


class Handshake(asyncio.Protocol):
    """One connection of the connect scenario, written by hand so that it costs little.

    Sends the upgrade request, checks the 101 and its Sec-WebSocket-Accept, sends
    a close frame and waits for the server to drop TCP: the server closes first
    (RFC 6455, 7.1.1), so the TIME_WAIT is the server's and our ports are not
    used up. picows' ws_connect costs about as much CPU as a fast server's
    handshake, which would make the client the limit here.
    """

    def __init__(self, request: bytes) -> None:
        loop = asyncio.get_running_loop()
        self.request = request
        self.buffer = b""
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.opened.done():
            return  # the server's close frame
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end]
        if head.startswith(b"HTTP/1.1 101") and HANDSHAKE_ACCEPT in head:
            self.opened.set_result(None)
            self.transport.write(CLOSE_FRAME)
        else:
            self.opened.set_exception(ConnectionError(head[:80].decode(errors="replace")))
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed before the 101: {exc!r}"))
        if not self.closed.done():
            self.closed.set_result(None)


async def connect_loop(args: argparse.Namespace, parallel: int, seconds: float) -> dict:
    """``parallel`` loops of open + handshake + close for ``seconds``; counts and CPU."""
    url = urllib.parse.urlsplit(args.url)
    request = (
        f"GET {url.path or '/'} HTTP/1.1\r\nHost: {url.netloc}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {HANDSHAKE_KEY}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    errors: list[str] = []
    latencies: list[float] = []
    done = 0
    end = 0.0

    async def one() -> None:
        nonlocal done
        t0 = time.perf_counter()
        transport, protocol = await loop.create_connection(
            lambda: Handshake(request), url.hostname, url.port
        )
        try:
            await asyncio.wait_for(protocol.opened, 10)
            latencies.append(time.perf_counter() - t0)
            try:
                await asyncio.wait_for(asyncio.shield(protocol.closed), 5)
            except TimeoutError:
                errors.append("server did not close the connection within 5 s")
            done += 1
        finally:
            transport.abort()

    async def worker() -> None:
        while time.perf_counter() < end and len(errors) < 50:
            try:
                await one()
            except (OSError, TimeoutError) as exc:
                errors.append(f"handshake failed: {exc!r}"[:200])

    # Warm-up, not counted: the first handshakes import and cache.
    end = time.perf_counter() + min(0.3, seconds)
    await asyncio.gather(*(worker() for _ in range(parallel)))
    errors.clear()
    latencies.clear()
    done = 0
    window = CpuWindow(args.server_pid)
    window.start()
    end = time.perf_counter() + seconds
    await asyncio.gather(*(worker() for _ in range(parallel)))
    cpu = window.stop()
    units = per_unit(cpu, done)
    p50 = percentile(latencies, 0.5)
    return {
        **cpu,
        "parallel": parallel,
        "handshakes": done,
        "handshakes_per_s": done / cpu["elapsed_s"],
        "handshake_p50_ms": None if p50 is None else p50 * 1e3,
        "server_cpu_us_per_handshake": units["server_cpu_per_unit"],
        "client_cpu_us_per_handshake": units["client_cpu_per_unit"],
        "errors": errors[:20],
        "error_count": len(errors),
    }


async def connect(args: argparse.Namespace) -> dict:
    """The connect scenario: ``seq`` (one loop) then ``par<N>`` (``--parallel`` loops)."""
    modes = {
        "seq": await connect_loop(args, 1, args.duration),
        f"par{args.parallel}": await connect_loop(args, args.parallel, args.duration),
    }
    errors = [f"{mode}: {e}" for mode, r in modes.items() for e in r["errors"]]
    return {"modes": modes, "errors": errors[:20], "error_count": len(errors)}


# ---- idle: memory per open connection ------------------------------------------------------


async def settle(pid: int, limit: float) -> float:
    """Wait until the server used under 2% of a cpu over 0.5 s (at most ``limit`` s)."""
    start = time.monotonic()
    before = process_tree_cpu_seconds(pid)
    while time.monotonic() - start < limit:
        await asyncio.sleep(0.5)
        now = process_tree_cpu_seconds(pid)
        if now - before <= 0.01:
            break
        before = now
    return time.monotonic() - start


async def idle_cpu_util(pid: int, seconds: float = 1.0) -> float:
    """The server's CPU utilisation (1.0 = one cpu) over ``seconds`` of doing nothing."""
    before = process_tree_cpu_seconds(pid)
    await asyncio.sleep(seconds)
    return (process_tree_cpu_seconds(pid) - before) / seconds


async def idle(args: argparse.Namespace) -> dict:
    """The idle scenario: resident memory per open connection at each of ``--counts``."""
    run = Run(0)
    make = message_maker(32)
    errors: list[str] = []

    def factory() -> EchoClient:
        return EchoClient(run, make, False)

    async def echo_each(connections: list[tuple[WSTransport, EchoClient]]) -> list[str]:
        futures = [client.echo_once() for _, client in connections]
        results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 30)
        return [repr(r)[:200] for r in results if isinstance(r, BaseException)]

    warm, failed = await open_connections(10, factory, args)
    errors += failed + await echo_each(warm)
    await close_all(warm, 5)
    await settle(args.server_pid, 5)
    rss0_mb, threads0 = process_tree_memory(args.server_pid)
    fds0 = process_tree_fds(args.server_pid)

    held: list[tuple[WSTransport, EchoClient]] = []
    steps = []
    for count in sorted(args.counts):
        step: dict = {"count": count}
        steps.append(step)
        window = CpuWindow(args.server_pid)
        window.start()
        more, failed = await open_connections(count - len(held), factory, args, args.step_timeout)
        held += more
        try:
            failed += await echo_each(more)
        except TimeoutError:
            failed.append("echo on the new connections timed out")
        step["connect_s"] = time.perf_counter() - window.t0
        step["server_cpu_us_per_connection"] = (
            window.stop()["server_cpu_s"] * 1e6 / max(1, len(more))
        )
        if failed:
            tried = count - len(held) + len(more)
            step["failed"] = f"{len(failed)} of {tried} failed: {failed[:3]}"
            errors.append(f"at {count}: {step['failed']}")
            break
        step["settle_s"] = await settle(args.server_pid, args.settle)
        rss_mb, threads = process_tree_memory(args.server_pid)
        step["idle_cpu_util"] = await idle_cpu_util(args.server_pid)
        step["rss_mb"] = rss_mb
        step["threads"] = threads
        step["kb_per_connection"] = (rss_mb - rss0_mb) * 1024 / count
        step["threads_per_connection"] = (threads - threads0) / count
        step["fds_per_connection"] = (process_tree_fds(args.server_pid) - fds0) / count
    await close_all(held, 20)
    return {
        "rss0_mb": rss0_mb,
        "threads0": threads0,
        "steps": steps,
        "errors": errors[:20],
        "error_count": len(errors),
    }


# ---- command line ----------------------------------------------------------------------------

SCENARIOS = {"echo": echo, "connect": connect, "idle": idle}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="ws://127.0.0.1:PORT/path")
    parser.add_argument("--server-pid", type=int, required=True)
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="echo")
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--size", type=int, default=32, help="echo: message bytes")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=5.0, help="per measured window")
    parser.add_argument("--parallel", type=int, default=10, help="connect: loops at once")
    parser.add_argument(
        "--counts",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1000, 5000],
        help="idle: connection counts, comma-separated",
    )
    parser.add_argument("--settle", type=float, default=10.0, help="idle: longest wait to settle")
    parser.add_argument(
        "--step-timeout", type=float, default=60.0, help="idle: longest time to open one step"
    )
    parser.add_argument("--max-messages", type=int, default=5_000_000)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--deflate", action="store_true", help="offer permessage-deflate")
    return parser.parse_args(argv)


def cli() -> None:
    """Run one scenario, bounded by --timeout, and print its result as JSON."""
    args = parse_args()
    host = urllib.parse.urlsplit(args.url).hostname or ""
    if not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"refusing to load a non-loopback address: {host}")

    async def bounded() -> dict:
        result = await asyncio.wait_for(SCENARIOS[args.scenario](args), args.timeout)
        return {"scenario": args.scenario, "url": args.url, **result}

    result = uvloop.run(bounded())
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    cli()
