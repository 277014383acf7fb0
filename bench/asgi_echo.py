"""ASGI echo benchmark: django_websocket views vs Starlette vs Channels on uvicorn.

    bench/.venv/bin/python bench/asgi_echo.py            # everything, 3 interleaved reps
    bench/.venv/bin/python bench/asgi_echo.py --only dw-async,starlette --reps 1

Every run starts one uvicorn process for one configuration (pinned to cpu 0,
``--loop uvloop --http httptools``), runs ``loadgen.py`` against it (pinned to
cpu 1: 100 connections of sequential 32-byte text echoes, 1 s warm-up, 5 s
measured) and stops the server by its pid, also on error. Configurations are
interleaved (A B C D ... A B C D ...) and each metric is the median over the
repetitions. Writes results/asgi-echo.md and results/asgi-echo.json next to
this file and prints the Markdown.

The headline number is the server's CPU time per echoed message (µs): the
machine is shared, so throughput and latency are noisier than CPU cost.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

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
    pinned,
    report_header,
    source_snapshot,
    stop_on_sigterm,
    uvicorn_argv,
    write_results,
)


@dataclass(frozen=True)
class Config:
    key: str
    label: str
    app: str
    path: str
    ws: str = "websockets-sansio"
    deflate: bool = False
    settings: str = "project.settings"
    env: tuple[tuple[str, str], ...] = ()


CONFIGS = [
    Config("dw-async", "django_websocket async view", "project.asgi:application", "/async"),
    Config("dw-sync", "django_websocket sync view", "project.asgi:application", "/sync"),
    Config("starlette", "Starlette endpoint", "project.starlette_app:app", "/echo"),
    Config(
        "channels", "Channels AsyncWebsocketConsumer", "project.channels_asgi:application", "/echo"
    ),
    Config(
        "dw-async-mw",
        "django_websocket async view + Session/Auth middleware",
        "project.asgi:application",
        "/async",
        settings="project.settings_mw",
    ),
    Config(
        "dw-async-deflate",
        "django_websocket async view, permessage-deflate on",
        "project.asgi:application",
        "/async",
        deflate=True,
    ),
    Config(
        "starlette-deflate",
        "Starlette endpoint, permessage-deflate on",
        "project.starlette_app:app",
        "/echo",
        deflate=True,
    ),
    Config(
        "dw-async-wsproto",
        "django_websocket async view",
        "project.asgi:application",
        "/async",
        ws="wsproto",
    ),
    Config(
        "starlette-wsproto",
        "Starlette endpoint",
        "project.starlette_app:app",
        "/echo",
        ws="wsproto",
    ),
]

# (numerator, denominator, label)
RATIOS = [
    ("dw-async", "starlette", "our async ÷ Starlette"),
    ("dw-async", "channels", "our async ÷ Channels async"),
    ("dw-sync", "channels", "our sync ÷ Channels async"),
    ("dw-sync", "starlette", "our sync ÷ Starlette"),
    ("dw-async-wsproto", "starlette-wsproto", "our async ÷ Starlette (wsproto)"),
    ("dw-async-deflate", "starlette-deflate", "our async ÷ Starlette (deflate on)"),
    ("dw-async-mw", "dw-async", "our async with Session+Auth middleware ÷ without"),
]

METRICS = [
    "msgs_per_s",
    "p50_us",
    "p99_us",
    "server_cpu_us_per_msg",
    "client_cpu_us_per_msg",
    "server_cpu_util",
    "client_cpu_util",
    "server_cpu_us_per_connect",
    "server_rss_mb",
    "server_threads",
]


def server(config: Config, logdir: Path, extra_env: dict[str, str] | None = None) -> Server:
    """The uvicorn process of one configuration (a context manager that always stops it)."""
    return Server(
        config.key,
        uvicorn_argv(config.app, config.ws, config.deflate),
        logdir,
        env=child_env(config.settings, {**dict(config.env), **(extra_env or {})}),
        ready_path=config.path,
    )


def run_once(config: Config, args: argparse.Namespace, logdir: Path) -> dict:
    with server(config, logdir) as srv:
        argv = [
            str(PYTHON), str(BENCH / "loadgen.py"),
            "--url", f"ws://127.0.0.1:{srv.port}{config.path}",
            "--server-pid", str(srv.pid),
            "--connections", str(args.connections),
            "--warmup", str(args.warmup),
            "--duration", str(args.duration),
            "--timeout", str(args.duration + args.warmup + 40),
        ]  # fmt: skip
        if config.deflate:
            argv.append("--deflate")
        done = subprocess.run(
            pinned(CLIENT_CPU, argv),
            capture_output=True,
            text=True,
            timeout=args.duration + args.warmup + 60,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{config.key}: loadgen failed ({done.returncode}): {done.stderr[-2000:]}\n"
                f"server log: {srv.log_tail()}"
            )
        result = json.loads(done.stdout)
        if result["error_count"]:
            print(
                f"  ! {config.key}: {result['error_count']} errors: {result['errors'][:3]}",
                file=sys.stderr,
            )
    return result


def profile(config: Config, args: argparse.Namespace, logdir: Path) -> str:
    """cProfile the server's event loop for 3 s under load; return a per-message summary."""
    import pstats

    prof = Path(logdir) / f"{config.key}.prof"
    with server(config, logdir, {"BENCH_CPROFILE": str(prof)}) as srv:
        argv = [
            str(PYTHON), str(BENCH / "loadgen.py"),
            "--url", f"ws://127.0.0.1:{srv.port}{config.path}",
            "--server-pid", str(srv.pid), "--connections", str(args.connections),
            "--warmup", "2", "--duration", "4", "--timeout", "60",
        ]  # fmt: skip
        if config.deflate:
            argv.append("--deflate")
        load = subprocess.Popen(pinned(CLIENT_CPU, argv), stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(2.5)
            os.kill(srv.pid, signal.SIGUSR1)
            time.sleep(3)
            os.kill(srv.pid, signal.SIGUSR2)
            load.communicate(timeout=60)
        finally:
            if load.poll() is None:
                load.kill()
                load.wait()
        for _ in range(50):
            if prof.exists():
                break
            time.sleep(0.1)
    stats = pstats.Stats(str(prof))
    # One text frame in, one echo out: uvicorn's handle_text runs once per message.
    messages = sum(
        entry[1]
        for (filename, _, name), entry in stats.stats.items()
        if name == "handle_text" and "uvicorn" in filename
    )
    total = stats.total_tt
    lines = [
        f"## cProfile: {config.key} ({config.label}, --ws {config.ws}, deflate {config.deflate})",
        "",
        f"{messages} messages in the profiled window; profiled CPU {total * 1e6 / messages:.1f} "
        "µs/msg "
        "(cProfile inflates Python-heavy code; compare between configs, not with the table).",
        "",
        "| self µs/msg | cumulative µs/msg | calls/msg | function |",
        "|--:|--:|--:|---|",
    ]
    rows = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)
    for (filename, line, name), (_, ncalls, tottime, cumtime, _) in rows[: args.profile_top]:
        short = filename.split("site-packages/")[-1].split("/src/")[-1]
        if "/django_websocket/" in short:  # the source snapshot
            short = "django_websocket/" + short.split("/django_websocket/", 1)[1]
        short = short.split("/lib/python3.11/")[-1].replace(str(BENCH) + "/", "")
        lines.append(
            f"| {tottime * 1e6 / messages:.2f} | {cumtime * 1e6 / messages:.2f} | "
            f"{ncalls / messages:.2f} | `{short}:{line} {name}` |"
        )
    return "\n".join(lines) + "\n"


