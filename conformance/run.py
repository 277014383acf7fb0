"""Run the Autobahn|Testsuite against our echo views on each server we cover.

    .venv/bin/python conformance/run.py --subset          # CI: a documented subset
    .venv/bin/python conformance/run.py --full            # all 517 cases (make conformance)
    .venv/bin/python conformance/run.py --full --servers runserver,uvicorn-async

Each server is started with tests/conftest.py's ``start_server`` on a free 127.0.0.1
port, the Autobahn runner (conformance/run.sh, Python 2.7 ``wstest``) is run against
its echo view, and the server is stopped by its pid. The table printed at the end is
written to conformance/results/<mode>.md and .json (entries of servers not run this
time are kept, so the servers can be run one at a time). Autobahn's HTML reports go
to conformance/reports/<mode>/<server>/ (not tracked).

Exit status: 0 when every counted case of every server passed (OK, NON-STRICT or
INFORMATIONAL), 1 when a case failed, 3 when a run produced no report.
See docs/conformance.md for the subset, the limits raised and the exclusions.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import start_server  # noqa: E402

#: Autobahn's 9.* cases send messages of up to 16 MiB.
MAX_MESSAGE = 16 * 2**20
#: ... in up to 65,537 frames (9.3.1 and 9.4.1, "4 MiB in fragments of 64": one data
#: frame and 65,536 continuation frames by Autobahn's own frame count); websockets caps a
#: message at 4096 frames unless WEBSOCKETS_MAX_FRAGMENTS says otherwise (65536 is one
#: short: both cases fail with 1009 "too many fragments").
MAX_FRAGMENTS = 2**17
LIMITS_ENV = {
    "DJWS_MAX_MESSAGE_SIZE": str(MAX_MESSAGE),  # tests/settings.py: WEBSOCKET_MAX_MESSAGE_SIZE
    "WEBSOCKETS_MAX_FRAGMENTS": str(MAX_FRAGMENTS),  # read by websockets at import
}

#: Deliberate choices of the protocol engine that Autobahn counts as failures. Each is
#: excluded by its exact id, only on the servers where that engine answers, and listed
#: in docs/conformance.md; anything else that fails, fails the run.
WEBSOCKETS_EXCLUSIONS = {
    # A close frame in the middle of a fragmented message: Autobahn expects the
    # close handshake (1000); websockets fails the connection with 1002 by design,
    # as the message in progress can never be completed.
    "7.1.5": "websockets answers a close frame inside a fragmented message with 1002",
}

#: The subset for CI: every case of 1.* to 10.* (all fast, 9.* included: under 6 s in
#: all) and a sample of the compression cases 12.* and 13.*, which are 500 s of the
#: 520 s of a full run. Measured at 20-25 s a server (docs/conformance.md).
#: Autobahn reads a pattern with "*" as a regex anchored at the start ("12.1.1*" would
#: also select 12.1.10-12.1.18), so single cases are listed by id.
SUBSET = [
    "1.*",  # framing: text and binary of every length encoding (16 cases)
    "2.*",  # pings and pongs (11)
    "3.*",  # reserved bits (7)
    "4.*",  # reserved and unknown opcodes (10)
    "5.*",  # fragmentation and control frames between fragments (20)
    "6.*",  # UTF-8 validation, incl. fail-fast on invalid sequences (145)
    "7.*",  # closing handshake, close codes and reasons (37, 36 run)
    "9.*",  # limits: messages up to 16 MiB, up to 65,537 frames, chopped writes (54)
    "10.*",  # auto-fragmentation (1)
    # permessage-deflate (counted where the server accepts it): small text messages
    # with the client's default offer, then each parameter combination of 13.*.
    *(f"12.1.{n}" for n in range(1, 9)),
    *(f"13.{n}.1" for n in range(1, 8)),
]
FULL = ["*"]


@dataclass(frozen=True)
class Target:
    """One server and view under test."""

    label: str
    kind: str  # a key of tests/conftest.py SERVER_COMMANDS
    view: str  # "sync" or "async"
    path: str
    extra_args: tuple[str, ...] = ()
    exclusions: dict[str, str] = field(default_factory=lambda: dict(WEBSOCKETS_EXCLUSIONS))


# uvicorn's own cap applies before ours; its default (16 MiB) is restated so that it
# stays in step with MAX_MESSAGE. uvicorn's default implementation is websockets'
# sans-I/O one with permessage-deflate on, so the same exclusion applies there.
UVICORN_ARGS = ("--ws-max-size", str(MAX_MESSAGE))
TARGETS = [
    Target("runserver", "runserver", "sync", "/echo/"),
    Target("gunicorn-gthread", "gunicorn-gthread", "sync", "/echo/"),
    Target("uvicorn-sync", "uvicorn", "sync", "/echo/", UVICORN_ARGS),
    Target("uvicorn-async", "uvicorn", "async", "/async/echo/", UVICORN_ARGS),
]
BY_LABEL = {target.label: target for target in TARGETS}


def behaviours(report_dir: Path) -> dict[str, dict]:
    """The per-case results of Autobahn's index.json (one agent per report)."""
    index_path = report_dir / "index.json"
    if not index_path.exists():
        return {}
    index = json.loads(index_path.read_text())
    return next(iter(index.values()), {}) if index else {}


