"""``make bench``: django_websocket against the alternatives, one run, ratios and targets.

    bench/.venv/bin/python bench/run.py                        # everything, 1 rep (~15 min)
    bench/.venv/bin/python bench/run.py --reps 3
    bench/.venv/bin/python bench/run.py --only dw-async-uvicorn,starlette-uvicorn \
        --scenarios rtt,idle

Scenarios (``--scenarios``): ``rtt``, ``echo-c100``, ``big``, ``connect``,
``idle`` (run by ``loadgen.py``, picows on uvloop) and ``fanout`` (run by
``fanout.py``'s measurement: 1,000 members on two processes through Redis).
Every server in :data:`SERVERS` is one process on cpu 0 (``taskset``), the load
generator on cpu 1; a fresh server for every scenario, stopped by its pid, also
on error. Repetitions are interleaved (A B C ... A B C ...) and every metric is
the median of the reps. A server that cannot do a scenario (it crashes, times
out, refuses connections) gets a failure in its row, and the run goes on.

The headline numbers are the server's CPU time per unit of work (message,
handshake + close, delivery) from ``/proc/<pid>/stat`` of its process tree,
and its resident memory per idle connection; throughput and latency move with
the machine's other load. The client's CPU is reported beside the server's, and
a row where the client used as much CPU as the server is flagged.

Writes results/bench.md, results/bench.json and results/bench.png (the ratios
of the targets, for the docs) and prints the targets with PASS/FAIL.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import fanout
from harness import (
    BENCH,
    CLIENT_CPU,
    PYTHON,
    RESULTS,
    SERVER_CPU,
    Server,
    child_env,
    fmt,
    footer_lines,
    loadavg,
    median_or_none,
    pinned,
    raise_nofile,
    ratio,
    report_header,
    source_snapshot,
    stop_on_sigterm,
    uvicorn_argv,
    write_results,
)

# ---- servers ------------------------------------------------------------------------------

LOAD = ("rtt", "echo-c100", "big", "connect", "idle")
#: Connections a thread-per-connection server must be able to hold (idle: 5,000).
THREADS = "6000"


def gunicorn_argv(app: str, worker: str) -> list[str]:
    """One gunicorn worker process of ``worker`` class, sized for 5,000 WebSockets."""
    sizing = (
        ["--threads", THREADS, "--worker-connections", "12000"]
        if worker == "gthread"
        else ["--worker-connections", "12000"]
    )
    return [
        "{python}", "-m", "gunicorn", app, "-b", "127.0.0.1:{port}", "-k", worker,
        "--workers", "1", *sizing, "--no-control-socket", "--graceful-timeout", "5",
        "--log-level", "warning",
    ]  # fmt: skip


def daphne_argv(app: str) -> list[str]:
    """Daphne serving ``app`` (no access log)."""
    return ["{python}", "-m", "daphne", "-b", "127.0.0.1", "-p", "{port}", "-v", "0", app]


@dataclass(frozen=True)
class ServerConfig:
    """One server of the comparison.

    Attributes:
        key: its name in tables and on the command line.
        label: what it runs.
        server: the server program and worker.
        argv: the command line (``{python}`` and ``{port}`` are filled in).
        path: the WebSocket echo's URL path.
        ours: django_websocket (True) or an alternative.
        kind: ``asgi``, ``wsgi`` or ``plain`` (no framework).
        settings: DJANGO_SETTINGS_MODULE.
        scenarios: the scenarios it runs.
    """

    key: str
    label: str
    server: str
    argv: tuple[str, ...]
    path: str
    ours: bool
    kind: str
    settings: str = "project.settings"
    scenarios: tuple[str, ...] = LOAD


OUR_ASGI = "project.asgi:application"
CHANNELS_ASGI = "project.channels_asgi:application"
UVICORN = "uvicorn (uvloop, httptools, websockets-sansio)"

SERVERS: tuple[ServerConfig, ...] = (
    ServerConfig(
        "dw-async-uvicorn", "our async view", UVICORN,
        tuple(uvicorn_argv(OUR_ASGI)), "/async", True, "asgi",
    ),
    ServerConfig(
        "dw-sync-uvicorn", "our sync view", UVICORN,
        tuple(uvicorn_argv(OUR_ASGI)), "/sync", True, "asgi",
    ),
    ServerConfig(
        "dw-sync-gthread", "our sync view", f"gunicorn gthread --threads {THREADS}",
        tuple(gunicorn_argv("project.wsgi:application", "gthread")), "/sync", True, "wsgi",
    ),
    ServerConfig(
        "dw-sync-gevent", "our sync view", "gunicorn gevent",
        tuple(gunicorn_argv("project.wsgi:application", "gevent")), "/sync", True, "wsgi",
    ),
    ServerConfig(
        "dw-sync-runserver", "our sync view", "manage.py runserver --noreload",
        ("{python}", "manage.py", "runserver", "127.0.0.1:{port}", "--noreload"),
        "/sync", True, "wsgi",
    ),
    ServerConfig(
        "dw-async-uvicorn-mw",
        "our async view, `await request.auser()`, Django's default MIDDLEWARE",
        UVICORN, tuple(uvicorn_argv(OUR_ASGI)), "/async-user", True, "asgi",
        settings="project.settings_full", scenarios=("connect",),
    ),
    ServerConfig(
        "starlette-uvicorn", "bare Starlette endpoint", UVICORN,
        tuple(uvicorn_argv("project.starlette_app:app")), "/echo", False, "plain",
    ),
    ServerConfig(
        "websockets-asyncio", "websockets asyncio server (the floor)", "websockets 17 on uvloop",
        ("{python}", "-m", "project.ws_server", "--port", "{port}"), "/echo", False, "plain",
    ),
    ServerConfig(
        "channels-async-uvicorn", "Channels AsyncWebsocketConsumer", UVICORN,
        tuple(uvicorn_argv(CHANNELS_ASGI)), "/echo", False, "asgi",
    ),
    ServerConfig(
        "channels-sync-uvicorn", "Channels WebsocketConsumer", UVICORN,
        tuple(uvicorn_argv(CHANNELS_ASGI)), "/sync", False, "asgi",
    ),
    ServerConfig(
        "channels-async-daphne", "Channels AsyncWebsocketConsumer", "daphne",
        tuple(daphne_argv(CHANNELS_ASGI)), "/echo", False, "asgi",
    ),
    ServerConfig(
        "channels-sync-daphne", "Channels WebsocketConsumer", "daphne",
        tuple(daphne_argv(CHANNELS_ASGI)), "/sync", False, "asgi",
    ),
    ServerConfig(
        "channels-auth-uvicorn",
        "Channels AsyncWebsocketConsumer under AuthMiddlewareStack, same apps",
        UVICORN, tuple(uvicorn_argv("project.channels_auth_asgi:application")), "/echo",
        False, "asgi", settings="project.settings_full", scenarios=("connect",),
    ),
    ServerConfig(
        "flask-sock-gthread", "Flask-Sock", f"gunicorn gthread --threads {THREADS}",
        tuple(gunicorn_argv("project.flask_app:app", "gthread")), "/echo", False, "wsgi",
    ),
)  # fmt: skip
BY_KEY = {config.key: config for config in SERVERS}

#: fanout.py's configurations that the fanout scenario runs, and the server each stands for
#: (so that ``--only`` selects them too).
FANOUT = {
    "dw-async": "dw-async-uvicorn",
    "dw-sync": "dw-sync-uvicorn",
    "channels-redis": "channels-async-uvicorn",
    "channels-pubsub": "channels-async-uvicorn",
}


# ---- scenarios ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """A column of a scenario's table: a key of the flattened result."""

    key: str
    header: str
    digits: int = 1


