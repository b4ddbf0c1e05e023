"""The razor's and the direct estimate's answers side by side over the noise column.

    python experiments/razor_grid.py [--systems sho,detuned,...] [--noise 0,0.01,0.03,0.1]
        [--out runs/razor_grid] [--results experiments/razor_grid.jsonl] [--epochs N]
        [--table | --redecide] [--before EARLIER.jsonl]

For every system of :data:`direct_benchmark.SYSTEMS` named (default: those with ``M <= 4``)
and every noise level (std relative to each coordinate's spread), writes 30 trajectories of 11
points at dt 0.3 (seed 0; the regime "n11" of the direct benchmark), runs ``pyro-razor
discover`` on it (:func:`~pyro_razor.runs.discover.run_discovery`, defaults) and appends one
JSON line per file: the truth, the direct estimate's outcome (``"2"``, ``"2+1"`` or
``"[0,2]"``), the razor's count, its outcome written the same way (the direct estimate's tests
run on the razor's learned span, :mod:`pyro_razor.discovery.span_test`; rows from before that
test have the count alone) and algebra, how many of the quantities the per-quantity
evidence tested it supports, the principal angles between the two answers' spans, the wall
time and the answer's ``confirmed`` (of the direct count, the laws the nested ELBO comparison
supports: :mod:`pyro_razor.discovery.answer`; the answer's count is the direct outcome).
Runs are appended as they finish, so an interrupted grid keeps its rows; ``--table`` prints
the results file as a markdown table. Noise-major order: each noise level is complete for
every system before the next starts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from direct_benchmark import SYSTEMS, data  # noqa: E402

from pyro_razor.atomic import write_text  # noqa: E402
from pyro_razor.discovery.agreement import records_agreement  # noqa: E402
from pyro_razor.discovery.direct import direct_estimate  # noqa: E402
from pyro_razor.runs.discover import razor_answer, razor_decision, run_discovery  # noqa: E402
from pyro_razor.systems.files import read_trajectories, write_trajectories  # noqa: E402

DEFAULT_SYSTEMS = [name for name, (system, _) in SYSTEMS.items() if system.phase_dim <= 4]


def direct_outcome(record: dict) -> str:
    """The direct estimate's outcome from its JSON record, as the direct benchmark writes it."""
    status, count, lo_hi = record["status"], record["count"], record["range"]
    if status == "determined":
        return str(count)
    if status == "approximate":
        return f"{count}+{lo_hi[1] - count}"
    return f"[{lo_hi[0]},{lo_hi[1]}]"


def razor_outcome(found) -> str:
    """The razor's calibrated verdict on its learned span (``discover_quantities``' span
    test), written as :func:`direct_outcome` writes the direct one; ``"0"`` when the ELBO
    prefers the vanilla HNN or no learned direction moves the data."""
    test = found.evidence.get("span_test")
    gain = found.evidence["elbo"]["learned_minus_vanilla_nats"]
    return "0" if test is None or gain >= 0 else direct_outcome(test)


def one_run(name: str, noise: float, out: Path, epochs: int | None) -> dict:
    """Write the file of ``name`` at ``noise`` and run ``discover`` on it: one result row."""
    x, truth = data(name, B=30, n=11, dt=0.3, noise=noise, seed=0)
    path = out / f"{name}_noise{noise:g}.npz"
    write_trajectories(path, x, 0.3)
    start = time.perf_counter()
    found = run_discovery(str(path), out / f"{name}_noise{noise:g}", progress=False,
                          overwrite=True, epochs=epochs)
    per_quantity = found.evidence.get("per_quantity", {}).get("quantities", [])
    return {
        "system": name, "truth": truth, "noise": noise,
        "direct": direct_outcome(found.evidence["direct"]["evidence"]["direct"]),
        "razor": found.n_found, "razor_outcome": razor_outcome(found),
        "algebra": found.algebra["name"],
        "tested": len(per_quantity),
        "supported": sum(q["decision"] == "supports" for q in per_quantity),
        "confirmed": found.evidence["answer"]["confirmed"],
        "angles_deg": found.evidence["agreement"].get("angles_deg"),
        "warnings": len(found.warnings), "wall_s": round(time.perf_counter() - start, 1),
    }


