"""The razor's per-quantity evidence (nested ELBO comparison) for a trained run's learned model.

    python experiments/sweeps/quantity_evidence.py RUN_DIR OUT.json [--refit-epochs 100]

Tests every learned quantity that started at a direct candidate (``model.eta_init = "direct"``)
or whose flow moves the training states by more than 0.1 standard deviations, as
``pyro-razor discover`` does (:func:`pyro_razor.runs.discover.per_quantity_evidence`), and
writes the record with its wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from pyro_razor.runs.discover import per_quantity_evidence
from pyro_razor.runs.variants import load_variant


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("out")
    parser.add_argument("--refit-epochs", type=int, default=100)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    config, data, model, guide = load_variant(args.run_dir, "learned")
    record = per_quantity_evidence(config, data, model, guide, args.refit_epochs)
    record["wall_s"] = time.perf_counter() - start
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
    for q in record["quantities"]:
        label = ", ".join(f"Q{k + 1}" for k in q["members"])
        print(f"{label} [{q['start']}] speed {q['speed']:.3f} "
              f"{q['delta_nats']:+.1f} nats {q['decision']}", file=sys.stderr)
    print(f"noise {record['noise_nats']:.1f} nats, {record['wall_s']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
