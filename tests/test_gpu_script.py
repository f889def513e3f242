"""benchmarks/gpu.sh runs end to end on the CPU (tiny models, --smoke), so it is known to work before a
GPU run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu.sh"


def test_gpu_script_runs_every_step_on_the_cpu(tmp_path: Path) -> None:
    pytest.importorskip("open_clip")
    pytest.importorskip("ultralytics")
    env = {**os.environ, "PYTHON": sys.executable}
    args = [str(SCRIPT), "--device", "cpu", "--smoke", "--n", "12", "--work", str(tmp_path)]
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=170)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.strip()}
    for step in ("filter", "crop", "bin", "synth"):
        assert step in rows and rows[step][1] == "12", done.stdout  # every image went through every step
        assert float(rows[step][3]) > 0 and rows[step][4].endswith("%")
    assert "errors" not in done.stdout


def test_gpu_script_refuses_an_unknown_option() -> None:
    done = subprocess.run([str(SCRIPT), "--nope"], capture_output=True, text=True)
    assert done.returncode == 2 and "unknown option --nope" in done.stderr
