"""experiments/sweeps: the sweep driver, the ELBO-path probe and the per-quantity evidence, on
a tiny 3-body run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from experiment_scripts import load_experiment

SWEEPS = Path(__file__).resolve().parent.parent / "experiments" / "sweeps"
CONFIG = SWEEPS.parent / "table3_nbody_quick.toml"
TINY = ["train.eta_warmup_epochs=1", "train.epochs=4", "data.n_train=6", "data.n_test=4",
        "evaluation.num_samples=2", "evaluation.tau_samples=8", "evaluation.rollout_trajectories=2",
        "evaluation.rollout_points=11"]


def _module(name: str):
    return load_experiment(f"sweeps/{name}.py")


def _run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYRO_RAZOR_CACHE_DIR": str(cwd / "cache")}
    return subprocess.run([sys.executable, str(SWEEPS / script), *args], capture_output=True,
                          text=True, cwd=cwd, env=env)


def test_aligned_target_is_the_procrustes_rotation_of_the_padded_target():
    """If the learned generators are an orthogonal mix of the padded target, the aligned target
    is them exactly; the result always has the padded target's Gram spectrum (same measure)."""
    elbo_path = _module("elbo_path")
    g = torch.Generator().manual_seed(0)
    target = torch.randn(3, 5, 5, generator=g, dtype=torch.float64)
    padded = torch.cat([target, torch.zeros(4, 5, 5, dtype=torch.float64)])
    Q, _ = torch.linalg.qr(torch.randn(7, 7, generator=g, dtype=torch.float64))
    mixed = (Q @ padded.reshape(7, -1)).reshape(7, 5, 5)
    assert torch.allclose(elbo_path.aligned_target(mixed, target), mixed, atol=1e-12)
    other = torch.randn(7, 5, 5, generator=g, dtype=torch.float64)
    aligned = elbo_path.aligned_target(other, target).reshape(7, -1)
    gram = torch.linalg.eigvalsh(aligned @ aligned.T)
    expected = torch.linalg.eigvalsh(padded.reshape(7, -1) @ padded.reshape(7, -1).T)
    assert torch.allclose(gram, expected, atol=1e-10)
    with pytest.raises(ValueError, match="only K = 2"):
        elbo_path.aligned_target(other[:2], target)


def test_sweep_parse_value_reads_toml_values_and_keeps_bare_words():
    sweep = _module("sweep")
    assert sweep.parse_value("3") == 3 and sweep.parse_value("0.5") == 0.5
    assert sweep.parse_value("[64, 64]") == [64, 64] and sweep.parse_value("ball") == "ball"


def test_sweep_then_elbo_path_on_a_tiny_run(tmp_path):
    """The sweep writes one line per setting; the path's frozen alpha = 0 point is the run
    itself, so it reproduces the run's own -ELBO/N (same seed, same generators)."""
    out = tmp_path / "sweep.jsonl"
    done = _run("sweep.py", str(CONFIG), str(out), "--set", *TINY, "--variants", "learned",
                "--runs", str(tmp_path / "runs"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    learned = record["variants"]["learned"]
    assert record["overrides"]["train.epochs"] == "4" and learned["n_significant"] >= 0
    path = tmp_path / "path.jsonl"
    done = _run("elbo_path.py", record["run"], str(path), "--alphas", "0", "1",
                "--refit-epochs", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    start, end = [json.loads(line) for line in path.read_text().splitlines()]
    assert (start["alpha"], end["alpha"]) == (0.0, 1.0) and len(end["refit_curve"]) == 2
    assert start["frozen"]["neg_elbo_per_n"] == pytest.approx(learned["neg_elbo_per_n"],
                                                              rel=1e-5)
    assert start["frozen"]["test_mse"] == pytest.approx(learned["test_mse"], rel=1e-5)
    assert torch.isfinite(torch.tensor(end["refit"]["neg_elbo_per_n"]))
    # the per-quantity evidence on the same run: without refits the noise figure is 0 and every
    # tested quantity gets a finite ELBO change and one of the three decisions
    evidence = tmp_path / "evidence.json"
    done = _run("quantity_evidence.py", record["run"], str(evidence), "--refit-epochs", "0",
                cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(evidence.read_text())
    assert found["noise_nats"] == 0.0 and found["refit_epochs"] == 0 and found["quantities"]
    for q in found["quantities"]:
        assert math.isfinite(q["delta_nats"]) and 0.0 <= q["in_span"] <= 1.0 + 1e-9
        assert q["decision"] in ("supports", "indifferent", "against")
