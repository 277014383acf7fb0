"""Fan-out broadcaster: a process that serves no WebSockets and sends to the group.

Run with ``DJANGO_SETTINGS_MODULE`` set (fanout.py does). ``--kind dw`` sends
with ``django_websocket.broadcast("bench", text)`` (sync) and counts members with
``group_size``; ``--kind channels`` sends with
``async_to_sync(channel_layer.group_send)("bench", {"type": "bench.message",
"text": text})``, the usual way to reach a group from sync code (with
``--channels-loop persistent``: ``await group_send(...)`` on one event loop kept
for the whole run, which keeps the layer's Redis connection).

Every message is text: ``"<seq> <send time ns> "`` padded with ``x`` to
``--size`` bytes. The send time is ``time.monotonic_ns()`` taken just before the
broadcast call.

Prints ``{"ready": ...}`` once set up, then answers commands on stdin, one a line:
    wait N TIMEOUT      wait until the group has N members (dw: group_size;
                        channels core: ZCARD of the group's key; pubsub: no
                        count exists, answers at once with joined null)
    send SEQ            one broadcast: {"sent": SEQ, "t0_ns", "t1_ns", "cpu_s"}
    burst START COUNT   COUNT broadcasts back to back, sequences START..,
                        {"burst": START, "t0_ns": before the first, "t1_ns":
                        after the last, "cpu_s"}
    quit
cpu_s is this process's CPU time (all threads) spent in the call(s).
Bounded: exits after ``--timeout`` seconds (checked between commands) and on end of stdin.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def text_for(seq: int, t0: int, size: int) -> str:
    head = f"{seq} {t0} "
    return head + "x" * max(0, size - len(head))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=["dw", "channels"], required=True)
    parser.add_argument("--group", default="bench")
    parser.add_argument("--size", type=int, default=64, help="message size in bytes")
    parser.add_argument(
        "--channels-loop",
        choices=["async_to_sync", "persistent"],
        default="async_to_sync",
        help="channels: call group_send through async_to_sync (a new event loop, and so a "
        "new Redis connection, per call) or await it on one event loop kept for the run",
    )
    parser.add_argument("--timeout", type=float, default=240.0)
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout

    import django

    django.setup()
    group = args.group

    if args.kind == "dw":
        from django_websocket import broadcast, group_size

        def send(text: str) -> None:
            broadcast(group, text)

        def count() -> int | None:
            return group_size(group)

    else:
        from asgiref.sync import async_to_sync
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        if args.channels_loop == "persistent":
            import asyncio

            loop = asyncio.new_event_loop()

            def send(text: str) -> None:
                loop.run_until_complete(
                    layer.group_send(group, {"type": "bench.message", "text": text})
                )

        else:
            group_send = async_to_sync(layer.group_send)

            def send(text: str) -> None:
                group_send(group, {"type": "bench.message", "text": text})

        if type(layer).__module__ == "channels_redis.core":
            import redis

            direct = redis.Redis.from_url(
                os.environ.get("BENCH_FANOUT_REDIS", "redis://127.0.0.1:6379/0")
            )
            key = layer._group_key(group)

            def count() -> int | None:
                return direct.zcard(key)

        else:

            def count() -> int | None:
                return None  # the pub/sub layer keeps its groups in each process

    emit({"ready": True, "kind": args.kind, "pid": os.getpid()})
    for line in sys.stdin:
        if time.monotonic() > deadline:
            emit({"error": "timeout"})
            break
        command, *rest = line.split()
        if command == "wait":
            wanted, timeout = int(rest[0]), float(rest[1])
            start = time.monotonic()
            joined = count()
            while joined is not None and joined < wanted and time.monotonic() - start < timeout:
                time.sleep(0.02)
                joined = count()
            emit({"joined": joined, "wait_s": time.monotonic() - start})
        elif command == "send":
            seq = int(rest[0])
            cpu0 = time.process_time()
            t0 = time.monotonic_ns()
            send(text_for(seq, t0, args.size))
            t1 = time.monotonic_ns()
            emit({"sent": seq, "t0_ns": t0, "t1_ns": t1, "cpu_s": time.process_time() - cpu0})
        elif command == "burst":
            start_seq, count_ = int(rest[0]), int(rest[1])
            cpu0 = time.process_time()
            t0 = time.monotonic_ns()
            for seq in range(start_seq, start_seq + count_):
                send(text_for(seq, time.monotonic_ns(), args.size))
            t1 = time.monotonic_ns()
            emit(
                {"burst": start_seq, "t0_ns": t0, "t1_ns": t1, "cpu_s": time.process_time() - cpu0}
            )
        elif command == "quit":
            break
        else:
            emit({"error": f"unknown command {line.strip()!r}"})


if __name__ == "__main__":
    main()