def run_target(target: Target, mode: str, cases: list[str], wstest_timeout: int) -> dict:
    """Start the target's server, run Autobahn against it, stop it; return the result."""
    out_dir = HERE / "reports" / mode / target.label
    out_dir.mkdir(parents=True, exist_ok=True)
    server = start_server(target.kind, extra_env=LIMITS_ENV, extra_args=target.extra_args)
    url = f"{server.url}{target.path}"
    command = [str(HERE / "run.sh"), "--agent", target.label, "--timeout", str(wstest_timeout)]
    if target.exclusions:
        command += ["--exclude", ",".join(target.exclusions)]
    command += [url, ",".join(cases), str(out_dir)]
    print(f"== {target.label} ({target.view} view) at {url}", flush=True)
    started = time.monotonic()
    try:
        completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    finally:
        duration = time.monotonic() - started
        server.stop()
    (out_dir / "server.log").write_text(server.log())
    sys.stdout.write(completed.stdout)
    if completed.returncode not in (0, 1):
        sys.stdout.write(completed.stderr)
    lines = completed.stdout.strip().splitlines()
    results = behaviours(out_dir)
    counts: dict[str, int] = {}
    for case in results.values():
        counts[case["behavior"]] = counts.get(case["behavior"], 0) + 1
    failed_ids = [line.split()[0] for line in _failed_block(lines)]
    return {
        "server": target.label,
        "kind": target.kind,
        "view": target.view,
        "path": target.path,
        "cases": len(results),
        "summary": lines[-1] if lines else "",
        "passed": sum(counts.get(name, 0) for name in ("OK", "NON-STRICT", "INFORMATIONAL")),
        "failed": len(failed_ids),
        "failed_ids": failed_ids,
        "behaviours": counts,
        "non_strict": counts.get("NON-STRICT", 0),
        "informational": counts.get("INFORMATIONAL", 0),
        "unimplemented": counts.get("UNIMPLEMENTED", 0),
        "skipped": _skipped(lines[-1] if lines else ""),
        "excluded": sorted(target.exclusions),
        "duration_s": round(duration, 1),
        "exit": completed.returncode,
    }


def _skipped(summary: str) -> int:
    """N of summarize.py's last line "N passed, N failed, N skipped" (0 if absent)."""
    for part in summary.split(","):
        words = part.split()
        if len(words) == 2 and words[1] == "skipped" and words[0].isdigit():
            return int(words[0])
    return 0


def _failed_block(lines: list[str]) -> list[str]:
    """The lines summarize.py prints under "Failed cases (N):"."""
    block: list[str] = []
    inside = False
    for line in lines:
        if line.startswith("Failed cases ("):
            inside = True
        elif inside and line.startswith("  ") and not line.startswith("  ..."):
            block.append(line.strip())
        else:
            inside = False
    return block


