"""The ``pyro-razor`` command line.

::

    pyro-razor run CONFIG [--out DIR] [--device cpu|cuda] [--seed N] [--epochs N] [--resume]
                          [--warm-start] [--overwrite] [--no-progress] [--no-figures]
    pyro-razor analyse RUN_DIR [--device D]
    pyro-razor table RUN_DIR...
    pyro-razor ppc RUN_DIR [--variant V] [--samples N] [--horizon T] [--device D]
    pyro-razor bench [CONFIG...] [--steps N] [--warmup N] [--device D] [--reference]
                     [--case NAME]...
    pyro-razor discover DATA [--dt DT] [--quantities K] [--names X,Y,..] [--out DIR]
                        [--epochs N] [--seed N] [--test-fraction F] [--device D]
                        [--alpha A] [--noise SIGMA] [--tolerance T] [--no-razor]
                        [--degree N] [--features SPEC]
                        [--confirm-epochs N] [--overwrite] [--resume] [--no-progress]

``discover``'s DATA is a ``.npz``, ``.npy``, ``.csv`` or ``.nc`` trajectory file
(:mod:`pyro_razor.systems.files`), or a system as ``package.module:function``. A ``.csv`` has a
header line and one row per state: a trajectory id column (``trajectory``, ``traj`` or ``id``),
a time column (``time`` or ``t``), and the phase coordinates in the other columns, positions
first.

User errors (missing, invalid or damaged files, bad configs and output paths, an absent CUDA
device, a missing checkpoint, a config too large for the memory, a diverged training) print one
line ``pyro-razor: error: ...`` to stderr and exit with status 2; ``run`` prints its memory
estimate as its first line.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from pyro_razor import __version__

__all__ = ["build_parser", "main"]


def _int_at_least(minimum: int, wording: str):
    """An argparse type: an integer >= ``minimum`` (``wording`` names it in errors)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wording}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {wording}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1, "a positive integer")


