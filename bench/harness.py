"""What every benchmark in bench/ shares: processes, CPU and memory accounting, metadata.

- :class:`Server` starts one server on a free loopback port, pinned to one cpu
  (``taskset``), waits until it answers HTTP, and always stops it by its pid;
  :class:`Child` is a helper process that speaks JSON lines.
- ``process_tree_*`` read the CPU time and resident memory of a process and
  its descendants from ``/proc`` (the load generator imports them too, so it
  must stay stdlib-only).
- :func:`source_snapshot` copies ``src/django_websocket`` aside so that an edit
  of ``src/`` during a run cannot mix two versions in one table.
- :func:`report_header` collects versions, machine, load average and git state;
  :func:`write_results` writes ``results/<name>.md`` and ``.json``.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import platform
import queue
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PYTHON = BENCH / ".venv" / "bin" / "python"
RESULTS = BENCH / "results"
#: The measured server runs on this cpu, the load generator on the other.
SERVER_CPU = "0"
CLIENT_CPU = "1"
CLK_TCK = os.sysconf("SC_CLK_TCK")

#: The directory of the source snapshot, first on every child's PYTHONPATH (see source_snapshot).
SOURCE_PATH: list[str] = []


# ---- processes ----------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(cpu: str, argv: list[str]) -> list[str]:
    """``argv`` run under ``taskset -c cpu`` (which execs it: the pid stays the program's)."""
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", cpu, *argv]
    return argv


def child_env(settings: str | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a server or helper: the source snapshot and bench/ on PYTHONPATH."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([*SOURCE_PATH, str(BENCH)]),
        "PYTHONUNBUFFERED": "1",
    }
    if settings:
        env["DJANGO_SETTINGS_MODULE"] = settings
    env.update(extra or {})
    return env


def stop_process(process: subprocess.Popen | None, grace: float = 10) -> None:
    """SIGTERM, then SIGKILL of its own session (started with start_new_session), by pid."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


class Server:
    """One server process on a free port; a context manager that always stops it.

    ``argv`` may contain ``{port}`` and ``{python}``, replaced when it starts.
    Ready means: a plain ``GET ready_path`` got an HTTP status line back (any
    status), so the worker process, not only a listening master, is up and the
    application has served one request; with ``ready_path=None``, that the port
    accepts connections (no request, so nothing in the server's log).
    """

    def __init__(
        self,
        name: str,
        argv: Iterable[str],
        logdir: Path,
        *,
        env: dict[str, str] | None = None,
        cpu: str = SERVER_CPU,
        ready_path: str | None = "/",
        ready_timeout: float = 40,
        grace: float = 10,
    ) -> None:
        self.name = name
        self.port = free_port()
        self.argv = [
            arg.replace("{port}", str(self.port)).replace("{python}", str(PYTHON)) for arg in argv
        ]
        self.log_path = logdir / f"{name}-{self.port}.log"
        self.env = env if env is not None else child_env()
        self.cpu = cpu
        self.ready_path = ready_path
        self.ready_timeout = ready_timeout
        self.grace = grace
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                pinned(self.cpu, self.argv),
                cwd=BENCH,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        if self.ready_path is None:  # listening is enough
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name}: server exited: {self.log_tail()}")
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", self.port), 0.2),
                ):
                    return
                time.sleep(0.05)
            raise RuntimeError(f"{self.name}: not listening after {self.ready_timeout}s")
        request = f"GET {self.ready_path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name}: server exited: {self.log_tail()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.5) as sock,
            ):
                sock.settimeout(max(0.5, deadline - time.monotonic()))
                sock.sendall(request)
                if sock.recv(16).startswith(b"HTTP/1."):
                    return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name}: no HTTP answer after {self.ready_timeout}s")

    def log(self) -> str:
        """Everything the server printed so far."""
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    def log_tail(self, size: int = 2000) -> str:
        """The last ``size`` characters of the server's output."""
        return self.log()[-size:]

    @property
    def pid(self) -> int:
        """The server's pid (taskset execs the server, so it is the server's own)."""
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        """Stop the server by its pid (SIGTERM, SIGKILL after the grace period)."""
        stop_process(self.process, self.grace)

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Child:
    """A helper process speaking JSON lines on stdout, commands on stdin; always stopped."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self.lines: queue.Queue[dict | None] = queue.Queue()
        self.backlog: list[dict] = []
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                argv,
                cwd=BENCH,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                bufsize=1,
                start_new_session=True,
            )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                self.lines.put({"garbage": line[:200]})
        self.lines.put(None)

    @property
    def pid(self) -> int:
        """The helper's pid."""
        return self.process.pid

    def send(self, line: str) -> None:
        """Write one command line to the helper's stdin."""
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def wait_for(self, match: Callable[[dict], bool], timeout: float) -> dict:
        """The first message (backlog first) for which ``match(message)`` is true.

        Raises:
            TimeoutError: nothing matched within ``timeout`` seconds.
            RuntimeError: the helper exited first.
        """
        for index, message in enumerate(self.backlog):
            if match(message):
                return self.backlog.pop(index)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.name}: nothing matching after {timeout}s")
            try:
                message = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if message is None:
                self.lines.put(None)
                raise RuntimeError(f"{self.name} exited ({self.process.poll()}): {self.stderr()}")
            if match(message):
                return message
            self.backlog.append(message)

    def stderr(self) -> str:
        """The end of what the helper wrote on stderr."""
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-3000:]
        return ""

    def stop(self) -> None:
        """Close its stdin (its signal to finish), then stop it by pid if it does not."""
        with contextlib.suppress(OSError, ValueError):
            self.process.stdin.close()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            stop_process(self.process, grace=5)