@dataclass(frozen=True)
class Scenario:
    """A scenario: how to run it with loadgen.py and which numbers it yields."""

    name: str
    title: str
    what: str
    loadgen: tuple[str, ...] = ()
    metrics: tuple[Metric, ...] = ()
    #: (server, client) CPU per unit pairs, compared to flag a client that may be the limit.
    cpu_pairs: tuple[tuple[str, str], ...] = ()
    timeout: float = 60
    extra: dict[str, Any] = field(default_factory=dict)


ECHO_METRICS = (
    Metric("msgs_per_s", "msgs/s", 0),
    Metric("p50_us", "p50 µs", 0),
    Metric("p99_us", "p99 µs", 0),
    Metric("server_cpu_us_per_msg", "**server CPU µs/msg**"),
    Metric("client_cpu_us_per_msg", "client CPU µs/msg"),
    Metric("server_cpu_util", "server CPU %", 0),
    Metric("client_cpu_util", "client CPU %", 0),
)


def echo_scenario(name: str, connections: int, title: str, what: str) -> Scenario:
    """A scenario of sequential 32-byte echoes on ``connections`` connections."""
    return Scenario(
        name,
        f"{name}: {title}",
        what,
        ("--scenario", "echo", "--connections", str(connections)),
        ECHO_METRICS,
        (("server_cpu_us_per_msg", "client_cpu_us_per_msg"),),
    )


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        echo_scenario(
            "rtt",
            1,
            "one connection, 32-byte echo round trips",
            "Latency with one connection: mostly wake-ups, so quote p50.",
        ),
        echo_scenario(
            "echo-c100",
            100,
            "100 connections, each doing 32-byte echo round trips",
            "The server at 100% of its cpu: server CPU µs/msg is its cost per message.",
        ),
        Scenario(
            "big",
            "big: one connection, 1 MiB binary echo",
            "MB/s of payload, one direction; CPU per MB echoed.",
            ("--scenario", "echo", "--connections", "1", "--size", str(2**20)),
            (
                Metric("mb_per_s", "MB/s", 0),
                Metric("p50_us", "p50 µs/msg", 0),
                Metric("server_cpu_ms_per_mb", "**server CPU ms/MB**", 2),
                Metric("client_cpu_ms_per_mb", "client CPU ms/MB", 2),
                Metric("server_cpu_util", "server CPU %", 0),
            ),
            (("server_cpu_ms_per_mb", "client_cpu_ms_per_mb"),),
        ),
        Scenario(
            "connect",
            "connect: handshake + close, one at a time and 10 in parallel",
            "A new connection, the handshake, a close frame from the client, the server "
            "drops TCP; the next. Server CPU per handshake + close.",
            ("--scenario", "connect", "--parallel", "10"),
            (
                Metric("seq_per_s", "seq /s", 0),
                Metric("seq_p50_ms", "seq handshake p50 ms", 2),
                Metric("seq_server_us", "**seq server CPU µs**", 0),
                Metric("seq_client_us", "seq client CPU µs", 0),
                Metric("par_per_s", "x10 /s", 0),
                Metric("par_server_us", "**x10 server CPU µs**", 0),
                Metric("par_client_us", "x10 client CPU µs", 0),
            ),
            (("seq_server_us", "seq_client_us"), ("par_server_us", "par_client_us")),
            timeout=120,
        ),
        Scenario(
            "idle",
            "idle: resident memory per open idle connection",
            "RSS of the server's process tree (sum of VmRSS) with N connections open and the "
            "server idle (under 2% CPU over 0.5 s, or after 10 s), minus its RSS before the "
            "first (after a 10-connection warm-up), ÷ N. One echo on every connection first, "
            "so that every view runs. Server CPU % idle: over 1 s with N connections open and "
            "nothing sent (100% = one cpu). Each step (1,000, then 4,000 more) must open "
            "within 60 s.",
            ("--scenario", "idle", "--counts", "1000,5000", "--settle", "10"),
            (
                Metric("kb_1000", "KB/conn @1,000", 1),
                Metric("kb_5000", "**KB/conn @5,000**", 1),
                Metric("threads_per_conn", "threads/conn @1,000", 2),
                Metric("fds_per_conn", "fds/conn @1,000", 2),
                Metric("idle_cpu_1000", "server CPU % idle @1,000", 1),
                Metric("idle_cpu_5000", "server CPU % idle @5,000", 1),
                Metric("rss0_mb", "RSS before MB", 0),
                Metric("connect_5000_s", "opening 1,000→5,000 s", 1),
                Metric("server_us_per_conn", "server CPU µs/connection", 0),
            ),
            timeout=300,
        ),
        Scenario(
            "fanout",
            "fanout: one broadcast to 1,000 members on 2 processes through Redis",
            "fanout.py's measurement: 500 connections on each of two uvicorn processes "
            "(both on cpu 0, their clients on cpu 1), a broadcast from a third process, time "
            "until the last of the 1,000 has it. Server CPU of both processes per delivery.",
            (),
            (
                Metric("tta_p50_ms", "time-to-all p50 ms", 1),
                Metric("deliveries_per_s", "**deliveries/s**", 0),
                Metric("server_cpu_us_per_delivery", "**server CPU µs/delivery**", 1),
                Metric("client_cpu_us_per_delivery", "client CPU µs/delivery", 1),
                Metric("burst_deliveries_per_s", "burst deliveries/s", 0),
                Metric("redis_cpu_us_per_broadcast", "Redis CPU µs/broadcast", 0),
            ),
            (("server_cpu_us_per_delivery", "client_cpu_us_per_delivery"),),
            timeout=180,
            extra={
                "messages": 10,
                "spacing": 0.15,
                "warmup": 3,
                "burst": 20,
                "size": 64,
                "idle": 0.5,
                "broadcast_timeout": 5.0,
                "run_timeout": 150.0,
                "layout": "apart",
            },
        ),
    )
}


