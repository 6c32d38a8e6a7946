"""The README's first command: `lipwa demo` shows a payment going through end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lipwa.simulator.testing import free_port


def test_demo_takes_a_payment_end_to_end(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable, "-m", "lipwa.cli", "demo",
            "--port", str(free_port()),
            "--simulator-port", str(free_port()),
            "--data-dir", str(tmp_path / "demo"),
            "--exit-after-payment",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lipwa is running" in result.stdout
    assert "succeeded" in result.stdout
    assert "curl -s" in result.stdout
    # Demo secrets stay in the data dir, readable by the owner only.
    env_file = tmp_path / "demo" / "demo.env"
    assert env_file.stat().st_mode & 0o077 == 0
