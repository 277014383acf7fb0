"""Fan-out benchmark: one broadcast to 1,000 WebSocket members on 2 server processes,
django_websocket's Redis broker vs Django Channels' group_send on channels_redis.

    bench/.venv/bin/python bench/fanout.py                      # every config, 3 interleaved reps
    bench/.venv/bin/python bench/fanout.py --only channels-redis,channels-pubsub --reps 1

Every run of one configuration starts two uvicorn processes (``--loop uvloop
--http httptools``) on two free ports and two client processes
(``fanout_client.py``, picows on uvloop) of 500 connections each, client A to
server A, client B to server B. With ``--layout apart`` (the default, the rule
of the rest of bench/) both servers are pinned to cpu 0 and both clients to
cpu 1; with ``--layout shared`` each cpu holds one server and its 500 clients.
A third process
(``fanout_broadcast.py``), which serves no WebSockets and is not pinned, sends
to the group once every member has joined (django_websocket: ``group_size``
reaches 1,000; channels core: the group's ZCARD; all: warm-up broadcasts must
reach all 1,000).

Then ``--messages`` broadcasts, each fully received before the next and
``--spacing`` seconds apart; time-to-all = the latest of the 1,000 receive
times (``time.monotonic_ns`` in the clients) minus the broadcaster's clock just
before its call. Then a burst: ``--burst`` broadcasts back to back, time until
all of their deliveries arrived. Server CPU (schedstat of every thread of both
servers) over each phase is divided by the deliveries; the clients', the
broadcaster's and Redis' CPU are reported too.

Configurations are interleaved (A B C D ... A B C D ...), every metric is the
median of the reps. Writes results/fanout.md and results/fanout.json and prints
the Markdown. Every child is stopped by its pid, also on error; every wait has
a timeout; each run uses a fresh Redis key prefix ``bench-fanout:<id>:`` whose
keys are deleted afterwards (never FLUSHDB).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import re
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from harness import (
    BENCH,
    PYTHON,
    Child,
    Server,
    child_env,
    fmt,
    footer_lines,
    loadavg,
    percentile,
    pinned,
    process_tree_cpu_seconds,
    process_tree_memory,
    process_tree_sched_seconds,
    raise_nofile,
    report_header,
    source_snapshot,
    stop_on_sigterm,
    uvicorn_argv,
    write_results,
)

#: Where each server (A, B) and each client process (A, B) runs, by --layout.
#: "apart" follows the rest of bench/: the measured servers on cpu 0, the load on
#: cpu 1, so a fast server is not charged its clients' CPU. "shared" puts each
#: server with its own 500 clients, one pair per cpu.
LAYOUTS = {
    "apart": {"servers": ("0", "0"), "clients": ("1", "1")},
    "shared": {"servers": ("0", "1"), "clients": ("0", "1")},
}
REDIS_URL = "redis://127.0.0.1:6379/0"
PREFIX_ROOT = "bench-fanout:"
GROUP_SIZE_PER_SERVER = 500


@dataclass(frozen=True)
class Config:
    key: str
    label: str
    app: str
    path: str
    settings: str
    kind: str  # "dw" or "channels": which broadcaster
    ws: str = "websockets-sansio"
    broadcaster_args: tuple[str, ...] = ()


CONFIGS = [
    Config(
        "dw-async",
        "django_websocket async view, `await ws.join()`, `broadcast()` via Redis",
        "project.asgi:application",
        "/async",
        "project.settings_fanout",
        "dw",
    ),
    Config(
        "dw-sync",
        "django_websocket sync view, `ws.join()`, `broadcast()` via Redis",
        "project.asgi:application",
        "/sync",
        "project.settings_fanout",
        "dw",
    ),
    Config(
        "channels-redis",
        "Channels AsyncWebsocketConsumer, RedisChannelLayer (capacity 1000)",
        "project.channels_fanout_asgi:application",
        "/fanout",
        "project.settings_fanout_channels",
        "channels",
    ),
    Config(
        "channels-pubsub",
        "Channels AsyncWebsocketConsumer, RedisPubSubChannelLayer",
        "project.channels_fanout_asgi:application",
        "/fanout",
        "project.settings_fanout_pubsub",
        "channels",
    ),
    Config(
        "channels-redis-loop",
        "`channels-redis`, but the broadcaster awaits group_send on one persistent event loop",
        "project.channels_fanout_asgi:application",
        "/fanout",
        "project.settings_fanout_channels",
        "channels",
        broadcaster_args=("--channels-loop", "persistent"),
    ),
    Config(
        "channels-pubsub-loop",
        "`channels-pubsub`, but the broadcaster awaits group_send on one persistent event loop",
        "project.channels_fanout_asgi:application",
        "/fanout",
        "project.settings_fanout_pubsub",
        "channels",
        broadcaster_args=("--channels-loop", "persistent"),
    ),
]

RATIOS = [
    ("dw-async", "channels-redis", "our async ÷ Channels (RedisChannelLayer)"),
    ("dw-async", "channels-pubsub", "our async ÷ Channels (RedisPubSubChannelLayer)"),
    ("dw-sync", "channels-redis", "our sync ÷ Channels (RedisChannelLayer)"),
    ("dw-sync", "channels-pubsub", "our sync ÷ Channels (RedisPubSubChannelLayer)"),
    (
        "dw-async",
        "channels-redis-loop",
        "our async ÷ Channels (RedisChannelLayer, broadcaster on a persistent loop)",
    ),
    (
        "dw-async",
        "channels-pubsub-loop",
        "our async ÷ Channels (RedisPubSubChannelLayer, broadcaster on a persistent loop)",
    ),
]
TARGET_RATIO = 10.0  # ours ÷ Channels, deliveries/s
TARGET_CPU_US = 40.0  # server CPU µs per delivery

METRICS = [
    "tta_p50_ms",
    "tta_p90_ms",
    "tta_max_ms",
    "first_p50_ms",
    "deliveries_per_s",
    "server_cpu_us_per_delivery",
    "client_cpu_us_per_delivery",
    "redis_cpu_us_per_broadcast",
    "broadcaster_cpu_us_per_call",
    "call_p50_ms",
    "server_idle_cpu_util",
    "burst_tta_ms",
    "burst_deliveries_per_s",
    "burst_server_cpu_us_per_delivery",
    "burst_client_cpu_us_per_delivery",
    "connect_s",
    "join_wait_s",
    "server_cpu_us_per_join",
    "server_rss_mb",
    "server_threads",
]

# ---- processes ----------------------------------------------------------------------------


def fanout_env(settings: str, prefix: str) -> dict[str, str]:
    """A child's environment: the settings, this run's Redis key prefix and Redis URL."""
    return child_env(settings, {"BENCH_FANOUT_PREFIX": prefix, "BENCH_FANOUT_REDIS": REDIS_URL})


def fanout_server(config: Config, cpu: str, role: str, logdir: Path, prefix: str) -> Server:
    """Server ``role`` (A or B) of one configuration, pinned to ``cpu``."""
    return Server(
        f"{config.key}-{role}",
        uvicorn_argv(config.app, config.ws),
        logdir,
        env=fanout_env(config.settings, prefix),
        cpu=cpu,
        ready_path=None,  # a GET would log "Bad Request", counted as an error here
    )


def key(name: str):
    return lambda message: name in message


def equals(name: str, value: object):
    return lambda message: message.get(name) == value


# ---- CPU ---------------------------------------------------------------------------------


def redis_pid() -> int | None:
    import redis

    with contextlib.suppress(Exception):
        pid = int(redis.Redis.from_url(REDIS_URL).info("server")["process_id"])
        if Path(f"/proc/{pid}/stat").exists():
            return pid
    return None


class Clock:
    """CPU seconds of the processes under test, sampled together."""

    def __init__(self, servers: list[int], clients: list[int], redis: int | None) -> None:
        self.servers, self.clients, self.redis = servers, clients, redis

    def sample(self) -> dict:
        return {
            "t": time.monotonic(),
            # schedstat: ns-exact, live threads only; stat ticks: 10 ms, every thread.
            "server": sum(process_tree_sched_seconds(pid) for pid in self.servers),
            "server_ticks": sum(process_tree_cpu_seconds(pid) for pid in self.servers),
            "client": sum(process_tree_sched_seconds(pid) for pid in self.clients),
            "redis": process_tree_sched_seconds(self.redis) if self.redis else 0.0,
        }

    @staticmethod
    def delta(before: dict, after: dict) -> dict:
        return {name: after[name] - before[name] for name in before}


def delete_prefix(prefix: str) -> int:
    """Delete our own keys (``prefix*``) with SCAN + DEL; never anything else."""
    import redis

    assert prefix.startswith(PREFIX_ROOT) and not any(c in prefix for c in "*?[]\\")
    client = redis.Redis.from_url(REDIS_URL)
    deleted = 0
    batch: list[bytes] = []
    for name in client.scan_iter(match=prefix + "*", count=1000):
        batch.append(name)
        if len(batch) >= 500:
            deleted += client.delete(*batch)
            batch.clear()
    if batch:
        deleted += client.delete(*batch)
    return deleted


# ---- one run -----------------------------------------------------------------------------


EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Closed|Timeout)\w*(:.*)?$")


def summarize_log(text: str) -> dict:
    """The first lines of a log, and how many times each exception line occurs."""
    lines = [line for line in text.splitlines() if line.strip()]
    exceptions = collections.Counter(
        line.strip()[:200] for line in lines if EXCEPTION_LINE.match(line.strip())
    )
    return {
        "lines": len(lines),
        "tracebacks": sum(line.startswith("Traceback") for line in lines),
        "exceptions": dict(exceptions.most_common(10)),
        "head": [line[:300] for line in lines[:40]],
    }


def run_once(config: Config, args: argparse.Namespace, logdir: Path) -> dict:
    prefix = f"{PREFIX_ROOT}{uuid.uuid4().hex[:8]}:"
    members = 2 * GROUP_SIZE_PER_SERVER
    result: dict = {"prefix": prefix, "errors": []}
    started = time.monotonic()
    try:
        with contextlib.ExitStack() as stack:
            roles = "AB"
            servers = [
                stack.enter_context(fanout_server(config, cpu, role, logdir, prefix))
                for cpu, role in zip(LAYOUTS[args.layout]["servers"], roles, strict=True)
            ]
            clock = Clock([s.pid for s in servers], [], redis_pid())
            before_connect = clock.sample()
            clients = []
            client_cpus = LAYOUTS[args.layout]["clients"]
            for server, role, client_cpu in zip(servers, roles, client_cpus, strict=True):
                argv = [
                    str(PYTHON), str(BENCH / "fanout_client.py"),
                    "--url", f"ws://127.0.0.1:{server.port}{config.path}",
                    "--connections", str(GROUP_SIZE_PER_SERVER),
                    "--timeout", str(args.run_timeout),
                ]  # fmt: skip
                client = Child(
                    f"client {role}",
                    pinned(client_cpu, argv),
                    fanout_env(config.settings, prefix),
                    logdir / f"{config.key}-client-{role}.log",
                )
                stack.callback(client.stop)
                clients.append(client)
            broadcaster = Child(
                "broadcaster",
                [
                    str(PYTHON),
                    str(BENCH / "fanout_broadcast.py"),
                    "--kind",
                    config.kind,
                    "--size",
                    str(args.size),
                    "--timeout",
                    str(args.run_timeout),
                    *config.broadcaster_args,
                ],
                fanout_env(config.settings, prefix),
                logdir / f"{config.key}-broadcaster.log",
            )
            stack.callback(broadcaster.stop)
            clock.clients = [c.pid for c in clients]

            # ---- connect and join
            ready = [c.wait_for(key("ready"), 90) for c in clients]
            result["connected"] = sum(r["ready"] for r in ready)
            result["connect_s"] = max(r["connect_s"] for r in ready)
            for r, c in zip(ready, clients, strict=True):
                if r["error_count"]:
                    result["errors"].append(
                        f"{c.name}: {r['error_count']} errors: {r['errors'][:3]}"
                    )
            broadcaster.wait_for(key("ready"), 60)
            broadcaster.send(f"wait {members} 30")
            joined = broadcaster.wait_for(key("joined"), 40)
            after_join = clock.sample()
            result["joined"] = joined["joined"]
            result["join_wait_s"] = joined["wait_s"]
            result["server_cpu_us_per_join"] = (
                (after_join["server"] - before_connect["server"]) * 1e6 / members
            )
            if joined["joined"] is not None and joined["joined"] != members:
                result["errors"].append(f"group has {joined['joined']} members, not {members}")

            seq = 0

            def one_broadcast(seq: int) -> dict:
                broadcaster.send(f"send {seq}")
                sent = broadcaster.wait_for(equals("sent", seq), args.broadcast_timeout)
                row = {
                    "seq": seq,
                    "call_ms": (sent["t1_ns"] - sent["t0_ns"]) / 1e6,
                    "broadcaster_cpu_s": sent["cpu_s"],
                }
                lasts, firsts, missing = [], [], 0
                deadline = time.monotonic() + args.broadcast_timeout
                for client in clients:
                    try:
                        done = client.wait_for(
                            equals("done", seq), max(0.0, deadline - time.monotonic())
                        )
                        lasts.append(done["last_ns"])
                        firsts.append(done["first_ns"])
                    except TimeoutError:
                        client.send(f"report {seq}")
                        report = client.wait_for(equals("report", seq), 10)
                        missing += GROUP_SIZE_PER_SERVER - report["count"]
                        row.setdefault("reports", []).append(report)
                row["missing"] = missing
                if not missing:
                    row["tta_ms"] = (max(lasts) - sent["t0_ns"]) / 1e6
                    row["first_ms"] = (min(firsts) - sent["t0_ns"]) / 1e6
                return row

            # ---- warm-up: every member must get these
            warmups = []
            for _ in range(args.warmup):
                seq += 1
                warmups.append(one_broadcast(seq))
                time.sleep(args.spacing)
            result["warmup"] = warmups
            if any(w["missing"] for w in warmups):
                result["errors"].append(
                    f"warm-up broadcasts lost deliveries: {[w['missing'] for w in warmups]}"
                )
            if warmups and all(w["missing"] == members for w in warmups):
                raise RuntimeError("no warm-up broadcast reached anyone: nothing to measure")

            # ---- idle baseline
            idle0 = clock.sample()
            time.sleep(args.idle)
            idle = Clock.delta(idle0, clock.sample())
            result["server_idle_cpu_util"] = idle["server"] / idle["t"]

            # ---- spaced broadcasts
            rows = []
            timeouts = 0
            phase0 = clock.sample()
            for _ in range(args.messages):
                seq += 1
                row = one_broadcast(seq)
                rows.append(row)
                timeouts = timeouts + 1 if row["missing"] else 0
                if timeouts >= 2:
                    result["errors"].append("two broadcasts in a row lost deliveries: stopped")
                    break
                time.sleep(args.spacing)
            phase = Clock.delta(phase0, clock.sample())
            result["broadcasts"] = rows
            result["phase"] = phase
            delivered = sum(members - row["missing"] for row in rows)
            result["deliveries"] = delivered
            result["missing"] = sum(row["missing"] for row in rows)
            ttas = [row["tta_ms"] for row in rows if "tta_ms" in row]
            result["tta_p50_ms"] = statistics.median(ttas) if ttas else None
            result["tta_p90_ms"] = percentile(ttas, 0.9)
            result["tta_max_ms"] = max(ttas) if ttas else None
            firsts = [row["first_ms"] for row in rows if "first_ms" in row]
            result["first_p50_ms"] = statistics.median(firsts) if firsts else None
            result["deliveries_per_s"] = members * 1000 / result["tta_p50_ms"] if ttas else None
            result["call_p50_ms"] = statistics.median(row["call_ms"] for row in rows)
            result["broadcaster_cpu_us_per_call"] = (
                statistics.median(row["broadcaster_cpu_s"] for row in rows) * 1e6
            )
            if delivered:
                result["server_cpu_us_per_delivery"] = phase["server"] * 1e6 / delivered
                result["server_cpu_ticks_us_per_delivery"] = phase["server_ticks"] * 1e6 / delivered
                result["client_cpu_us_per_delivery"] = phase["client"] * 1e6 / delivered
                result["redis_cpu_us_per_broadcast"] = phase["redis"] * 1e6 / len(rows)
            result["server_rss_mb"], result["server_threads"] = map(
                sum, zip(*(process_tree_memory(s.pid) for s in servers), strict=True)
            )

            # ---- burst
            if args.burst and not result["missing"]:
                time.sleep(args.spacing)
                first = seq + 1
                burst0 = clock.sample()
                broadcaster.send(f"burst {first} {args.burst}")
                sent = broadcaster.wait_for(equals("burst", first), args.broadcast_timeout * 4)
                last_ns = 0
                missing = 0
                burst_deadline = time.monotonic() + args.broadcast_timeout * 4
                for client in clients:
                    for s in range(first, first + args.burst):
                        try:
                            done = client.wait_for(
                                equals("done", s), max(0.0, burst_deadline - time.monotonic())
                            )
                            last_ns = max(last_ns, done["last_ns"])
                        except TimeoutError:
                            client.send(f"report {s}")
                            report = client.wait_for(equals("report", s), 10)
                            missing += GROUP_SIZE_PER_SERVER - report["count"]
                burst = Clock.delta(burst0, clock.sample())
                seq = first + args.burst - 1
                burst_deliveries = members * args.burst - missing
                result["burst"] = {
                    "messages": args.burst,
                    "missing": missing,
                    "call_ms": (sent["t1_ns"] - sent["t0_ns"]) / 1e6,
                    "broadcaster_cpu_s": sent["cpu_s"],
                    "cpu": burst,
                }
                if missing:
                    result["errors"].append(f"burst lost {missing} deliveries")
                else:
                    result["burst_tta_ms"] = (last_ns - sent["t0_ns"]) / 1e6
                    result["burst_deliveries_per_s"] = (
                        burst_deliveries * 1000 / result["burst_tta_ms"]
                    )
                if burst_deliveries:
                    result["burst_server_cpu_us_per_delivery"] = (
                        burst["server"] * 1e6 / burst_deliveries
                    )
                    result["burst_client_cpu_us_per_delivery"] = (
                        burst["client"] * 1e6 / burst_deliveries
                    )

            # ---- close (server log lines from here on are the teardown's)
            marks = [len(server.log()) for server in servers]
            result["server_logs"] = {
                role: summarize_log(s.log()[:mark])
                for s, role, mark in zip(servers, roles, marks, strict=True)
            }
            for client in clients:
                client.send("close")
            for client in clients:
                closed = client.wait_for(key("closed"), 30)
                if closed["error_count"]:
                    result["errors"].append(
                        f"{client.name}: {closed['error_count']} errors: {closed['errors'][:5]}"
                    )
            broadcaster.send("quit")
            for server in servers:
                server.stop()
            result["teardown_logs"] = {
                role: summarize_log(s.log()[mark:])
                for s, role, mark in zip(servers, roles, marks, strict=True)
            }
            result["broadcaster_log"] = summarize_log(broadcaster.stderr())
            result["client_logs"] = {c.name: summarize_log(c.stderr()) for c in clients}
    finally:
        with contextlib.suppress(Exception):
            result["redis_keys_deleted"] = delete_prefix(prefix)
    result["elapsed_s"] = time.monotonic() - started
    logs = {
        **{f"server {name}": log for name, log in result.get("server_logs", {}).items()},
        **{name: log for name, log in result.get("client_logs", {}).items()},
        "broadcaster": result.get("broadcaster_log", {"lines": 0}),
    }
    for name, log in logs.items():
        if log["lines"]:
            result["errors"].append(
                f"{name} log: {log['lines']} lines, {log['tracebacks']} tracebacks, "
                f"{log['exceptions'] or log['head'][:3]}"
            )
    result["teardown_notes"] = [
        f"server {name}: {log['tracebacks']} tracebacks while the clients closed: "
        f"{log['exceptions'] or log['head'][:3]}"
        for name, log in result.get("teardown_logs", {}).items()
        if log["lines"]
    ]
    return result


# ---- report ------------------------------------------------------------------------------


def median_of(runs: list[dict]) -> dict:
    medians: dict = {}
    for metric in METRICS:
        values = [run[metric] for run in runs if run.get(metric) is not None]
        medians[metric] = statistics.median(values) if values else None
    medians["missing"] = sum(run.get("missing", 0) for run in runs)
    medians["errors"] = sum(len(run["errors"]) for run in runs)
    medians["reps"] = len(runs)
    ttas = [row["tta_ms"] for run in runs for row in run.get("broadcasts", []) if "tta_ms" in row]
    medians["pooled_tta_p50_ms"] = statistics.median(ttas) if ttas else None
    medians["pooled_tta_p90_ms"] = percentile(ttas, 0.9)
    return medians


VERSIONS = ["django-websocket", "django", "uvicorn", "uvloop", "httptools", "websockets",
            "channels", "channels-redis", "redis", "msgpack", "asgiref", "picows"]  # fmt: skip


def redis_version() -> str | None:
    """The Redis server's version, or None when it does not answer."""
    import redis

    with contextlib.suppress(Exception):
        return str(redis.Redis.from_url(REDIS_URL).info("server")["redis_version"])
    return None