def median_of(runs: list[dict]) -> dict:
    medians: dict = {}
    for metric in METRICS:
        values = [run[metric] for run in runs if run.get(metric) is not None]
        medians[metric] = statistics.median(values) if values else None
    medians["errors"] = sum(run["error_count"] for run in runs)
    medians["reps"] = len(runs)
    return medians


VERSIONS = ["django-websocket", "django", "uvicorn", "uvloop", "httptools", "websockets",
            "wsproto", "starlette", "channels", "asgiref", "picows"]  # fmt: skip


def render(report: dict) -> str:
    configs = {c["key"]: c for c in report["configs"]}
    med = report["medians"]
    lines = [
        "# ASGI echo benchmark",
        "",
        f"{report['date']} · {report['params']['connections']} connections · "
        f"{report['params']['message_bytes']}-byte text echo · {report['params']['warmup']} s "
        "warm-up + "
        f"{report['params']['duration']} s measured · median of {report['params']['reps']} "
        "interleaved reps · "
        f"uvicorn `--loop uvloop --http httptools`, server on cpu {SERVER_CPU}, client (picows) "
        f"on cpu {CLIENT_CPU}.",
        "",
        "CPU µs/msg = CPU time (user+system) of the process over the measured window ÷ echoes. "
        "Connect = server CPU per connection for the handshake + view start (schedstat). "
        "RSS and threads of the server with the 100 connections open.",
        "",
        "| config | app | --ws | deflate | msgs/s | p50 ms | p99 ms | server CPU µs/msg | client "
        "CPU µs/msg "
        "| server CPU util | connect µs/conn | server RSS MB / threads | server µs/msg per rep |",
        "|---|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for key, m in med.items():
        c = configs[key]
        reps = ", ".join(fmt(r["server_cpu_us_per_msg"]) for r in report["runs"][key])
        err = f" ⚠ {m['errors']} errors" if m["errors"] else ""
        lines.append(
            f"| {key} | {c['label']} | {c['ws']} | {'on' if c['deflate'] else 'off'} | "
            f"{fmt(m['msgs_per_s'], 0)} | {fmt(m['p50_us'] / 1000, 2)} | "
            f"{fmt(m['p99_us'] / 1000, 2)} | "
            f"**{fmt(m['server_cpu_us_per_msg'])}** | {fmt(m['client_cpu_us_per_msg'])} | "
            f"{fmt(m['server_cpu_util'] * 100, 0)}% | {fmt(m['server_cpu_us_per_connect'], 0)} | "
            f"{fmt(m['server_rss_mb'], 0)} / {fmt(m['server_threads'], 0)} | {reps}{err} |"
        )
    lines += [
        "",
        "## Ratios (medians)",
        "",
        "| ratio | server CPU µs/msg | msgs/s |",
        "|---|--:|--:|",
    ]
    for row in report["ratios"]:
        lines.append(
            f"| {row['label']} | **{fmt(row['cpu_ratio'], 2)}x** | "
            f"{fmt(row['throughput_ratio'], 2)}x |"
        )
    lines += footer_lines(report, "bench/.venv/bin/python bench/asgi_echo.py")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument(
        "--only", help="comma-separated config keys: " + ",".join(c.key for c in CONFIGS)
    )
    parser.add_argument("--out", default="asgi-echo", help="results/<out>.md and .json")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead of the benchmark, cProfile each selected config's server under load "
        "and write results/profile-<key>.md",
    )
    parser.add_argument("--profile-top", type=int, default=40)
    args = parser.parse_args()

    configs = list(CONFIGS)
    if args.only:
        wanted = args.only.split(",")
        unknown = set(wanted) - {c.key for c in CONFIGS}
        if unknown:
            parser.error(f"unknown configs: {sorted(unknown)}")
        configs = [c for c in CONFIGS if c.key in wanted]

    stop_on_sigterm()
    with source_snapshot("asgi-echo-src-") as source_hash:
        run_all(args, configs, source_hash)


