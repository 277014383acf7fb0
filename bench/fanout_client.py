"""Fan-out client: hold N WebSocket connections and time every broadcast's arrival.

Opens ``--connections`` connections to ``--url`` (at most 20 handshakes at a
time), prints ``{"ready": N, ...}`` and then, for every broadcast message it
sees, counts the copies per sequence number. When the N-th copy of a sequence
arrives it prints ``{"done": SEQ, "first_ns": ..., "last_ns": ...}`` with
``time.monotonic_ns()`` receive times (CLOCK_MONOTONIC: comparable with the
broadcaster's, same machine).

Broadcast messages are text: ``"<seq> <send time ns> <padding>"``.

Commands on stdin, one a line:
    report SEQ   print {"report": SEQ, "count": copies so far, "last_ns": ...}
    close        close every connection, print {"closed": ..., "errors": [...]}, exit

Bounded: exits after ``--timeout`` seconds whatever happens, and on end of stdin.
Only connects to loopback addresses. Client: picows on uvloop, one thread.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import sys
import time
import urllib.parse

import uvloop
from picows import WSCloseCode, WSListener, WSMsgType, WSTransport, ws_connect


class State:
    """What all connections share: the copies seen per sequence, errors."""

    def __init__(self, connections: int) -> None:
        self.connections = connections
        self.count: dict[int, int] = {}
        self.first_ns: dict[int, int] = {}
        self.last_ns: dict[int, int] = {}
        self.errors: list[str] = []
        self.error_count = 0
        self.closing = False
        self.disconnected = 0
        self.received = 0

    def error(self, text: str) -> None:
        self.error_count += 1
        if len(self.errors) < 20:
            self.errors.append(text)


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class FanoutClient(WSListener):
    """One connection: count what the group sends, answer pings, nothing else."""

    def __init__(self, state: State) -> None:
        self.state = state

    def on_ws_frame(self, transport: WSTransport, frame) -> None:
        state = self.state
        kind = frame.msg_type
        if kind == WSMsgType.TEXT:
            now = time.monotonic_ns()
            payload = frame.get_payload_as_bytes()
            try:
                seq = int(payload[: payload.index(b" ")])
            except ValueError:
                state.error(f"unexpected message {payload[:40]!r}")
                return
            state.received += 1
            count = state.count.get(seq, 0) + 1
            state.count[seq] = count
            state.last_ns[seq] = now
            if count == 1:
                state.first_ns[seq] = now
            if count == state.connections:
                emit({"done": seq, "first_ns": state.first_ns[seq], "last_ns": now})
            elif count > state.connections:
                state.error(f"seq {seq}: {count} copies for {state.connections} connections")
        elif kind == WSMsgType.PING:
            transport.send_pong(frame.get_payload_as_bytes())
        elif kind == WSMsgType.CLOSE:
            if not state.closing:
                state.error(f"server closed: {int(frame.get_close_code())}")
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif kind != WSMsgType.PONG:
            state.error(f"unexpected frame {kind!r}")

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.state.disconnected += 1
        if not self.state.closing:
            self.state.error("disconnected before the end")


async def main(args: argparse.Namespace) -> None:
    host = urllib.parse.urlsplit(args.url).hostname or ""
    if not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"refusing to connect to a non-loopback address: {host}")
    state = State(args.connections)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    gate = asyncio.Semaphore(args.parallel_connects)

    async def connect() -> WSTransport:
        async with gate:
            transport, _ = await ws_connect(
                lambda: FanoutClient(state), args.url, websocket_handshake_timeout=30
            )
            return transport

    start = time.monotonic()
    results = await asyncio.gather(
        *(connect() for _ in range(args.connections)), return_exceptions=True
    )
    transports = [r for r in results if not isinstance(r, BaseException)]
    for failure in (r for r in results if isinstance(r, BaseException)):
        state.error(f"connect failed: {failure!r}")
    emit(
        {
            "ready": len(transports),
            "connect_s": time.monotonic() - start,
            "errors": state.errors,
            "error_count": state.error_count,
        }
    )

    while True:
        line = await reader.readline()
        if not line:
            break
        command, _, rest = line.decode().strip().partition(" ")
        if command == "report":
            seq = int(rest)
            emit(
                {
                    "report": seq,
                    "count": state.count.get(seq, 0),
                    "last_ns": state.last_ns.get(seq),
                    "received": state.received,
                    "disconnected": state.disconnected,
                    "error_count": state.error_count,
                }
            )
        elif command == "close":
            break

    state.closing = True
    for transport in transports:
        transport.send_close(WSCloseCode.OK)
    deadline = time.monotonic() + 10
    for transport in transports:
        try:
            await asyncio.wait_for(
                transport.wait_disconnected(), max(0.01, deadline - time.monotonic())
            )
        except TimeoutError:
            transport.disconnect()
    emit(
        {
            "closed": len(transports),
            "received": state.received,
            "errors": state.errors,
            "error_count": state.error_count,
        }
    )


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="ws://127.0.0.1:PORT/path")
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--parallel-connects", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=240.0)
    args = parser.parse_args()

    async def bounded() -> None:
        await asyncio.wait_for(main(args), args.timeout)

    uvloop.run(bounded())


if __name__ == "__main__":
    cli()
