"""Shared plumbing of the benchmarks: processes, readiness, CPU accounting, stats, results."""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
from rich.console import Console
from rich.table import Table

from lipwa.simulator.testing import free_port

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
RESULTS = BENCH / "results"
PYTHON = sys.executable
# Wide enough for the tables when the output is a file or a pipe.
console = Console(width=None if sys.stdout.isatty() else 160)

__all__ = ["RESULTS", "Column", "CpuSampler", "Proc", "free_port", "percentiles"]


# ----- processes ------------------------------------------------------------------------------
_LIVE: set[Proc] = set()


def _kill_leftovers() -> None:
    for proc in list(_LIVE):
        proc.stop(grace_s=2.0)


atexit.register(_kill_leftovers)


def install_signal_handlers() -> None:
    """Turn SIGTERM/SIGHUP into SystemExit so every ``finally`` (and so every stop) runs."""

    def _exit(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError):  # not the main thread: leave it alone
            signal.signal(sig, _exit)


def bench_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process: ours, with the repository importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class Proc:
    """A child process in its own session (so its workers die with it), output to a log file."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
    ) -> None:
        self.name = name
        self.args = list(args)
        log_dir = log_dir or RESULTS / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            self.args,
            cwd=REPO,
            env=bench_env(env),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,
        )
        _LIVE.add(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            self._log.flush()
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def communicate(self, timeout_s: float) -> None:
        """Wait for the process to finish (stop it if it overruns)."""
        try:
            self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.stop()
            raise RuntimeError(f"{self.name} did not finish in {timeout_s:.0f} s") from None
        finally:
            _LIVE.discard(self)
            self._log.close()

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM the whole process group, SIGKILL it if it lingers."""
        _LIVE.discard(self)
        try:
            if self.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGTERM)
                try:
                    self.popen.wait(timeout=grace_s)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.pid, signal.SIGKILL)
                    self.popen.wait(timeout=5)
            # Workers of a master that died first may still hold the group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        finally:
            with contextlib.suppress(OSError):
                self._log.close()


@contextlib.contextmanager
def running(proc: Proc) -> Iterator[Proc]:
    try:
        yield proc
    finally:
        proc.stop()