def run_all(args: argparse.Namespace, configs: list[Config], source_hash: str) -> None:
    if args.profile:
        RESULTS.mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="asgi-echo-prof-") as logdir:
            for config in configs:
                text = profile(config, args, Path(logdir))
                (RESULTS / f"profile-{config.key}.md").write_text(text)
                print(text)
        return

    report: dict = {
        **report_header(VERSIONS, source_hash),
        "params": {
            "reps": args.reps,
            "duration": args.duration,
            "warmup": args.warmup,
            "connections": args.connections,
            "message_bytes": 32,
        },
        "configs": [asdict(c) for c in configs],
        "runs": {c.key: [] for c in configs},
    }
    with tempfile.TemporaryDirectory(prefix="asgi-echo-logs-") as logdir:
        for rep in range(args.reps):
            for config in configs:
                result = run_once(config, args, Path(logdir))
                report["runs"][config.key].append(result)
                print(
                    f"rep {rep + 1}/{args.reps} {config.key:18} {fmt(result['msgs_per_s'], 0):>9} "
                    "msg/s  "
                    f"server {fmt(result['server_cpu_us_per_msg']):>6} µs/msg "
                    f"({result['server_cpu_util']:.0%})  client "
                    f"{fmt(result['client_cpu_us_per_msg']):>5} µs/msg "
                    f"({result['client_cpu_util']:.0%})  p50 {fmt(result['p50_us'] / 1000, 2)} ms",
                    file=sys.stderr,
                    flush=True,
                )
    report["loadavg_after"] = loadavg()
    report["medians"] = {key: median_of(runs) for key, runs in report["runs"].items()}
    med = report["medians"]
    report["ratios"] = [
        {
            "label": label,
            "numerator": a,
            "denominator": b,
            "cpu_ratio": med[a]["server_cpu_us_per_msg"] / med[b]["server_cpu_us_per_msg"],
            "throughput_ratio": med[a]["msgs_per_s"] / med[b]["msgs_per_s"],
        }
        for a, b, label in RATIOS
        if a in med and b in med
    ]
    markdown = render(report)
    write_results(args.out, report, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