def table(rows: list[dict]) -> str:
    """The results as a Markdown table."""
    head = (
        "| server | view | cases | passed | failed | non-strict | informational "
        "| skipped (no deflate) | excluded | duration |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|\n"
    )
    body = "".join(
        f"| {r['server']} | {r['view']} | {r['cases']} | {r['passed']} | {r['failed']} "
        f"| {r['non_strict']} | {r['informational']} "
        f"| {r['skipped']} "
        f"| {', '.join(r['excluded']) or '-'} | {r['duration_s']:.0f} s |\n"
        for r in rows
    )
    return head + body


def write_results(mode: str, cases: list[str], rows: list[dict]) -> None:
    """Merge ``rows`` into conformance/results/<mode>.json and rewrite <mode>.md."""
    results_dir = HERE / "results"
    results_dir.mkdir(exist_ok=True)
    json_path = results_dir / f"{mode}.json"
    previous = json.loads(json_path.read_text()) if json_path.exists() else {}
    kept = previous.get("servers", []) if previous.get("cases") == cases else []
    merged = {r["server"]: r for r in kept}
    merged.update({r["server"]: r for r in rows})
    ordered = [merged[t.label] for t in TARGETS if t.label in merged]
    data = {
        "mode": mode,
        "cases": cases,
        "limits": LIMITS_ENV,
        "autobahntestsuite": "25.10.1",
        "servers": ordered,
    }
    json_path.write_text(json.dumps(data, indent=2) + "\n")
    failures = "".join(
        f"- {r['server']}: {', '.join(r['failed_ids']) or r['summary']}\n"
        for r in ordered
        if r["exit"] != 0
    )
    (results_dir / f"{mode}.md").write_text(
        f"# Autobahn|Testsuite results: {mode}\n\n"
        f"Written by `conformance/run.py --{mode}` (autobahntestsuite 25.10.1); "
        "see docs/conformance.md.\n\n"
        f"Cases: `{','.join(cases)}`\n\n"
        f"Limits: `WEBSOCKET_MAX_MESSAGE_SIZE={MAX_MESSAGE}`, "
        f"`WEBSOCKETS_MAX_FRAGMENTS={MAX_FRAGMENTS}`, uvicorn `--ws-max-size {MAX_MESSAGE}`.\n\n"
        + table(ordered)
        + ("\nFailed cases:\n\n" + failures if failures else "\nEvery counted case passed.\n")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--subset", action="store_true", help="the CI subset (docs/conformance.md)")
    mode.add_argument("--full", action="store_true", help="all 517 cases")
    parser.add_argument(
        "--servers",
        default=",".join(BY_LABEL),
        help=f"comma-separated, among {', '.join(BY_LABEL)} (default: all)",
    )
    parser.add_argument("--timeout", type=int, help="limit of one wstest run, seconds")
    args = parser.parse_args(argv)
    mode_name = "full" if args.full else "subset"
    cases = FULL if args.full else SUBSET
    wstest_timeout = args.timeout or (3600 if args.full else 600)
    labels = [label.strip() for label in args.servers.split(",") if label.strip()]
    unknown = [label for label in labels if label not in BY_LABEL]
    if unknown:
        parser.error(f"unknown server(s) {', '.join(unknown)}; choose among {', '.join(BY_LABEL)}")
    # Install wstest once, before any server starts (the first time takes a minute).
    subprocess.run([str(HERE / "run.sh"), "--setup-only"], check=True, stdout=subprocess.DEVNULL)
    rows = [run_target(BY_LABEL[label], mode_name, cases, wstest_timeout) for label in labels]
    write_results(mode_name, cases, rows)
    print()
    print(table(rows), end="")
    print(f"(written to {HERE.relative_to(ROOT)}/results/{mode_name}.md and .json)")
    if any(r["exit"] not in (0, 1) for r in rows):
        return 3
    return 1 if any(r["exit"] != 0 for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