LAYOUT_TEXT = {
    "apart": "both servers on cpu 0, the two client processes (500 connections each) on cpu 1",
    "shared": "server A + its 500 clients on cpu 0, server B + its 500 clients on cpu 1",
}
LAYOUT_NOTE = {
    "apart": "The servers share cpu 0 and the clients cpu 1, as in the rest of bench/: "
    "time-to-all measures the servers' delivery path, not the clients'. "
    "`--layout shared` gives each cpu a server and its own clients instead.",
    "shared": "Each cpu runs a server and its 500 clients, so a broadcast costs each cpu about "
    "500 x (server + client CPU per delivery): the floor of time-to-all on this machine, "
    "which also narrows the ratios, since both sides pay the same clients.",
}


def percent(value: float | None) -> float | None:
    """A fraction as a percentage (None stays None)."""
    return None if value is None else value * 100


def render(report: dict) -> str:
    med = report["medians"]
    p = report["params"]
    lines = [
        "# Fan-out benchmark",
        "",
        f"{report['date']} · {2 * GROUP_SIZE_PER_SERVER} members of one group, "
        f"{GROUP_SIZE_PER_SERVER} on each "
        f"of 2 uvicorn processes (`--loop uvloop --http httptools`, {LAYOUT_TEXT[p['layout']]}; "
        f"broadcaster and Redis not pinned) · {p['messages']} broadcasts "
        f"of {p['size']} bytes, {p['spacing'] * 1000:.0f} ms apart, each received by all before "
        "the next "
        f"(after {p['warmup']} warm-up broadcasts) · burst: {p['burst']} broadcasts back to back · "
        f"median of {p['reps']} interleaved reps.",
        "",
        "Time-to-all: from just before the broadcaster's call to the last of the 1,000 receive "
        "times "
        "(the clients' CLOCK_MONOTONIC). Deliveries/s = 1,000 ÷ median time-to-all. "
        "Server CPU µs/delivery = CPU time of both servers (every thread, schedstat) over the "
        "spaced-broadcast phase (idle gaps included) ÷ deliveries. Client CPU likewise for both "
        "client "
        "processes. Redis CPU per broadcast call. Broadcaster: CPU and wall time of one call.",
        "",
        LAYOUT_NOTE[p["layout"]],
        "",
        "| config | time-to-all p50 ms | p90 ms | first copy p50 ms | deliveries/s | server CPU "
        "µs/delivery "
        "| client CPU µs/delivery | Redis CPU µs/broadcast | broadcaster call ms / CPU µs "
        "| server idle CPU | lost | time-to-all p50 per rep |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for key_, m in med.items():
        reps = ", ".join(fmt(r.get("tta_p50_ms"), 1) for r in report["runs"][key_])
        err = f" ⚠ {m['errors']} errors" if m["errors"] else ""
        lines.append(
            f"| {key_} | **{fmt(m['tta_p50_ms'], 1)}** | {fmt(m['tta_p90_ms'], 1)} | "
            f"{fmt(m['first_p50_ms'], 1)} | **{fmt(m['deliveries_per_s'], 0)}** | "
            f"**{fmt(m['server_cpu_us_per_delivery'])}** | {fmt(m['client_cpu_us_per_delivery'])} "
            "| "
            f"{fmt(m['redis_cpu_us_per_broadcast'], 0)} | {fmt(m['call_p50_ms'], 2)} / "
            f"{fmt(m['broadcaster_cpu_us_per_call'], 0)} | "
            f"{fmt(percent(m['server_idle_cpu_util']), 1)}% | "
            f"{m['missing']} | {reps}{err} |"
        )
    lines += [
        "",
        f"### Burst: {p['burst']} broadcasts back to back "
        f"({p['burst'] * 2 * GROUP_SIZE_PER_SERVER:,} deliveries)",
        "",
        "| config | time until all arrived ms | deliveries/s | server CPU µs/delivery | client "
        "CPU µs/delivery |",
        "|---|--:|--:|--:|--:|",
    ]
    for key_, m in med.items():
        lines.append(
            f"| {key_} | {fmt(m['burst_tta_ms'], 1)} | {fmt(m['burst_deliveries_per_s'], 0)} | "
            f"{fmt(m['burst_server_cpu_us_per_delivery'])} | "
            f"{fmt(m['burst_client_cpu_us_per_delivery'])} |"
        )
    lines += [
        "",
        "### Joining",
        "",
        "| config | connect 500+500 s | wait for 1,000 members s | server CPU µs per connection "
        "(handshake + join) "
        "| server RSS MB / threads (both) |",
        "|---|--:|--:|--:|--:|",
    ]
    for key_, m in med.items():
        lines.append(
            f"| {key_} | {fmt(m['connect_s'], 2)} | {fmt(m['join_wait_s'], 2)} | "
            f"{fmt(m['server_cpu_us_per_join'], 0)} | {fmt(m['server_rss_mb'], 0)} / "
            f"{fmt(m['server_threads'], 0)} |"
        )
    if report["ratios"]:
        lines += [
            "",
            "## Ratios (medians)",
            "",
            f"Targets: ours ≥ {TARGET_RATIO:g}x Channels' deliveries/s, ≤ {TARGET_CPU_US:g} µs "
            "server CPU "
            "per delivery.",
            "",
            "| ours ÷ Channels | deliveries/s (spaced) | deliveries/s (burst) | server CPU "
            "µs/delivery | ours: server CPU µs/delivery |",
            "|---|--:|--:|--:|--:|",
        ]
        for row in report["ratios"]:
            ok = "✓" if (row["throughput_ratio"] or 0) >= TARGET_RATIO else "✗"
            cpu_ok = "✓" if (row["ours_cpu_us"] or 1e9) <= TARGET_CPU_US else "✗"
            lines.append(
                f"| {row['label']} | **{fmt(row['throughput_ratio'], 2)}x** {ok} | "
                f"{fmt(row['burst_throughput_ratio'], 2)}x | {fmt(row['cpu_ratio'], 2)}x | "
                f"{fmt(row['ours_cpu_us'])} {cpu_ok} |"
            )
    problems = [
        f"- {key_} rep {i + 1}: {error}"
        for key_, runs in report["runs"].items()
        for i, run in enumerate(runs)
        for error in run["errors"]
    ]
    if problems:
        lines += ["", "## Errors and log lines", "", *problems[:40]]
    notes = []
    for key_, runs in report["runs"].items():
        tracebacks = 0
        exceptions: collections.Counter[str] = collections.Counter()
        for run in runs:
            for log in run.get("teardown_logs", {}).values():
                tracebacks += log["tracebacks"]
                exceptions.update(log["exceptions"])
        if tracebacks or exceptions:
            notes.append(
                f"- {key_}: {tracebacks} tracebacks in {len(runs)} reps (both servers): "
                + ", ".join(f"`{line}` x{count}" for line, count in exceptions.most_common(5))
            )
    if notes:
        lines += [
            "",
            "## Server logs at teardown (1,000 clients closing at once; after the measurements)",
            "",
            *notes[:20],
        ]
    lines += footer_lines(report, "bench/.venv/bin/python bench/fanout.py")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--messages", type=int, default=20, help="spaced broadcasts per run")
    parser.add_argument("--spacing", type=float, default=0.15, help="seconds between broadcasts")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up broadcasts per run")
    parser.add_argument("--burst", type=int, default=50, help="back-to-back broadcasts (0: none)")
    parser.add_argument("--size", type=int, default=64, help="message size in bytes")
    parser.add_argument("--idle", type=float, default=1.0, help="seconds of idle CPU baseline")
    parser.add_argument("--broadcast-timeout", type=float, default=5.0)
    parser.add_argument("--run-timeout", type=float, default=120.0, help="per child process")
    parser.add_argument(
        "--only", help="comma-separated config keys: " + ",".join(c.key for c in CONFIGS)
    )
    parser.add_argument(
        "--layout",
        choices=sorted(LAYOUTS),
        default="apart",
        help="apart: both servers on cpu 0, clients on cpu 1; "
        "shared: a server and its clients per cpu",
    )
    parser.add_argument("--out", default="fanout", help="results/<out>.md and .json")
    parser.add_argument(
        "--logdir", help="keep the servers' and helpers' logs here (default: a temp dir)"
    )
    args = parser.parse_args()
    if not 1 <= args.messages <= 1000 or not 0 <= args.burst <= 1000 or not 1 <= args.reps <= 20:
        parser.error("--messages 1..1000, --burst 0..1000, --reps 1..20")

    configs = list(CONFIGS)
    if args.only:
        wanted = args.only.split(",")
        unknown = set(wanted) - {c.key for c in CONFIGS}
        if unknown:
            parser.error(f"unknown configs: {sorted(unknown)}")
        configs = [c for c in CONFIGS if c.key in wanted]

    nofile = raise_nofile()  # inherited by every child: 500 connections each and more
    stop_on_sigterm()
    with source_snapshot("fanout-src-") as source_hash:
        run_all(args, configs, source_hash, nofile)


def run_all(
    args: argparse.Namespace, configs: list[Config], source_hash: str, nofile: tuple[int, int]
) -> None:
    report: dict = {
        **report_header(VERSIONS, source_hash),
        "params": {
            "reps": args.reps,
            "messages": args.messages,
            "spacing": args.spacing,
            "warmup": args.warmup,
            "burst": args.burst,
            "size": args.size,
            "members": 2 * GROUP_SIZE_PER_SERVER,
            "servers": 2,
            "layout": args.layout,
            "cpus": LAYOUTS[args.layout],
            "nofile": list(nofile),
        },
        "configs": [asdict(c) for c in configs],
        "runs": {c.key: [] for c in configs},
    }
    report["versions"]["redis-server"] = redis_version()
    deleted = delete_prefix(PREFIX_ROOT)  # leftovers of an interrupted run: our own keys only
    if deleted:
        print(f"deleted {deleted} leftover {PREFIX_ROOT}* keys", file=sys.stderr)
    with contextlib.ExitStack() as stack:
        if args.logdir:
            logdir = args.logdir
            Path(logdir).mkdir(parents=True, exist_ok=True)
        else:
            logdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="fanout-logs-"))
        for rep in range(args.reps):
            for config in configs:
                try:
                    result = run_once(config, args, Path(logdir))
                except (TimeoutError, RuntimeError) as exc:
                    result = {"errors": [f"run failed: {exc}"[:3000]]}
                report["runs"][config.key].append(result)
                print(
                    f"rep {rep + 1}/{args.reps} {config.key:16} time-to-all p50 "
                    f"{fmt(result.get('tta_p50_ms'), 1):>7} ms p90 "
                    f"{fmt(result.get('tta_p90_ms'), 1):>7} ms  "
                    f"{fmt(result.get('deliveries_per_s'), 0):>8} deliveries/s  server "
                    f"{fmt(result.get('server_cpu_us_per_delivery')):>6} µs/delivery  client "
                    f"{fmt(result.get('client_cpu_us_per_delivery')):>5}  burst "
                    f"{fmt(result.get('burst_tta_ms'), 0)} ms  lost {result.get('missing', '?')}  "
                    f"({fmt(result.get('elapsed_s'), 1)} s)",
                    file=sys.stderr,
                    flush=True,
                )
                for error in result["errors"]:
                    print(f"  ! {config.key}: {error}", file=sys.stderr, flush=True)
    report["loadavg_after"] = loadavg()
    report["medians"] = {key_: median_of(runs) for key_, runs in report["runs"].items()}
    med = report["medians"]

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or not b else a / b

    report["ratios"] = [
        {
            "label": label,
            "numerator": a,
            "denominator": b,
            "throughput_ratio": ratio(med[a]["deliveries_per_s"], med[b]["deliveries_per_s"]),
            "burst_throughput_ratio": ratio(
                med[a]["burst_deliveries_per_s"], med[b]["burst_deliveries_per_s"]
            ),
            "cpu_ratio": ratio(
                med[a]["server_cpu_us_per_delivery"], med[b]["server_cpu_us_per_delivery"]
            ),
            "ours_cpu_us": med[a]["server_cpu_us_per_delivery"],
        }
        for a, b, label in RATIOS
        if a in med and b in med
    ]
    markdown = render(report)
    write_results(args.out, report, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
