"""One prepared check of the CUDA path, meant to finish in under 8 minutes on one GPU.

    python experiments/gpu_check.py --device cuda --out gpu_check.json
    python experiments/gpu_check.py --device cpu --tiny --out check.json   # the CPU rehearsal

1. the test suite's device tests on the device (``pytest -m device --device <device>``);
2. ``pyro-razor bench`` of the four reference cases on the device (``--tiny``: a tiny config);
3. the paper-scale Table 1 config shortened to ``--epochs`` epochs (default 200; ``--tiny``:
   the quick config for 2 epochs with small evaluation settings);

and writes one JSON file of what it measured: the device, torch and CUDA versions, the tests'
outcome, seconds per step and memory per bench case, the shortened run's table figures and
wall time of every part.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from pyro_razor.configio import replace_path
from pyro_razor.runs import load_experiment, run_experiment
from pyro_razor.runs.benchmark import BenchCase, bench_case, reference_cases

EXPERIMENTS = Path(__file__).resolve().parent
REPO = EXPERIMENTS.parent


def device_tests(device: str) -> dict:
    """``pytest -m device --device <device>``: return code and the summary line."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "device",
         "--device", device, str(REPO / "tests" / "test_device.py")],
        capture_output=True, text=True, cwd=REPO,
    )
    lines = [line for line in done.stdout.strip().splitlines() if line.strip()]
    return {"returncode": done.returncode, "summary": lines[-1] if lines else done.stderr[-500:],
            "seconds": time.perf_counter() - start}


def _tiny(config):
    for key, value in (("model.hidden", (16,)), ("model.tau_samples", 2),
                       ("model.integrator_steps", 2), ("train.epochs", 2),
                       ("evaluation.num_samples", 2), ("evaluation.tau_samples", 4),
                       ("evaluation.rollout_points", 8), ("evaluation.rollout_trajectories", 1),
                       ("evaluation.grid", 5)):
        config = replace_path(config, key, value)
    return config


def benchmark(device: str, tiny: bool) -> list[dict]:
    """Seconds per step and memory of the reference cases (or one tiny case)."""
    if tiny:
        config = _tiny(load_experiment(EXPERIMENTS / "table1_sho_quick.toml"))
        cases = [BenchCase("tiny_sho_learned", config, "learned")]
    else:
        cases = reference_cases()
    out = []
    for case in cases:
        start = time.perf_counter()
        r = bench_case(case, steps=2 if tiny else 3, warmup=1, device=device)
        out.append({"case": r.name, "variant": r.variant, "device": r.device,
                    "seconds_per_step": r.seconds_per_step, "min_seconds": r.min_seconds,
                    "peak_memory_mb": r.peak_memory_mb, "wall_s": time.perf_counter() - start})
    return out


def shortened_run(device: str, tiny: bool, epochs: int, out_dir: Path) -> dict:
    """The Table 1 config (``--tiny``: its quick twin, tiny) for ``epochs`` epochs."""
    name = "table1_sho_quick.toml" if tiny else "table1_sho.toml"
    config = load_experiment(EXPERIMENTS / name)
    config = _tiny(config) if tiny else replace_path(config, "train.epochs", epochs)
    start = time.perf_counter()
    summary = run_experiment(config, out_dir, device=device, progress=False, overwrite=True,
                             figures=not tiny)
    keep = ("train_mse", "nll_per_n", "kl_per_n", "neg_elbo_per_n", "test_mse",
            "seconds_per_step", "wall_time_s", "parallelness", "n_significant")
    return {"config": name, "epochs": config.train.epochs,
            "wall_s": time.perf_counter() - start,
            "variants": {v: {k: m[k] for k in keep if k in m}
                         for v, m in summary["variants"].items()}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", default="gpu_check.json")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--tiny", action="store_true", help="CPU rehearsal with tiny settings")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    record = {
        "device": args.device, "torch": torch.__version__, "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(), "tiny": args.tiny,
    }
    record["tests"] = device_tests(args.device)
    record["bench"] = benchmark(args.device, args.tiny)
    with tempfile.TemporaryDirectory() as tmp:
        record["table1"] = shortened_run(args.device, args.tiny, args.epochs, Path(tmp) / "run")
    record["wall_s"] = time.perf_counter() - started
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(record, indent=2))
    return 0 if record["tests"]["returncode"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