def percent(value: float | None) -> float | None:
    """A fraction as a percentage (None stays None)."""
    return None if value is None else value * 100


def flatten(scenario: str, result: dict[str, Any]) -> dict[str, Any]:
    """The numbers of one loadgen (or fanout) result that the tables show, by metric key."""
    if scenario == "connect":
        seq, par = result["modes"]["seq"], result["modes"]["par10"]
        return {
            "seq_per_s": seq["handshakes_per_s"],
            "seq_p50_ms": seq["handshake_p50_ms"],
            "seq_server_us": seq["server_cpu_us_per_handshake"],
            "seq_client_us": seq["client_cpu_us_per_handshake"],
            "par_per_s": par["handshakes_per_s"],
            "par_server_us": par["server_cpu_us_per_handshake"],
            "par_client_us": par["client_cpu_us_per_handshake"],
        }
    if scenario == "idle":
        steps = {step["count"]: step for step in result["steps"]}
        at = steps.get(5000, {})
        return {
            "kb_1000": steps.get(1000, {}).get("kb_per_connection"),
            "kb_5000": at.get("kb_per_connection"),
            "threads_per_conn": steps.get(1000, {}).get("threads_per_connection"),
            "fds_per_conn": steps.get(1000, {}).get("fds_per_connection"),
            "idle_cpu_1000": percent(steps.get(1000, {}).get("idle_cpu_util")),
            "idle_cpu_5000": percent(at.get("idle_cpu_util")),
            "rss0_mb": result["rss0_mb"],
            "connect_5000_s": at.get("connect_s"),
            "server_us_per_conn": at.get("server_cpu_us_per_connection"),
        }
    return {metric.key: result.get(metric.key) for metric in SCENARIOS[scenario].metrics}