def raise_nofile(wanted: int = 65536) -> tuple[int, int]:
    """Raise this process's open-file limit (inherited by every child) to ``wanted``.

    The hard limit too when allowed (root); otherwise the soft limit up to the hard one.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def stop_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C, so every running server is stopped on the way out."""
    signal.signal(signal.SIGTERM, _interrupt)


# ---- CPU and memory of a process tree (/proc) -------------------------------------------


def _stat_ticks(pid: int) -> int:
    """utime + stime + cutime + cstime of one process (all its threads, dead ones too)."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime..cstime are fields 14..17.
    return sum(int(value) for value in fields[11:15])


def descendants(pid: int) -> list[int]:
    """The pids of every live descendant of ``pid``."""
    found: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            tasks = list(Path(f"/proc/{current}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in children:
                found.append(int(child))
                todo.append(int(child))
    return found


def process_tree_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by ``pid`` and every descendant still alive (10 ms ticks)."""
    ticks = 0
    for member in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError):  # exited between listing and reading
            ticks += _stat_ticks(member)
    return ticks / CLK_TCK


def process_tree_sched_seconds(pid: int) -> float:
    """On-CPU seconds of the live threads of ``pid`` and its descendants (schedstat, ns).

    Finer than ``/proc/<pid>/stat`` ticks (10 ms), but blind to threads that
    exited: use it only where no thread ends during the window.
    """
    total_ns = 0
    for member in [pid, *descendants(pid)]:
        try:
            tasks = list(Path(f"/proc/{member}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            with contextlib.suppress(OSError, ValueError, IndexError):
                total_ns += int((task / "schedstat").read_text().split()[0])
    return total_ns / 1e9


def process_tree_memory(pid: int) -> tuple[float, int]:
    """Resident memory (MB, the sum of VmRSS) and thread count of ``pid`` and its descendants."""
    rss_kb = threads = 0
    for member in [pid, *descendants(pid)]:
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss_kb += int(line.split()[1])
                elif line.startswith("Threads:"):
                    threads += int(line.split()[1])
        except OSError:
            pass
    return rss_kb / 1024, threads


def process_tree_fds(pid: int) -> int:
    """Open file descriptors of ``pid`` and its descendants."""
    total = 0
    for member in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError):
            total += len(os.listdir(f"/proc/{member}/fd"))
    return total


# ---- statistics and formatting ------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float | None:
    """The value at ``fraction`` (0..1) of the sorted values, by nearest rank; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def median_or_none(values: Iterable[float | None]) -> float | None:
    """The median of the values that are not None, or None."""
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, or None when either is missing or ``b`` is zero."""
    return None if a is None or not b else a / b


def fmt(value: float | None, digits: int = 1) -> str:
    """A number with thousands separators, or an en dash for a missing one."""
    return "\u2013" if value is None else f"{value:,.{digits}f}"


# ---- source snapshot and metadata ---------------------------------------------------------


def snapshot_source(into: Path) -> str:
    """Copy src/django_websocket into ``into`` and return a hash of it."""
    target = into / "django_websocket"
    shutil.copytree(
        REPO / "src" / "django_websocket", target, ignore=shutil.ignore_patterns("__pycache__")
    )
    digest = hashlib.sha256()
    for path in sorted(target.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(into).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


@contextlib.contextmanager
def source_snapshot(prefix: str) -> Iterator[str]:
    """Snapshot src/ for the children (first on their PYTHONPATH); yield the snapshot's hash."""
    with tempfile.TemporaryDirectory(prefix=prefix) as snapdir:
        digest = snapshot_source(Path(snapdir))
        SOURCE_PATH[:] = [snapdir]
        try:
            yield digest
        finally:
            SOURCE_PATH.clear()


def versions(names: Iterable[str]) -> dict[str, str]:
    """The installed version of each distribution in ``names`` that is installed."""
    found = {}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def loadavg() -> list[str]:
    """The 1, 5 and 15 minute load averages."""
    with contextlib.suppress(OSError):
        return Path("/proc/loadavg").read_text().split()[:3]
    return []


def machine() -> dict[str, Any]:
    """Python, kernel, cpus, cpu model and load average of this machine."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    info["loadavg"] = loadavg()
    return info


def git_state() -> dict[str, Any]:
    """HEAD and whether src/ has uncommitted changes (with a hash of the diff)."""

    def git(*argv: str) -> str:
        done = subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip()

    diff = git("diff", "HEAD", "--", "src")
    return {
        "head": git("rev-parse", "--short", "HEAD"),
        "src_dirty": bool(git("status", "--short", "src")),
        "src_diff_sha256": hashlib.sha256(diff.encode()).hexdigest()[:12],
    }


def report_header(version_names: Iterable[str], source_hash: str) -> dict[str, Any]:
    """The metadata every results file starts with: date, machine, versions, git state."""
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "versions": versions(version_names),
        "git": {**git_state(), "source_snapshot_sha256": source_hash},
    }


def footer_lines(report: dict[str, Any], reproduce: str) -> list[str]:
    """The closing lines of a results file: versions, machine and load, source, how to rerun."""
    m = report["machine"]
    git = report["git"]
    dirty = " + uncommitted src/ changes" if git["src_dirty"] else ""
    return [
        "",
        "Versions: " + ", ".join(f"{n} {v}" for n, v in report["versions"].items()) + ".",
        f"Machine: {m.get('cpu_model', '?')}, {m['cpus']} CPUs, Python {m['python']}, "
        f"load average before {' '.join(m.get('loadavg', []))}, "
        f"after {' '.join(report.get('loadavg_after', []))}.",
        f"Source: git {git['head']}{dirty} (snapshot of src/django_websocket taken at start, "
        f"sha256 {git['source_snapshot_sha256']}).",
        "",
        f"Reproduce: `{reproduce}` (setup in bench/README.md).",
    ]


def write_results(name: str, report: dict[str, Any], markdown: str) -> None:
    """Write results/<name>.json and results/<name>.md."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown)


def uvicorn_argv(app: str, ws: str = "websockets-sansio", deflate: bool = False) -> list[str]:
    """uvicorn serving ``app`` the way every bench runs it: one process, uvloop, httptools."""
    return [
        "{python}", "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", "{port}",
        "--loop", "uvloop", "--http", "httptools", "--ws", ws,
        "--ws-per-message-deflate", "true" if deflate else "false",
        "--lifespan", "off", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
