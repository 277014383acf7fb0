"""Echo load generator: N WebSocket connections doing sequential round trips.

Each connection sends a 32-byte text message, waits for the echo, sends the
next one, for ``--warmup`` seconds (not counted) then ``--duration`` seconds
(measured). Around the measured window it samples the server's CPU time
(``utime + stime`` from ``/proc/<pid>/stat`` of the server and its
descendants, plus their reaped children) and its own. Prints one JSON object.

Bounded: at most ``--max-messages`` round trips in all, and the whole run is
cut at ``--timeout`` seconds. Only connects to loopback addresses.

Client: picows (asyncio, Cython) on uvloop. ``--deflate`` negotiates
permessage-deflate and does the compression in this file (zlib), since picows
has no extensions of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import resource
import sys
import time
import urllib.parse
import zlib
from pathlib import Path

import uvloop
from picows import WSCloseCode, WSListener, WSMsgType, WSTransport, ws_connect

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAD = b"abcdefghijklmnopqrstuvwx"  # 24 bytes; with an 8-digit counter: 32 bytes
SYNC_TAIL = b"\x00\x00\xff\xff"


# ---- CPU accounting -------------------------------------------------------------------


def _stat_ticks(pid: int) -> int:
    """utime + stime + cutime + cstime of one process (all its threads), in ticks."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime..cstime are fields 14..17.
    return sum(int(value) for value in fields[11:15])


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").iterdir():
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in children:
                found.append(int(child))
                todo.append(int(child))
    return found