def run_loadgen(
    config: ServerConfig, scenario: Scenario, args: argparse.Namespace, logdir: Path
) -> dict[str, Any]:
    """Start a fresh server, run one loadgen scenario against it, stop the server."""
    name = f"{config.key}-{scenario.name}"
    env = child_env(config.settings)
    with Server(name, config.argv, logdir, env=env, ready_path=config.path) as server:
        timeout = scenario.timeout + 2 * args.seconds
        argv = [
            str(PYTHON), str(BENCH / "loadgen.py"),
            "--url", f"ws://127.0.0.1:{server.port}{config.path}",
            "--server-pid", str(server.pid), *scenario.loadgen,
            "--warmup", str(args.warmup), "--duration", str(args.seconds),
            "--timeout", str(timeout),
        ]  # fmt: skip
        try:
            done = subprocess.run(
                pinned(CLIENT_CPU, argv), capture_output=True, text=True, timeout=timeout + 30
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"loadgen did not finish in {timeout + 30:.0f}s") from exc
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines() or ["(no output)"]
            raise RuntimeError(
                f"loadgen failed ({done.returncode}): {lines[-1]}\n"
                f"{chr(10).join(lines[-12:])}\nserver log: {server.log_tail(800)}"
            )
        result: dict[str, Any] = json.loads(done.stdout)
        log = server.log()
    result["server_log_lines"] = len(log.splitlines())
    result["server_log_head"] = log.splitlines()[:10]
    return result


def run_fanout(key: str, scenario: Scenario, logdir: Path) -> dict[str, Any]:
    """One run of fanout.py's measurement for its configuration ``key``."""
    config = next(c for c in fanout.CONFIGS if c.key == key)
    result = fanout.run_once(config, argparse.Namespace(**scenario.extra), logdir)
    if result.get("deliveries_per_s") is None:
        raise RuntimeError(f"no complete broadcast: {result['errors'][:3]}")
    return result


# ---- targets and ratios ---------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A goal of the issue: ours (÷ another, or alone) against a limit."""

    label: str
    scenario: str
    metric: str
    ours: str
    other: str | None
    limit: float
    at_most: bool = True


