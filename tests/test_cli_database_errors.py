"""The ``lipwa`` command when the database cannot be reached: one clear line, exit code 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("command", [["migrate"], ["recover"], ["keys", "status"]])
def test_an_unreachable_database_is_one_line_not_a_traceback(
    tmp_path: Path, command: list[str]
) -> None:
    from lipwa.vault import generate_key_text

    env = {
        **os.environ,
        "LIPWA_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'lipwa.db'}",
        "LIPWA_ENCRYPTION_KEYS": generate_key_text("v1"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "lipwa.cli", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert done.stdout.startswith("Cannot reach the database (LIPWA_DATABASE_URL):"), output
    # No rich traceback of our own. (aiosqlite's connection thread may still print one of
    # its own at interpreter exit, racing the closed event loop: not ours to silence.)
    assert "╭" not in output and "lipwa/cli" not in output
