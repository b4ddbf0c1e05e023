"""experiments/gpu_check.py, the prepared CUDA check, rehearsed on the CPU with tiny settings."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path


def test_the_gpu_check_script_runs_to_the_end_on_the_cpu(tmp_path):
    """experiments/gpu_check.py with --device cpu --tiny writes its summary of every part."""
    script = Path(__file__).resolve().parent.parent / "experiments" / "gpu_check.py"
    out = tmp_path / "check.json"
    done = subprocess.run([sys.executable, str(script), "--device", "cpu", "--tiny", "--out",
                           str(out)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1",
                               "PYRO_RAZOR_CACHE_DIR": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads(out.read_text())
    assert record["tests"]["returncode"] == 0 and "passed" in record["tests"]["summary"]
    assert record["bench"][0]["seconds_per_step"] > 0
    assert set(record["table1"]["variants"]) == {"vanilla", "learned", "oracle"}
    assert all(math.isfinite(m["neg_elbo_per_n"]) for m in record["table1"]["variants"].values())