TARGETS: tuple[Target, ...] = (
    Target("async view on uvicorn ÷ bare Starlette: echo-c100 server CPU/msg",
           "echo-c100", "server_cpu_us_per_msg", "dw-async-uvicorn", "starlette-uvicorn", 1.3),
    Target("async view on uvicorn ÷ Channels async consumer (uvicorn): echo-c100 server CPU/msg",
           "echo-c100", "server_cpu_us_per_msg", "dw-async-uvicorn", "channels-async-uvicorn",
           0.35),
    Target("sync view on uvicorn ÷ Channels sync consumer (uvicorn): echo-c100 server CPU/msg",
           "echo-c100", "server_cpu_us_per_msg", "dw-sync-uvicorn", "channels-sync-uvicorn", 0.5),
    Target("sync view on gunicorn gthread ÷ Flask-Sock on gthread: echo-c100 server CPU/msg",
           "echo-c100", "server_cpu_us_per_msg", "dw-sync-gthread", "flask-sock-gthread", 1.0),
    Target("sync view on gunicorn gthread ÷ Flask-Sock on gthread: echo-c100 msgs/s",
           "echo-c100", "msgs_per_s", "dw-sync-gthread", "flask-sock-gthread", 1.0,
           at_most=False),
    Target("handshake + close, full middleware ÷ Channels AuthMiddlewareStack (uvicorn), "
           "server CPU, 10 in parallel",
           "connect", "par_server_us", "dw-async-uvicorn-mw", "channels-auth-uvicorn", 0.8),
    Target("handshake + close, full middleware ÷ Channels AuthMiddlewareStack (uvicorn), "
           "server CPU, sequential",
           "connect", "seq_server_us", "dw-async-uvicorn-mw", "channels-auth-uvicorn", 0.8),
    Target("idle @5,000: async view on uvicorn ÷ Starlette on uvicorn, KB/connection",
           "idle", "kb_5000", "dw-async-uvicorn", "starlette-uvicorn", 1.3),
    Target("idle @5,000: sync view on uvicorn, KB/connection",
           "idle", "kb_5000", "dw-sync-uvicorn", None, 70),
    Target("idle @5,000: sync view on gunicorn gthread, KB/connection",
           "idle", "kb_5000", "dw-sync-gthread", None, 70),
    Target("fan-out: async view ÷ Channels RedisChannelLayer, deliveries/s",
           "fanout", "deliveries_per_s", "dw-async", "channels-redis", 10, at_most=False),
    Target("fan-out: async view ÷ Channels RedisPubSubChannelLayer, deliveries/s",
           "fanout", "deliveries_per_s", "dw-async", "channels-pubsub", 10, at_most=False),
    Target("fan-out: sync view ÷ Channels RedisChannelLayer, deliveries/s",
           "fanout", "deliveries_per_s", "dw-sync", "channels-redis", 10, at_most=False),
    Target("fan-out: sync view ÷ Channels RedisPubSubChannelLayer, deliveries/s",
           "fanout", "deliveries_per_s", "dw-sync", "channels-pubsub", 10, at_most=False),
    Target("fan-out: async view, server CPU µs per delivery",
           "fanout", "server_cpu_us_per_delivery", "dw-async", None, 40),
    Target("fan-out: sync view, server CPU µs per delivery",
           "fanout", "server_cpu_us_per_delivery", "dw-sync", None, 40),
)  # fmt: skip

#: (ours, alternative): the rows of the ratio table and of the chart.
PAIRS: tuple[tuple[str, str], ...] = (
    ("dw-async-uvicorn", "starlette-uvicorn"),
    ("dw-async-uvicorn", "websockets-asyncio"),
    ("dw-async-uvicorn", "channels-async-uvicorn"),
    ("dw-async-uvicorn", "channels-async-daphne"),
    ("dw-sync-uvicorn", "channels-sync-uvicorn"),
    ("dw-sync-uvicorn", "channels-sync-daphne"),
    ("dw-sync-gthread", "flask-sock-gthread"),
    ("dw-sync-gevent", "flask-sock-gthread"),
    ("dw-sync-runserver", "flask-sock-gthread"),
    ("dw-async-uvicorn-mw", "channels-auth-uvicorn"),
    ("dw-async", "channels-redis"),
    ("dw-async", "channels-pubsub"),
    ("dw-sync", "channels-redis"),
    ("dw-sync", "channels-pubsub"),
)
#: The ratio table's columns: (scenario, metric, header). Every one is a cost: lower is better.
RATIO_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("rtt", "p50_us", "rtt p50"),
    ("echo-c100", "server_cpu_us_per_msg", "echo-c100 CPU/msg"),
    ("big", "server_cpu_ms_per_mb", "big CPU/MB"),
    ("connect", "seq_server_us", "connect CPU/handshake (seq)"),
    ("connect", "par_server_us", "connect CPU/handshake (x10)"),
    ("idle", "kb_5000", "idle KB/conn @5,000"),
    ("fanout", "tta_p50_ms", "fanout time-to-all"),
    ("fanout", "server_cpu_us_per_delivery", "fanout CPU/delivery"),
)