def wait_ready(url: str, proc: Proc, timeout_s: float = 30.0) -> None:
    """Poll ``url`` until it answers below 500; fail early (with its log) if ``proc`` dies."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited early:\n{proc.log_tail()}")
        try:
            response = httpx.get(url, timeout=2.0)
            if response.status_code < 500:
                return
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} not ready at {url} ({last}):\n{proc.log_tail()}")


def uvicorn_args(target: str, port: int, *, workers: int = 1, factory: bool = True) -> list[str]:
    """``python -m uvicorn`` with the fast loop and parser when they are installed."""
    args = [PYTHON, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port)]
    if factory:
        args.append("--factory")
    args += ["--workers", str(workers), "--log-level", "warning", "--no-access-log"]
    if _importable("uvloop"):
        args += ["--loop", "uvloop"]
    if _importable("httptools"):
        args += ["--http", "httptools"]
    return args


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


# ----- CPU accounting -------------------------------------------------------------------------
_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_table() -> dict[int, tuple[int, str, float]]:
    """pid -> (parent pid, command name, CPU seconds used) for every visible process."""
    table: dict[int, tuple[int, str, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                raw = fh.read().decode(errors="replace")
        except OSError:
            continue
        # "pid (comm) state ppid ... utime stime": comm may hold spaces and parentheses.
        left, right = raw.find("("), raw.rfind(")")
        fields = raw[right + 2 :].split()
        try:
            table[int(entry.name)] = (
                int(fields[1]),
                raw[left + 1 : right],
                (int(fields[11]) + int(fields[12])) / _TICKS,
            )
        except (IndexError, ValueError):
            continue
    return table


def _tree(table: Mapping[int, tuple[int, str, float]], root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.add(pid)
        todo.extend(children.get(pid, ()))
    return found


@dataclass
class CpuSampler:
    """Samples CPU seconds of process groups in a thread; ``usage`` reads a time window.

    Groups are process trees (a uvicorn master and its workers) or, for ``"postgres"``,
    every process named postgres on the machine (other users' included: a caveat).
    CPU seconds of exited processes are lost, so only read windows where the groups lived.
    """

    roots: dict[str, int] = field(default_factory=dict)
    include_postgres: bool = False
    interval_s: float = 0.25
    samples: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def add(self, name: str, pid: int) -> None:
        self.roots[name] = pid

    def sample(self) -> None:
        table = _proc_table()
        values: dict[str, float] = {}
        previous = self.samples[-1][1] if self.samples else {}
        for name, root in list(self.roots.items()):
            if root in table:
                values[name] = sum(table[p][2] for p in _tree(table, root) if p in table)
            elif name in previous:  # exited: its last reading stands
                values[name] = previous[name]
        if self.include_postgres:
            values["postgres"] = sum(cpu for _, comm, cpu in table.values() if comm == "postgres")
        self.samples.append((time.time(), values))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> CpuSampler:
        self.sample()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.sample()

    def usage(self, start: float, end: float) -> dict[str, float]:
        """Percent of one core each group used between two wall-clock times."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2:
            return {}
        (t0, first), (t1, last) = inside[0], inside[-1]
        span = t1 - t0
        if span <= 0:
            return {}
        return {
            name: round(100 * max(last[name] - first.get(name, 0.0), 0.0) / span, 1)
            for name in last
            if name in first
        }


# ----- statistics -----------------------------------------------------------------------------
def percentile(ordered: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (0 when empty)."""
    if not ordered:
        return 0.0
    rank = max(math.ceil(pct / 100 * len(ordered)), 1)
    return float(ordered[min(rank, len(ordered)) - 1])


def percentiles(values: Iterable[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0}
    return {
        "p50": round(percentile(ordered, 50), 2),
        "p90": round(percentile(ordered, 90), 2),
        "p99": round(percentile(ordered, 99), 2),
        "max": round(ordered[-1], 2),
        "mean": round(sum(ordered) / len(ordered), 2),
    }


# ----- results --------------------------------------------------------------------------------
Column = tuple[str, str]  # (row key, header)


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, Mapping):
        return " ".join(f"{k}:{_cell(v)}" for k, v in value.items()) or "–"
    return str(value)


def render(title: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> None:
    table = Table(title=title, title_justify="left")
    for key, header in columns:
        numeric = any(isinstance(r.get(key), int | float) for r in rows)
        table.add_column(header, justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*(_cell(row.get(key)) for key, _ in columns))
    console.print(table)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> str:
    lines = [
        "| " + " | ".join(h for _, h in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    lines += ["| " + " | ".join(_cell(r.get(k)) for k, _ in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def machine_info() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            out = subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=5, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return out.stdout.strip()

    return {
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def write_results(
    name: str,
    title: str,
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[Column],
    meta: Mapping[str, Any],
    out_dir: Path | None = None,
) -> Path:
    """``<name>.json`` (everything) and ``<name>.md`` (the table) in the results folder."""
    out_dir = out_dir or RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    payload = {"benchmark": name, "title": title, "machine": machine_info(), **meta, "rows": rows}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    md = f"### {title}\n\n{markdown_table(rows, columns)}"
    (out_dir / f"{name}.md").write_text(md)
    return path


def run_loadgen(
    spec: Mapping[str, Any], *, name: str, log_dir: Path, timeout_s: float = 600.0,
    on_start: Callable[[Proc], None] | None = None,
) -> dict[str, Any]:
    """Run ``bench.loadgen`` in its own process and return its result."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out = log_dir / f"{name}.result.json"
    out.unlink(missing_ok=True)
    proc = Proc(
        name,
        [PYTHON, "-m", "bench.loadgen", json.dumps(dict(spec)), str(out)],
        log_dir=log_dir,
    )
    if on_start is not None:
        on_start(proc)
    proc.communicate(timeout_s)
    if proc.popen.returncode != 0 or not out.exists():
        raise RuntimeError(f"{name} failed (exit {proc.popen.returncode}):\n{proc.log_tail()}")
    result: dict[str, Any] = json.loads(out.read_text())
    out.unlink()
    return result


# ----- the simulator, shared by both benchmarks -----------------------------------------------
@dataclass
class SimulatorProcess:
    proc: Proc
    url: str
    credentials: dict[str, Any]


SIMULATOR_FACTORY = "lipwa.simulator.app:create_app_from_env"


def start_simulator(
    prompt_seconds: float,
    *,
    name: str = "simulator",
    log_dir: Path | None = None,
    factory: str = SIMULATOR_FACTORY,
) -> SimulatorProcess:
    """The simulator in its own uvicorn process; MoMo callbacks allowed to 127.0.0.1."""
    port = free_port()
    proc = Proc(
        name,
        uvicorn_args(factory, port),
        env={"LIPWA_SIM_SEED": "1"},
        log_dir=log_dir,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{url}/_sim/credentials", proc)
        httpx.put(
            f"{url}/_sim/settings",
            json={"prompt_seconds": prompt_seconds, "momo_callback_host": "127.0.0.1"},
        ).raise_for_status()
        credentials = httpx.get(f"{url}/_sim/credentials").raise_for_status().json()
    except BaseException:
        proc.stop()
        raise
    return SimulatorProcess(proc, url, credentials)