def redecide(path: Path, out: Path) -> list[dict]:
    """Decide every row of the results file ``path`` again from its trained run directory
    under ``out`` with the current test (:func:`~pyro_razor.runs.discover.razor_decision`, no
    training); the razor's count, outcome, algebra and its angles to the direct estimate's span
    are replaced, the answer's ``confirmed`` is taken again from the run's per-quantity evidence,
    and the direct estimate's outcome is taken again on the row's data file with
    the current estimator (the razor itself stays as trained: started at the candidates of
    the estimator that ran with it); the file is rewritten."""
    rows = _rows(path)
    for row in rows:
        run = out / f"{row['system']}_noise{row['noise']:g}"
        found, data, _, _ = razor_decision(run)
        record = json.loads((run / "discovery.json").read_text())
        agreement = records_agreement(found.quantities, record["direct"]["quantities"],
                                      data.scaling)
        trajectories = read_trajectories(out / f"{row['system']}_noise{row['noise']:g}.npz")
        direct_test = direct_estimate(trajectories.trajectories).to_json()
        row.update(direct=direct_outcome(direct_test))
        evidence = {**found.evidence, "per_quantity": record["evidence"]["per_quantity"]}
        row.update(confirmed=razor_answer(direct_test, evidence)["confirmed"])
        row.update(razor=found.n_found, razor_outcome=razor_outcome(found),
                   algebra=found.algebra["name"], angles_deg=agreement["angles_deg"])
    write_text(path, "".join(json.dumps(row) + "\n" for row in rows))
    return rows


def _rows(path: Path) -> list[dict]:
    if not path.is_file():
        raise SystemExit(f"razor_grid: no results file {path}; run the grid first")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def table(path: Path, before: Path | None = None) -> str:
    """The results file as a markdown table; with ``before`` (an earlier results file of the
    same grid), a column with that file's razor count for the same cell."""
    rows = _rows(path)
    earlier = {} if before is None else {(r["system"], r["noise"]): r for r in _rows(before)}
    extra = " razor before |" if before is not None else ""
    lines = [f"| system | truth | noise | direct |{extra} razor (algebra) | evidence supports | "
             "largest angle ° | wall s | answer: confirmed of the direct count |",
             "|---|---|---|---|" + "---|" * (5 + bool(extra))]
    for r in sorted(rows, key=lambda r: (list(SYSTEMS).index(r["system"]), r["noise"])):
        angles = r["angles_deg"] or []
        largest = f"{max(angles):.1f}" if angles else "—"
        old = earlier.get((r["system"], r["noise"]))
        cell = (f" {old['razor']} |" if old else " — |") if before is not None else ""
        lines.append(f"| {r['system']} | {r['truth']} | {r['noise']:g} | {r['direct']} |{cell} "
                     f"{r.get('razor_outcome', r['razor'])} ({r['algebra']}) | "
                     f"{r['supported']} of {r['tested']} | {largest} | {r['wall_s']:.0f} |"
                     f" {r.get('confirmed', '—')} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS))
    parser.add_argument("--noise", default="0,0.01,0.03,0.1")
    parser.add_argument("--out", default="runs/razor_grid")
    parser.add_argument("--results", default="experiments/razor_grid.jsonl")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--table", action="store_true", help="print the results file and stop")
    parser.add_argument("--before", default=None,
                        help="with --table: an earlier results file whose razor counts are shown "
                        "beside")
    parser.add_argument("--redecide", action="store_true",
                        help="decide the results file's rows again from their run directories "
                        "under --out with the current test (no training), then print the table")
    args = parser.parse_args(argv)
    results = Path(args.results)
    if args.redecide:
        redecide(results, Path(args.out))
    if args.table or args.redecide:
        print(table(results, Path(args.before) if args.before else None))
        return 0
    unknown = [s for s in args.systems.split(",") if s not in SYSTEMS]
    if unknown:
        parser.error(f"unknown system(s) {unknown}; choose from {list(SYSTEMS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for noise in (float(v) for v in args.noise.split(",")):
        for name in args.systems.split(","):
            row = one_run(name, noise, out, args.epochs)
            with results.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