def evaluate(target: Target, medians: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """The measured value of a target and whether it passes (None when it was not measured)."""
    table = medians.get(target.scenario, {})
    ours = table.get(target.ours, {}).get(target.metric)
    value = ours
    if target.other is not None:
        value = ratio(ours, table.get(target.other, {}).get(target.metric))
    passed = None
    if value is not None:
        passed = value <= target.limit if target.at_most else value >= target.limit
    elif table.get(target.ours, {}).get("failed") or (table.get(target.ours) and ours is None):
        passed = False  # ours ran and could not do it (e.g. did not reach 5,000 connections)
    return {**asdict(target), "value": value, "passed": passed}


def ratio_rows(medians: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """ours ÷ alternative for every pair and every cost column both were measured in."""
    rows = []
    for ours, other in PAIRS:
        cells = {}
        for scenario, metric, header in RATIO_COLUMNS:
            table = medians.get(scenario, {})
            cells[header] = ratio(table.get(ours, {}).get(metric), table.get(other, {}).get(metric))
        if any(value is not None for value in cells.values()):
            rows.append({"ours": ours, "other": other, "ratios": cells})
    return rows


# ---- the run ------------------------------------------------------------------------------


def plan(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(scenario, key) in the order of one repetition: per scenario, every server in turn."""
    wanted = set(args.only.split(",")) if args.only else None
    steps = []
    for scenario in args.scenarios.split(","):
        if scenario == "fanout":
            keys = [k for k, server in FANOUT.items() if wanted is None or server in wanted]
        else:
            keys = [
                c.key
                for c in SERVERS
                if scenario in c.scenarios and (wanted is None or c.key in wanted)
            ]
        steps += [(scenario, key) for key in keys]
    return steps


def run_step(scenario: str, key: str, args: argparse.Namespace, logdir: Path) -> dict[str, Any]:
    """One scenario against one server; a failure is returned as ``{"failed": why}``."""
    started = time.monotonic()
    try:
        if scenario == "fanout":
            raw = run_fanout(key, SCENARIOS[scenario], logdir)
        else:
            raw = run_loadgen(BY_KEY[key], SCENARIOS[scenario], args, logdir)
        row = {**flatten(scenario, raw), "raw": raw}
        errors = raw.get("errors") or []
        if errors:
            row["warnings"] = [str(e)[:300] for e in errors[:5]]
    except (RuntimeError, TimeoutError, OSError, ValueError, KeyError) as exc:
        row = {"failed": f"{type(exc).__name__}: {exc}"[:1500]}
    row["elapsed_s"] = time.monotonic() - started
    return row


def progress(rep: int, args: argparse.Namespace, scenario: str, key: str, row: dict) -> None:
    """One line on stderr per run."""
    head = f"rep {rep + 1}/{args.reps} {scenario:9} {key:22}"
    if "failed" in row:
        text = f"FAILED {row['failed'][:300]}"
    else:
        text = "  ".join(
            f"{m.key}={fmt(row.get(m.key), m.digits)}"
            for m in SCENARIOS[scenario].metrics
            if not m.key.endswith("_util")
        )
        for server_metric, client_metric in SCENARIOS[scenario].cpu_pairs:
            if flagged(row, server_metric, client_metric):
                text += f"  ⚠ client CPU ≥ server CPU ({client_metric})"
        if row.get("warnings"):
            text += f"  ! {row['warnings'][0][:160]}"
    print(f"{head} {text} ({row['elapsed_s']:.0f} s)", file=sys.stderr, flush=True)


def flagged(row: dict[str, Any], server_metric: str, client_metric: str) -> bool:
    """True when the client used at least as much CPU per unit as the server."""
    server, client = row.get(server_metric), row.get(client_metric)
    return server is not None and client is not None and client >= server


def medians_of(runs: dict[str, dict[str, list[dict]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per scenario and server: the median of every metric over the reps that did not fail."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for scenario, by_key in runs.items():
        out[scenario] = {}
        for key, rows in by_key.items():
            ok = [row for row in rows if "failed" not in row]
            med: dict[str, Any] = {
                m.key: median_or_none(row.get(m.key) for row in ok)
                for m in SCENARIOS[scenario].metrics
            }
            med["reps"] = len(ok)
            med["failed"] = [row["failed"] for row in rows if "failed" in row]
            med["warnings"] = [w for row in ok for w in row.get("warnings", [])][:5]
            out[scenario][key] = med
    return out


# ---- report ---------------------------------------------------------------------------------


def server_cells(key: str) -> tuple[str, str]:
    """The label and server of a key of either table (servers or fanout configurations)."""
    if key in BY_KEY:
        return BY_KEY[key].label, BY_KEY[key].server
    config = next(c for c in fanout.CONFIGS if c.key == key)
    return config.label, "2 uvicorn processes, Redis"


def is_ours(key: str) -> bool:
    """Whether a key of either table is django_websocket."""
    return BY_KEY[key].ours if key in BY_KEY else key.startswith("dw-")


def render(report: dict[str, Any]) -> str:
    """The Markdown of results/bench.md."""
    p = report["params"]
    lines = [
        "# `make bench`: django_websocket against the alternatives",
        "",
        f"{report['date']} · {p['seconds']:g} s measured per scenario after {p['warmup']:g} s "
        f"warm-up · median of {p['reps']} interleaved rep(s) · every server one process on "
        f"cpu {SERVER_CPU}, the load generator (picows on uvloop) on cpu {CLIENT_CPU} "
        f"(`taskset`) · load average before {' '.join(report['machine'].get('loadavg', []))}, "
        f"after {' '.join(report.get('loadavg_after', []))} · full run {p['elapsed_min']:.1f} min.",
        "",
        "Server CPU = `utime + stime` of the server's process tree (`/proc/<pid>/stat`) over "
        "the measured window ÷ units of work. The machine is shared: throughput and latency "
        "move with its other load, CPU per unit much less. ⚠ marks a row where the client "
        "used as much CPU per unit as the server (the client may have been the limit).",
        "",
        "## Targets",
        "",
        "| target | measured | limit | result |",
        "|---|--:|--:|---|",
    ]
    for t in report["targets"]:
        unit = "x" if t["other"] else ""
        verdict = {True: "**PASS**", False: "**FAIL**", None: "not measured"}[t["passed"]]
        sign = "≤" if t["at_most"] else "≥"
        lines.append(
            f"| {t['label']} | {fmt(t['value'], 2)}{unit} | {sign} {t['limit']:g}{unit} "
            f"| {verdict} |"
        )
    headers = [header for _, _, header in RATIO_COLUMNS]
    lines += [
        "",
        "## Ratios: ours ÷ alternative",
        "",
        "Medians. Every column is a cost: under 1, ours costs less.",
        "",
        "| ours | alternative | " + " | ".join(headers) + " |",
        "|---|---|" + "--:|" * len(headers),
    ]
    for row in report["ratios"]:
        cells = " | ".join(fmt(row["ratios"][h], 2) for h in headers)
        lines.append(f"| {row['ours']} | {row['other']} | {cells} |")
    for name, table in report["medians"].items():
        scenario = SCENARIOS[name]
        lines += [
            "",
            f"## {scenario.title}",
            "",
            scenario.what,
            "",
            "| server | what | on | "
            + " | ".join(m.header for m in scenario.metrics)
            + " | notes |",
            "|---|---|---|" + "--:|" * len(scenario.metrics) + "---|",
        ]
        for key, med in table.items():
            label, server = server_cells(key)
            cells = []
            for m in scenario.metrics:
                value = med.get(m.key)
                if m.key.endswith("_util") and value is not None:
                    value *= 100
                cells.append(fmt(value, m.digits))
            notes = [f"FAILED: {why[:200]}" for why in med["failed"]]
            notes += [
                "⚠ client CPU ≥ server CPU" for s, c in scenario.cpu_pairs if flagged(med, s, c)
            ]
            notes += [f"{w[:120]}" for w in med["warnings"][:2]]
            name_cell = f"**{key}**" if is_ours(key) else key
            lines.append(
                f"| {name_cell} | {label} | {server} | {' | '.join(cells)} "
                f"| {'; '.join(notes).replace('|', '/')} |"
            )
    lines += footer_lines(report, "make bench")
    return "\n".join(lines) + "\n"


def chart(report: dict[str, Any], path: Path) -> None:
    """A horizontal bar chart of the main ratios (ours ÷ alternative, log scale) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = {
        "echo-c100 CPU/msg": ("CPU per message (100 connections)", "#1f77b4"),
        "connect CPU/handshake (x10)": ("CPU per handshake + close", "#ff7f0e"),
        "idle KB/conn @5,000": ("memory per idle connection (5,000)", "#2ca02c"),
        "fanout time-to-all": ("fan-out: time until 1,000 have it", "#9467bd"),
        "fanout CPU/delivery": ("fan-out: CPU per delivery", "#8c564b"),
    }
    bars: list[tuple[float, float, str]] = []  # (y, value, column)
    ticks: list[tuple[float, str]] = []
    y = 0.0
    for row in report["ratios"]:
        present = [(c, row["ratios"][c]) for c in columns if row["ratios"].get(c)]
        if not present:
            continue
        start = y
        for column, value in present:
            bars.append((y, value, column))
            y += 1
        ticks.append(((start + y - 1) / 2, f"{row['ours']}\n÷ {row['other']}"))
        y += 0.8
    if not bars:
        return
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.22 * y), dpi=120)
    for column, (legend, color) in columns.items():
        mine = [(b[0], b[1]) for b in bars if b[2] == column]
        if mine:
            ax.barh([m[0] for m in mine], [m[1] for m in mine], height=0.85, color=color,
                    label=legend)  # fmt: skip
    for bar_y, value, _ in bars:
        ax.text(value * 1.04, bar_y, f"{value:.2f}", va="center", fontsize=6)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xscale("log")
    ax.set_yticks([t[0] for t in ticks])
    ax.set_yticklabels([t[1] for t in ticks], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("ours ÷ alternative (log scale; left of 1: ours costs less)", fontsize=8)
    ax.set_title(f"django_websocket ÷ alternatives, one process each ({report['date']})",
                 fontsize=9)  # fmt: skip
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


VERSIONS = [
    "django-websocket", "django", "uvicorn", "uvloop", "httptools", "websockets", "starlette",
    "channels", "channels-redis", "daphne", "twisted", "flask", "flask-sock", "simple-websocket",
    "gunicorn", "gevent", "asgiref", "redis", "picows",
]  # fmt: skip


def run_all(args: argparse.Namespace, source_hash: str, nofile: tuple[int, int]) -> dict:
    """Every step of every rep; the report (medians, ratios, targets)."""
    started = time.monotonic()
    report: dict[str, Any] = {
        **report_header(VERSIONS, source_hash),
        "params": {
            "reps": args.reps,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "scenarios": args.scenarios.split(","),
            "nofile": list(nofile),
            "server_cpu": SERVER_CPU,
            "client_cpu": CLIENT_CPU,
        },
        "servers": [asdict(c) for c in SERVERS],
        "runs": {},
    }
    report["versions"]["redis-server"] = fanout.redis_version()
    steps = plan(args)
    if not steps:
        raise SystemExit("nothing to run: check --only and --scenarios")
    if any(scenario == "fanout" for scenario, _ in steps):
        fanout.delete_prefix(fanout.PREFIX_ROOT)  # an interrupted run's keys: ours only
    with contextlib.ExitStack() as stack:
        if args.logdir:
            logdir = Path(args.logdir)
            logdir.mkdir(parents=True, exist_ok=True)
        else:
            logdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-logs-")))
        for rep in range(args.reps):
            for scenario, key in steps:
                row = run_step(scenario, key, args, logdir)
                report["runs"].setdefault(scenario, {}).setdefault(key, []).append(row)
                progress(rep, args, scenario, key, row)
    report["loadavg_after"] = loadavg()
    report["params"]["elapsed_min"] = (time.monotonic() - started) / 60
    report["medians"] = medians_of(report["runs"])
    report["ratios"] = ratio_rows(report["medians"])
    report["targets"] = [evaluate(t, report["medians"]) for t in TARGETS]
    return report


def print_targets(report: dict[str, Any]) -> None:
    """Each target with its measured value and PASS/FAIL, on stdout."""
    print("\nTargets:")
    for t in report["targets"]:
        verdict = {True: "PASS", False: "FAIL", None: "n/a "}[t["passed"]]
        unit = "x" if t["other"] else ""
        sign = "<=" if t["at_most"] else ">="
        value = f"{fmt(t['value'], 2):>8}{unit}"
        print(f"  {verdict}  {value}  ({sign} {t['limit']:g}{unit})  {t['label']}")


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, run, write results/<out>.md/.json/.png, print the targets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=1, help="interleaved repetitions (median)")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per window")
    parser.add_argument("--warmup", type=float, default=0.5, help="warm-up seconds (echo)")
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help="comma-separated: " + ",".join(SCENARIOS)
    )
    parser.add_argument("--only", help="comma-separated server keys: " + ",".join(BY_KEY))
    parser.add_argument("--out", default="bench", help="results/<out>.md, .json and .png")
    parser.add_argument("--logdir", help="keep every server's log here (default: a temp dir)")
    args = parser.parse_args(argv)
    unknown = set(args.scenarios.split(",")) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {sorted(unknown)}")
    unknown = set(args.only.split(",")) - set(BY_KEY) if args.only else set()
    if unknown:
        parser.error(f"unknown servers: {sorted(unknown)}")
    if not 1 <= args.reps <= 10 or not 0.5 <= args.seconds <= 30:
        parser.error("--reps 1..10, --seconds 0.5..30")

    nofile = raise_nofile()  # inherited by every child: 5,000 connections and more
    stop_on_sigterm()
    with source_snapshot("bench-src-") as source_hash:
        report = run_all(args, source_hash, nofile)
    markdown = render(report)
    write_results(args.out, report, markdown)
    chart(report, RESULTS / f"{args.out}.png")
    print(markdown)
    print_targets(report)


if __name__ == "__main__":
    main()