def _fraction(text: str) -> float:
    """A number strictly between 0 and 0.5 (a test level or a relative tolerance)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value < 0.5:
        raise argparse.ArgumentTypeError(f"need a number between 0 and 0.5, got {text!r}")
    return value


def _degree(text: str) -> int:
    """A monomial degree 0 to 4 (the direct estimate's library)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 4:
        raise argparse.ArgumentTypeError(f"need an integer degree 0 to 4, got {text!r}")
    return value


def _noise_level(text: str) -> float | list[float]:
    """``SIGMA`` or ``S1,S2,...``: non-negative finite noise standard deviations."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = [float("nan")]
    if not all(0.0 <= v < float("inf") for v in values):
        raise argparse.ArgumentTypeError(
            f"need a noise std >= 0, or one per coordinate as S1,S2,..., got {text!r}")
    return values[0] if len(values) == 1 else values
_non_negative_int = _int_at_least(0, "an integer >= 0")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``pyro-razor`` with its sub-commands."""
    parser = argparse.ArgumentParser(
        prog="pyro-razor",
        description="Learn conserved quantities and symmetries of Hamiltonian systems "
        "with Noether's razor (Bayesian model selection in Pyro).",
    )
    parser.add_argument("--version", action="version", version=f"pyro-razor {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run", help="train, evaluate and analyse every variant of an experiment config",
        description="Train the variants of CONFIG (an experiments/*.toml file), evaluate them "
        "and write summary.json, per-variant files and figures to the output directory.",
    )
    run.add_argument("config", metavar="CONFIG", help="experiment TOML file")
    run.add_argument("--out", metavar="DIR", help="output directory (default: runs/<name>)")
    run.add_argument("--device", metavar="DEVICE", help="torch device, e.g. cpu or cuda")
    run.add_argument("--seed", type=_non_negative_int, metavar="N",
                     help="training seed (also seeds the learned quantities' initialisation)")
    run.add_argument("--epochs", type=_positive_int, metavar="N", help="override train.epochs")
    run.add_argument("--resume", action="store_true",
                     help="continue unfinished variants from their checkpoints; skip finished")
    run.add_argument("--warm-start", action="store_true",
                     help="with --resume: continue from the last checkpoints' parameters, RNG "
                     "state and history under CONFIG's changed [train] settings (learning "
                     "rates, epochs, schedule) with a fresh optimiser, e.g. after a divergence; "
                     "data and model must match")
    run.add_argument("--overwrite", action="store_true",
                     help="replace an existing run in the output directory")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument("--jobs", type=_positive_int, default=1, metavar="N",
                     help="train and evaluate up to N variants side by side in worker "
                     "processes, the cores shared among them (default 1: one after another; "
                     "2 suits the quick configs on a 2-core machine)")
    run.add_argument("--no-figures", action="store_true",
                     help="skip the figures (`pyro-razor analyse DIR` draws them later)")

    analyse = sub.add_parser(
        "analyse", help="recompute rollouts, symmetry analysis and figures of a finished run",
        description="Recompute the long-horizon rollouts, the symmetry analysis and every "
        "figure of a finished run DIR from its checkpoints (training metrics are kept), then "
        "print its results table.",
    )
    analyse.add_argument("run_dir", metavar="DIR", help="run directory (with summary.json)")
    analyse.add_argument("--device", metavar="DEVICE", help="torch device (default: the run's)")

    table = sub.add_parser(
        "table", help="paper-style results table of finished runs",
        description="Print a markdown table per finished run directory, read from its "
        "summary.json: one row per variant with Train MSE, NLL/N, KL/N, -ELBO/N and Test MSE "
        "(and the posterior predictive comparison once `pyro-razor ppc` has run).",
    )
    table.add_argument("run_dirs", metavar="DIR", nargs="+", help="run directories")

    ppc = sub.add_parser(
        "ppc", help="posterior predictive checks of a finished run (ArviZ)",
        description="Check the one-step and rollout posterior predictive distributions of "
        "a finished run's trained variants against the data (coverage, calibration, held-out "
        "log predictive density, PSIS-LOO with ArviZ); writes <variant>/ppc.json, "
        "ppc_comparison.json and figures to RUN_DIR.",
    )
    ppc.add_argument("run_dir", metavar="RUN_DIR", help="run directory")
    ppc.add_argument("--variant", help="one variant (default: all)")
    ppc.add_argument("--samples", type=_positive_int, metavar="N",
                     help="posterior samples (default: 100)")
    ppc.add_argument("--horizon", type=_positive_int, metavar="T",
                     help="rollout length in dt steps (default: the test trajectories' length, "
                     "test_points - 1)")
    ppc.add_argument("--device", metavar="DEVICE", help="torch device (default: the run's)")

    bench = sub.add_parser(
        "bench", help="seconds per SVI step and peak memory",
        description="Time SVI steps of each CONFIG's variants (default: the built-in "
        "reference configurations of the paper's tables) on one device.",
    )
    bench.add_argument("configs", metavar="CONFIG", nargs="*", help="experiment TOML files")
    bench.add_argument("--steps", type=_positive_int, default=5, metavar="N",
                       help="timed steps per case (median reported; default 5)")
    bench.add_argument("--warmup", type=_non_negative_int, default=1, metavar="N",
                       help="untimed steps first (default 1)")
    bench.add_argument("--device", metavar="DEVICE", default=None,
                       help="torch device (default: each config's own; cpu for the reference)")
    bench.add_argument("--reference", action="store_true",
                       help="also run the built-in reference cases when CONFIGs are given")
    bench.add_argument("--case", action="append", default=[], metavar="NAME",
                       help="run only this built-in case (repeatable): ref_table1_learned, "
                       "ref_table1_vanilla, ref_table2_n3_learned, ref_table3_learned; the "
                       "paper-scale learned cases need tens of GiB on a CPU")
    bench.add_argument("--checkpoint-steps", action="store_true",
                       help="recompute integrator sub-steps in the backward pass: memory / "
                       "sub-steps, ~30%% more compute (lets paper-scale cases run on a CPU)")
    _add_discover(sub)
    return parser


def _add_discover(sub) -> None:
    discover = sub.add_parser(
        "discover", help="find the conserved quantities of your own trajectories",
        description="Train a vanilla and a learned-symmetry HNN on DATA (a .npz/.npy/.csv/.nc "
        "trajectory file, or a system as 'package.module:function') with settings chosen from "
        "the data, and report the quadratic conserved quantities the evidence supports, their "
        "Lie algebra, or that none is supported (discovery.json, discovery.txt, a figure).",
    )
    discover.add_argument(
        "data", metavar="DATA",
        help="trajectory file (.npz, .npy, .csv or .nc) or a system as module:function; a .csv "
        "has a header line, a trajectory id column (trajectory, traj or id), a time column "
        "(time or t) and the phase coordinates in the other columns, positions first")
    discover.add_argument("--dt", type=float, metavar="DT",
                          help="time between states (if the file has none)")
    discover.add_argument("--quantities", type=_positive_int, metavar="K",
                          help="learnable quantities (default: the direct estimate's "
                          "candidates + 2); at most M (M + 3) / 2, the independent quadratic "
                          "quantities of phase dimension M (14 for M = 4)")
    discover.add_argument("--names", metavar="X,Y,...",
                          help="phase coordinate names, positions first, comma-separated")
    discover.add_argument("--out", metavar="DIR", help="output directory (default: runs/...)")
    discover.add_argument("--epochs", type=_positive_int, metavar="N",
                          help="training epochs (default: about 400 steps, i.e. 400 epochs "
                          "full-batch, fewer with minibatches)")
    discover.add_argument("--seed", type=_non_negative_int, default=0, metavar="N",
                          help="seed of the train/test split, the learned quantities' start "
                          "and training (default: %(default)s)")
    discover.add_argument("--test-fraction", type=float, default=0.2, metavar="F",
                          help="share of trajectories held out when the file has no test set "
                          "(default: %(default)s)")
    discover.add_argument("--alpha", type=_fraction, default=0.05, metavar="A",
                          help="level of the direct estimate's tests (default 0.05): at most "
                          "this chance of missing a law or of claiming a drifting quantity")
    discover.add_argument("--noise", type=_noise_level, metavar="SIGMA",
                          help="observation noise std in the data's units, one number or one "
                          "per coordinate (X,Y,..); default: estimated from the data")
    discover.add_argument("--tolerance", type=_fraction, default=0.05, metavar="T",
                          help="relative drift below which a quantity counts as (approximately) "
                          "conserved (default 0.05)")
    discover.add_argument("--no-razor", action="store_true",
                          help="the direct estimate alone (milliseconds, no training)")
    discover.add_argument("--degree", type=_degree, default=2, metavar="N",
                          help="highest degree of the monomials the direct estimate searches "
                          "(0 to 4; default 2). Beyond quadratic laws the answer is the direct "
                          "estimate's (sparse formulas, functionally independent count); the "
                          "razor stage, which symmetrises over quadratic quantities, is skipped")
    discover.add_argument("--features", metavar="SPEC", default=None,
                          help="more features beside the monomials, comma-separated: "
                          "'trig:I+J[:H]' (cos, sin of coordinates I, J, 0-based, H harmonics), "
                          "'inverse-distance:DIM' (1/r and unit vectors of bodies in DIM "
                          "dimensions, positions laid out body by body), 'poly:N'; e.g. "
                          "--features trig:0 for a pendulum, --degree 3 --features "
                          "inverse-distance:2 for Kepler")
    discover.add_argument("--confirm-epochs", type=_non_negative_int, default=50, metavar="N",
                          help="epochs of each refit in the razor's per-quantity evidence "
                          "(quantity switched off, weights refitted; default 50, 0: no refit)")
    discover.add_argument("--device", metavar="DEVICE", default="cpu",
                          help="torch device for training, e.g. cpu or cuda "
                          "(default: %(default)s)")
    discover.add_argument("--overwrite", action="store_true",
                          help="replace an earlier discovery in the output directory")
    discover.add_argument("--resume", action="store_true",
                          help="continue an interrupted discovery in the output directory "
                          "(finished models are reused, an unfinished one continues)")
    discover.add_argument("--no-progress", action="store_true", help="no progress bars")


def _cmd_run(args) -> int:
    """``pyro-razor run``: train, evaluate and analyse (``--warm-start`` with ``--resume``:
    continue from the checkpoints under changed training settings). Under ``torchrun`` each
    process joins the process group and trains a share of every minibatch; rank 0 alone
    prints and writes."""
    from pyro_razor.inference import distributed
    from pyro_razor.runs import (
        RunError,
        format_table,
        load_experiment,
        resolve_config,
        resolve_device,
        run_experiment,
    )

    if args.warm_start and not args.resume:
        raise RunError("--warm-start continues a run: pass it together with --resume")
    config = load_experiment(args.config)
    # Check the overrides and the device before any work.
    resolved = resolve_config(config, device=args.device, seed=args.seed, epochs=args.epochs)
    resolve_device(resolved.device)
    device = distributed.init_from_env(resolved.device)  # a no-op without torchrun
    main_rank = distributed.is_main_process()
    if distributed.is_distributed():
        resolved = resolve_config(resolved, device=device)
        distributed.check_world_size(resolved.data.shapes()["train"][0], resolved.train)
    out = Path(args.out) if args.out else Path("runs") / config.name
    run_experiment(
        resolved, out, resume=args.resume, progress=not args.no_progress,
        overwrite=args.overwrite, figures=not args.no_figures, warm_start=args.warm_start,
        report=(lambda line: print(line, flush=True)) if main_rank else None, jobs=args.jobs,
    )
    if main_rank:
        print(format_table([out]), end="")
        print(f"results in {out}")
    return 0


def _cmd_analyse(args) -> int:
    from pyro_razor.runs import analyse_run, format_table

    analyse_run(args.run_dir, device=args.device)
    print(format_table([args.run_dir]), end="")
    print(f"figures in {Path(args.run_dir) / 'figures'}")
    return 0


def _cmd_table(args) -> int:
    from pyro_razor.runs import format_table

    print(format_table(args.run_dirs), end="")
    return 0


def _cmd_ppc(args) -> int:
    from pyro_razor.runs import run_ppc

    kwargs = {}
    if args.samples is not None:
        kwargs["samples"] = args.samples
    if args.horizon is not None:
        kwargs["horizon"] = args.horizon
    if args.device is not None:
        kwargs["device"] = args.device
    result = run_ppc(args.run_dir, variant=args.variant, **kwargs)
    if result is not None and not isinstance(result, (dict, list)):
        print(result)
    return 0


def _cmd_bench(args) -> int:
    from pyro_razor.runs.benchmark import format_bench, run_benchmark

    results = run_benchmark(
        args.configs, steps=args.steps, warmup=args.warmup, device=args.device,
        reference=args.reference or bool(args.case) or not args.configs, cases=args.case,
        checkpoint_steps=args.checkpoint_steps,
    )
    print(format_bench(results), end="")
    return 0


def _cmd_discover(args) -> int:
    from pyro_razor.runs import resolve_device
    from pyro_razor.runs.discover import run_discovery

    resolve_device(args.device)
    names = [n.strip() for n in args.names.split(",")] if args.names else None
    run_discovery(
        args.data, args.out, progress=not args.no_progress, overwrite=args.overwrite,
        resume=args.resume,
        report=print, dt=args.dt, names=names, quantities=args.quantities, epochs=args.epochs,
        seed=args.seed, device=args.device, test_fraction=args.test_fraction,
        alpha=args.alpha, noise=args.noise, tolerance=args.tolerance, razor=not args.no_razor,
        confirm_epochs=args.confirm_epochs, degree=args.degree, features=args.features,
    )
    return 0


_COMMANDS = {
    "run": _cmd_run,
    "analyse": _cmd_analyse,
    "table": _cmd_table,
    "ppc": _cmd_ppc,
    "bench": _cmd_bench,
    "discover": _cmd_discover,
}


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as the commands print it: one ``pyro-razor: warning:`` line, without Python's
    file, line number and source line (what to do is in the message itself)."""
    print(f"pyro-razor: warning: {message}", file=file or sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse ``argv`` (default ``sys.argv[1:]``), run the command, return the exit
    status (0 success, 2 user error, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from pyro_razor.allocator import keep_freed_memory
    from pyro_razor.configio import ConfigError
    from pyro_razor.inference import distributed
    from pyro_razor.runs import RunError

    keep_freed_memory()  # every command: training and evaluation reuse freed tensors' pages

    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return _COMMANDS[args.command](args)
    except (ConfigError, RunError, FileNotFoundError, IsADirectoryError,
            distributed.DistributedError) as exc:
        # Under torchrun rank 0 reports an error every rank raised together; another rank
        # reports only its own, prefixed with its rank.
        rank = distributed.launched_rank()
        if rank == 0:
            print(f"pyro-razor: error: {_one_line(exc)}", file=sys.stderr)
        elif not distributed.raised_on_every_rank(exc):
            print(f"pyro-razor: error: rank {rank}: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pyro-razor: interrupted (a run continues with --resume)", file=sys.stderr)
        return 130
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    sys.exit(main())
