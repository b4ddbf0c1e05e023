"""Where a user's wait goes: ``pyro-razor discover`` and ``pyro-razor run`` end to end, by stage.

    python experiments/end_to_end_benchmark.py discover FILE [--epochs N] [--confirm-epochs N]
    python experiments/end_to_end_benchmark.py run CONFIG [--epochs N] [--jobs N]

runs the command's own function (:func:`~pyro_razor.runs.discover.run_discovery` or
:func:`~pyro_razor.runs.run_experiment`) in a fresh directory, stamps every line it reports
with the seconds since the start, and prints one table: wall seconds per stage (direct
estimate, each variant's training and its evaluation/analysis, the per-quantity evidence, the
answer and its figure) and the whole command. Stages are read from the lines the command
reports (``"<variant>: evaluating"`` ends a variant's training, its result line ends its
evaluation), so the figures are those of the command a user runs, not of a re-implementation.

Time it alone on the machine: two jobs on the 2 cores roughly double every figure. A file
to time comes from ``experiments/discovery_systems.py`` (``make_file``) or a user.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from pyro_razor.runs.config import load_experiment
from pyro_razor.runs.discover import run_discovery
from pyro_razor.runs.run import run_experiment


class StampedLines:
    """A ``report`` callback that keeps ``(seconds since start, line)`` and echoes it."""

    def __init__(self, echo: bool = True):
        self.start = time.perf_counter()
        self.lines: list[tuple[float, str]] = []
        self.echo = echo

    def __call__(self, line: str) -> None:
        stamp = time.perf_counter() - self.start
        self.lines.append((stamp, line))
        if self.echo:
            print(f"[{stamp:7.1f} s] {line}", file=sys.stderr, flush=True)


def stages(lines: list[tuple[float, str]], variants, end: float) -> list[tuple[str, float]]:
    """``(stage, seconds)`` from the stamped lines of a run or discover (module docstring)."""
    marks = [("start", 0.0)]
    for stamp, line in lines:
        if line.startswith("direct estimate:") and len(marks) == 1:
            marks.append(("direct estimate", stamp))
        for v in variants:
            if line.startswith(f"{v}: evaluating"):
                marks.append((f"{v}: training", stamp))
            elif line.startswith(f"{v}: ") and "-ELBO/N" in line:
                marks.append((f"{v}: evaluation and analysis", stamp))
    marks.append(("the rest (evidence per quantity, answer, figures)", end))
    return [(name, stamp - prev) for (_, prev), (name, stamp) in zip(marks, marks[1:],
                                                                     strict=False)]


def table(rows: list[tuple[str, float]], total: float, title: str) -> str:
    out = [f"## {title}", "", "| stage | wall s |", "|---|---|"]
    out += [f"| {name} | {seconds:.1f} |" for name, seconds in rows]
    out.append(f"| **total** | **{total:.1f}** |")
    return "\n".join(out)


def time_discover(path: str, epochs: int | None, confirm_epochs: int | None, out: Path):
    report = StampedLines()
    settings = {} if confirm_epochs is None else {"confirm_epochs": confirm_epochs}
    found = run_discovery(path, out, progress=False, overwrite=True, report=report,
                          epochs=epochs, **settings)
    total = time.perf_counter() - report.start
    rows = stages(report.lines, ("vanilla", "learned"), total)
    record = json.loads((out / "discovery.json").read_text())
    return rows, total, {"verdict": found.verdict, "settings": record.get("settings")}


def parallel_stages(lines: list[tuple[float, str]], jobs: int, end: float):
    """``(stage, seconds)`` of a run whose variants ran in ``jobs`` worker processes: their
    lines arrive as each variant finishes, so only the span until the last one is a stage."""
    done = max(stamp for stamp, line in lines if "-ELBO/N" in line)
    return [(f"variants in {jobs} processes (training, evaluation, analysis)", done),
            ("figures", end - done)]


def time_run(config_path: str, epochs: int | None, out: Path, jobs: int = 1):
    config = load_experiment(config_path)
    report = StampedLines()
    summary = run_experiment(config, out, epochs=epochs, progress=False, overwrite=True,
                             report=report, jobs=jobs)
    total = time.perf_counter() - report.start
    if jobs == 1:
        return stages(report.lines, config.variants, total), total, {}
    training = {v: round(m["wall_time_s"], 1) for v, m in summary["variants"].items()}
    return parallel_stages(report.lines, jobs, total), total, {"training s": training}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("discover", "run"))
    parser.add_argument("target", help="a trajectory file (discover) or a config (run)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--confirm-epochs", type=int, default=None)
    parser.add_argument("--out", default=None, help="run directory (default: a temporary one)")
    parser.add_argument("--jobs", type=int, default=1, help="run: variants side by side")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp) / "run"
        if args.command == "discover":
            rows, total, extra = time_discover(args.target, args.epochs, args.confirm_epochs,
                                               out)
        else:
            rows, total, extra = time_run(args.target, args.epochs, out, args.jobs)
    print(table(rows, total, f"{args.command} {args.target}"))
    for key, value in extra.items():
        print(f"\n{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