def process_tree_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by ``pid`` and every descendant still alive."""
    ticks = 0
    for member in [pid, *_descendants(pid)]:
        try:
            ticks += _stat_ticks(member)
        except OSError:
            pass  # exited between listing and reading
    return ticks / CLK_TCK


def process_tree_sched_seconds(pid: int) -> float:
    """On-CPU seconds of the live threads of ``pid`` and its descendants (schedstat, ns).

    Finer than ``/proc/<pid>/stat`` ticks (10 ms), but blind to threads that
    exited: used only for the connect phase, where none do.
    """
    total_ns = 0
    for member in [pid, *_descendants(pid)]:
        try:
            tasks = list(Path(f"/proc/{member}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                total_ns += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return total_ns / 1e9


def process_tree_memory(pid: int) -> tuple[float, int]:
    """Resident memory (MB) and thread count of ``pid`` and its descendants."""
    rss_kb = threads = 0
    for member in [pid, *_descendants(pid)]:
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss_kb += int(line.split()[1])
                elif line.startswith("Threads:"):
                    threads += int(line.split()[1])
        except OSError:
            pass
    return rss_kb / 1024, threads


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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


# ---- the load ---------------------------------------------------------------------------


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


class EchoClient(WSListener):
    """One connection: send, wait for the echo, check it, send the next."""

    def __init__(self, run: Run, deflate_offered: bool) -> None:
        self.run = run
        self.deflate_offered = deflate_offered
        self.deflate: Deflate | None = None
        self.transport: WSTransport | None = None
        self.seq = 0
        self.expected = b""
        self.sent_ns = 0
        self.busy = False

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        if self.deflate_offered:
            header = transport.response.headers.get("Sec-WebSocket-Extensions", "")
            if header.startswith("permessage-deflate"):
                self.deflate = Deflate(header)

    def send_next(self) -> None:
        self.seq += 1
        message = b"%08d" % (self.seq % 100_000_000) + PAD
        self.expected = message
        self.busy = True
        self.run.in_flight += 1
        self.sent_ns = time.perf_counter_ns()
        if self.deflate is not None:
            self.transport.send(WSMsgType.TEXT, self.deflate.compress(message), rsv1=True)
        else:
            self.transport.send(WSMsgType.TEXT, message)

    def on_ws_frame(self, transport: WSTransport, frame) -> None:
        run = self.run
        if frame.msg_type == WSMsgType.TEXT and self.busy:
            now = time.perf_counter_ns()
            payload = frame.get_payload_as_bytes()
            if frame.rsv1 and self.deflate is not None:
                payload = self.deflate.decompress(payload)
            self.busy = False
            run.in_flight -= 1
            if payload != self.expected:
                run.errors.append(f"echo mismatch: {payload[:40]!r} != {self.expected!r}")
            run.total += 1
            if run.measuring:
                run.measured += 1
                run.latencies_ns.append(now - self.sent_ns)
            if run.running and run.total < run.max_messages:
                self.send_next()
            elif run.in_flight == 0:
                run.drained.set()
        elif frame.msg_type == WSMsgType.CLOSE:
            if run.running:
                run.errors.append(f"server closed: {int(frame.get_close_code())}")
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif frame.msg_type == WSMsgType.PING:
            transport.send_pong(frame.get_payload_as_bytes())
        elif frame.msg_type != WSMsgType.PONG:
            run.errors.append(f"unexpected frame {frame.msg_type!r}")

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.busy:
            self.busy = False
            self.run.in_flight -= 1
            self.run.errors.append("disconnected with a message in flight")
            if self.run.in_flight == 0:
                self.run.drained.set()


def percentile(sorted_values: list[int], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return float(sorted_values[index])


async def main(args: argparse.Namespace) -> dict:
    host = urllib.parse.urlsplit(args.url).hostname or ""
    if not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"refusing to load a non-loopback address: {host}")
    run = Run(args.max_messages)
    extra_headers = (
        {"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}
        if args.deflate
        else None
    )

    # Connect, at most 20 handshakes at a time; time the server's CPU for it.
    cpu_connect0 = process_tree_sched_seconds(args.server_pid)
    gate = asyncio.Semaphore(20)

    async def connect() -> tuple[WSTransport, EchoClient]:
        async with gate:
            return await ws_connect(
                lambda: EchoClient(run, args.deflate),
                args.url,
                extra_headers=extra_headers,
                websocket_handshake_timeout=10,
            )

    connections = await asyncio.gather(*(connect() for _ in range(args.connections)))
    await asyncio.sleep(0.2)  # let the views start iterating
    cpu_connect = process_tree_sched_seconds(args.server_pid) - cpu_connect0
    negotiated = [client.deflate is not None for _, client in connections]
    if args.deflate and not all(negotiated):
        run.errors.append(f"deflate negotiated on {sum(negotiated)}/{len(negotiated)} connections")

    run.running = True
    for _, client in connections:
        client.send_next()
    await asyncio.sleep(args.warmup)

    server0 = process_tree_cpu_seconds(args.server_pid)
    client0 = own_cpu_seconds()
    start = time.perf_counter()
    run.measured = 0
    run.latencies_ns.clear()
    run.measuring = True
    await asyncio.sleep(args.duration)
    run.measuring = False
    elapsed = time.perf_counter() - start
    server_cpu = process_tree_cpu_seconds(args.server_pid) - server0
    client_cpu = own_cpu_seconds() - client0
    rss_mb, threads = process_tree_memory(args.server_pid)
    measured = run.measured
    latencies = sorted(run.latencies_ns)

    run.running = False
    if run.in_flight:
        try:
            await asyncio.wait_for(run.drained.wait(), 10)
        except TimeoutError:
            run.errors.append(f"{run.in_flight} echoes never came back")
    for transport, _ in connections:
        transport.send_close(WSCloseCode.OK)
    for transport, _ in connections:
        try:
            await asyncio.wait_for(transport.wait_disconnected(), 5)
        except TimeoutError:
            transport.disconnect()

    return {
        "url": args.url,
        "connections": args.connections,
        "deflate": args.deflate,
        "elapsed_s": elapsed,
        "messages": measured,
        "msgs_per_s": measured / elapsed,
        "p50_us": percentile(latencies, 0.50) / 1000,
        "p99_us": percentile(latencies, 0.99) / 1000,
        "server_cpu_s": server_cpu,
        "client_cpu_s": client_cpu,
        "server_cpu_us_per_msg": server_cpu * 1e6 / measured if measured else None,
        "client_cpu_us_per_msg": client_cpu * 1e6 / measured if measured else None,
        "server_cpu_util": server_cpu / elapsed,
        "client_cpu_util": client_cpu / elapsed,
        "server_cpu_us_per_connect": cpu_connect * 1e6 / args.connections,
        "server_rss_mb": rss_mb,
        "server_threads": threads,
        "total_round_trips": run.total,
        "errors": run.errors[:20],
        "error_count": len(run.errors),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="ws://127.0.0.1:PORT/path")
    parser.add_argument("--server-pid", type=int, required=True)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--max-messages", type=int, default=5_000_000)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--deflate", action="store_true", help="offer permessage-deflate")
    return parser.parse_args(argv)


def cli() -> None:
    args = parse_args()

    async def bounded() -> dict:
        return await asyncio.wait_for(main(args), args.timeout)

    result = uvloop.run(bounded())
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    cli()
