"""Run one experiment config under a list of overrides and append one JSON line per setting.

    python experiments/sweeps/sweep.py CONFIG OUT.jsonl \
        --set train.epochs=600 model.num_quantities=8 \
        [--set ...] [--seeds 0 1 2] [--variants vanilla learned]

Each ``--set`` group is one setting (dotted config keys, values parsed as TOML); every setting runs
for every seed (``--seed`` of ``pyro-razor run``: training seed and eta initialisation). A line
holds the overrides, the seed, the wall time and, per variant, the summary figures of the run
(``-ELBO/N``, NLL/N, KL/N, test MSEs, and for the learned variant the significant directions,
their parallelness, displacements and conservation ratios, and the chance level).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import tomllib

from pyro_razor.configio import replace_path
from pyro_razor.runs import load_experiment, run_experiment

KEEP = ("train_mse", "nll_per_n", "kl_per_n", "neg_elbo_per_n", "test_mse", "test_mse_moved",
        "test_mse_wider", "wall_time_s", "seconds_per_step", "n_significant", "true_dim",
        "recovered", "parallelness", "chance_parallelness", "scale_warning")


def parse_value(text: str):
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("out")
    parser.add_argument("--set", nargs="*", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0])
    parser.add_argument("--variants", nargs="*", default=None)
    parser.add_argument("--runs", default="runs/sweeps", help="where run directories go")
    args = parser.parse_args(argv)
    base = load_experiment(args.config)
    settings = args.set or [[]]
    for overrides in settings:
        for seed in args.seeds:
            config = base
            pairs = dict(item.split("=", 1) for item in overrides)
            for key, value in pairs.items():
                config = replace_path(config, key, parse_value(value))
            if args.variants:
                config = replace_path(config, "variants", tuple(args.variants))
            tag = "_".join(f"{k.split('.')[-1]}={v}" for k, v in pairs.items()) or "base"
            out = Path(args.runs) / f"{config.name}__{tag}__seed{seed}"
            start = time.perf_counter()
            summary = run_experiment(config, out, seed=seed, progress=False, overwrite=True,
                                     figures=False)
            record = {"config": args.config, "overrides": pairs, "seed": seed, "run": str(out),
                      "wall_s": time.perf_counter() - start, "variants": {}}
            for variant, metrics in summary["variants"].items():
                entry = {k: metrics[k] for k in KEEP if k in metrics}
                sym = out / variant / "symmetry.json"
                if sym.is_file():
                    s = json.loads(sym.read_text())
                    entry["displacements"] = s["displacements"][: s["n_significant"] + 3]
                    entry["conservation"] = s["conservation"][: s["n_significant"] + 3]
                    entry["singular_values"] = s["singular_values"]
                record["variants"][variant] = entry
            with open(args.out, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            print(json.dumps(record)[:400], file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
