"""Child processes of the chaos test: each in its own session, output to a log file.

Every process started here is registered; ``stop_all`` (called from the test's ``finally``
and at interpreter exit) terminates them (SIGTERM to the group, SIGKILL if they linger).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import httpx

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable

_LIVE: list[Proc] = []


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """Our environment without LIPWA_* (the children get exactly what the scenario sets)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIPWA_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Proc:
    """One child process (and its children: it leads its own process group)."""

    def __init__(
        self, name: str, args: Sequence[str], *, env: Mapping[str, str], log_dir: Path
    ) -> None:
        self.name = name
        self.args = list(args)
        self.env = dict(env)
        self.log_path = log_dir / f"{name}.log"
        self._log: IO[bytes] = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            self.args,
            cwd=REPO,
            env=child_env(self.env),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,
        )
        _LIVE.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            self._log.flush()
            text = self.log_path.read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""

    def kill(self) -> None:
        """SIGKILL, no warning: the process gets no chance to finish anything."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)

    def stop(self, grace_s: float = 8.0) -> None:
        """SIGTERM the group, SIGKILL it if it lingers; always reap."""
        try:
            if self.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGTERM)
                try:
                    self.popen.wait(timeout=grace_s)
                except subprocess.TimeoutExpired:
                    self.kill()
            # Children of a leader that exited first may still hold the group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        finally:
            with contextlib.suppress(ValueError):
                _LIVE.remove(self)
            with contextlib.suppress(OSError):
                self._log.close()


def stop_all() -> None:
    for proc in list(_LIVE):
        proc.stop(grace_s=3.0)


atexit.register(stop_all)


def wait_http(url: str, proc: Proc, timeout_s: float = 60.0, ok: int = 300) -> None:
    """Poll ``url`` until it answers below ``ok``; fail early (with its log) if ``proc`` dies."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited early:\n{proc.log_tail()}")
        try:
            response = httpx.get(url, timeout=3.0)
            if response.status_code < ok:
                return
            last = f"HTTP {response.status_code}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.2)
    raise RuntimeError(f"{proc.name} not ready at {url} ({last}):\n{proc.log_tail()}")


def _importable(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def uvicorn_args(target: str, port: int) -> list[str]:
    """``python -m uvicorn <factory>`` on loopback, with the fast loop and parser if present."""
    args = [PYTHON, "-m", "uvicorn", target, "--factory", "--host", "127.0.0.1"]
    args += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    if _importable("uvloop"):
        args += ["--loop", "uvloop"]
    if _importable("httptools"):
        args += ["--http", "httptools"]
    return args


def lipwa_args(*command: str) -> list[str]:
    return [PYTHON, "-m", "lipwa.cli", *command]
