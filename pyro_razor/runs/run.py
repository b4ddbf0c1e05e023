r"""Run one experiment end to end: data, every model variant, evaluation, analysis and figures.

:func:`run_experiment` makes the dataset once (the same data for every variant), then for each
variant (``"vanilla"`` HNN, ``"learned"`` symmetry, ``"oracle"`` ground truth) builds the model
and guide from a fresh param store and the same seed, trains it with
:func:`pyro_razor.inference.train` (checkpointed, resumable), evaluates it and writes the run
directory (:class:`~pyro_razor.runs.rundir.RunDir` lists its files).

``summary.json``::

    {"experiment": str, "system": str, "device": str, "dtype": str, "n_train_transitions": int,
     "variants": {NAME: {"train_mse", "nll_per_n", "kl_per_n", "neg_elbo_per_n", "test_mse",
                         "test_nll_per_n", ["test_mse_<set>", "test_nll_per_n_<set>"],
                         "wall_time_s", "seconds_per_step", "epochs", "steps",
                         "num_quantities", "rollout_mse_final", "rollout_mse_mean",
                         "energy_drift_final", "standard_errors", ["n_significant",
                         "true_dim", "recovered", "parallelness"]}}}

``standard_errors`` maps the Monte-Carlo metrics (``train_mse``, ``nll_per_n``,
``neg_elbo_per_n``, ``test_mse``, ``test_nll_per_n``, ...) to their standard errors over the
evaluation's weight draws (:func:`pyro_razor.inference.evaluate`).

Figures are per transition as in the paper: ``NLL/N`` is the expected negative log-likelihood
``-E_q log p(x_{t+dt} | x_t, theta)`` summed over phase coordinates and divided by
``N = n_train (train_points - 1)``; ``KL/N = KL(q || p) / N``; ``-ELBO/N = NLL/N + KL/N``.
Extra test sets (n-body ``"moved"``/``"wider"``) appear as ``test_mse_moved``, ....
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable

from pyro_razor import __version__, inference
from pyro_razor.allocator import keep_freed_memory
from pyro_razor.configio import ConfigError, replace_path, to_dict
from pyro_razor.inference import distributed
from pyro_razor.inference.step import TrainingDiverged
from pyro_razor.runs.config import VARIANTS, ExperimentConfig, load_experiment
from pyro_razor.runs.data import RunData
from pyro_razor.runs.device import resolve_device
from pyro_razor.runs.errors import RunError
from pyro_razor.runs.figures import make_figures
from pyro_razor.runs.parallel import default_threads, run_in_processes
from pyro_razor.runs.results import (
    VariantArtefacts,
    analyse_variant,
    evaluate_variant,
    variant_line,
)
from pyro_razor.runs.rundir import RunDir
from pyro_razor.runs.variants import check_memory, estimate_variant_memory, fresh_variant

__all__ = ["resolve_config", "run_experiment"]


def resolve_config(
    config: ExperimentConfig,
    device: str | None = None,
    seed: int | None = None,
    epochs: int | None = None,
) -> ExperimentConfig:
    """Apply command-line overrides: ``device``; ``seed`` (sets ``train.seed`` and
    ``model.eta_seed``; the data keep ``data.seed``); ``epochs`` (``train.epochs``)."""
    if device is not None:
        config = replace_path(config, "device", device)
    if seed is not None:
        config = replace_path(config, "train.seed", seed)
        config = replace_path(config, "model.eta_seed", seed)
    if epochs is not None:
        config = replace_path(config, "train.epochs", epochs)
    return config


def _differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        path = f"{prefix}{key}"
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            out += _differences(a[key], b[key], path + ".")
        elif a.get(key) != b.get(key):
            out.append(path)
    return out


def _check_out_path(run: RunDir) -> None:
    """Refuse an output path that is a file, lies under a file or cannot be written."""
    root = run.root
    if root.exists() and not root.is_dir():
        raise RunError(
            f"output directory {root} is an existing file, not a directory; choose another --out"
        )
    existing = next((p for p in (root, *root.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise RunError(
            f"output directory {root} lies under {existing}, which is a file, not a directory; "
            "choose another --out"
        )
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise RunError(
            f"output directory {root} cannot be created or written: no write permission for "
            f"{existing}; choose another --out"
        )


def _check_out_dir(
    run: RunDir, config: ExperimentConfig, resume: bool, overwrite: bool, warm_start: bool
) -> None:
    if not run.holds_run(VARIANTS):
        return
    if not resume:
        if overwrite:
            return
        raise RunError(
            f"{run.root} already holds a run; pass --resume to continue it, --overwrite to "
            "replace it, or choose another --out"
        )
    if run.config_path.is_file():
        try:
            previous = load_experiment(run.config_path)
        except ConfigError as exc:
            raise RunError(f"cannot resume: {exc}") from exc
        old, new = to_dict(previous), to_dict(config)
        old.pop("device", None)
        new.pop("device", None)
        differ = _differences(old, new)
        training = [key for key in differ if key.startswith("train.")]
        if warm_start and len(training) < len(differ):
            raise RunError(
                f"cannot warm-start {run.root}: its config differs in "
                f"{', '.join(k for k in differ if k not in training)}; --warm-start allows "
                "changed [train] settings only (the data, model, guide and evaluation must "
                "match), or start a new run with another --out"
            )
        if differ and not warm_start:
            hint = ("; to continue with the changed training settings add --warm-start"
                    if len(training) == len(differ) else "")
            raise RunError(
                f"cannot resume {run.root}: its config differs in {', '.join(differ)}; resume "
                f"with the same settings, or start a new run with another --out{hint}"
            )


def _check_resumable(run: RunDir, config: ExperimentConfig) -> None:
    """Read every checkpoint and metrics file a resume will use, before anything is written."""
    for variant in config.variants:
        if run.checkpoint(variant).is_file():
            run.read_checkpoint(variant)
        run.read_metrics(variant)


def _check_before_work(run: RunDir, config, dev, resume, overwrite, warm_start, jobs) -> str:
    """Every check of :func:`run_experiment` that needs no work: output path, saved config,
    the files a resume reads, memory. Returns the memory estimate as one line."""
    _check_out_path(run)
    _check_out_dir(run, config, resume, overwrite, warm_start)
    if resume:
        _check_resumable(run, config)
    return check_memory(config, dev, jobs=jobs)


def _diverged(exc: TrainingDiverged, config: ExperimentConfig, variant: str, run: RunDir) -> str:
    """The one-line message of a diverged variant: where, why, what is kept, what to do."""
    tc, mc = config.train, config.model
    if exc.checkpoint_epoch is None:
        every = ("" if tc.checkpoint_every else
                 " (train.checkpoint_every = 0 writes one only at the end; set it to keep one "
                 "every few epochs)")
        kept = f"no checkpoint was written yet{every}, so the variant restarts from scratch"
    else:
        kept = (f"the last good checkpoint (epoch {exc.checkpoint_epoch}) is kept in "
                f"{run.checkpoint(variant)}")
    return (
        f"variant {variant!r} diverged in epoch {exc.epoch}: {exc.reason}; likely causes: "
        f"learning rates too high (train.lr = {tc.lr:g}, lr_eta = {tc.lr_eta:g}, lr_hyper = "
        f"{tc.lr_hyper:g}), too coarse an integrator step (model.integrator_steps = "
        f"{mc.integrator_steps} per dt = {config.data.dt:g}) or badly scaled data; {kept}: "
        f"change the [train] settings in the config and continue with `pyro-razor run CONFIG "
        f"--out {run.root} --resume --warm-start`"
    )


def run_experiment(
    config: ExperimentConfig,
    out_dir: str | os.PathLike,
    device: str | None = None,
    seed: int | None = None,
    epochs: int | None = None,
    resume: bool = False,
    progress: bool = True,
    overwrite: bool = False,
    figures: bool = True,
    warm_start: bool = False,
    report: Callable[[str], None] | None = None,
    jobs: int = 1,
) -> dict:
    """Train, evaluate and analyse every variant of ``config``; write ``out_dir``.

    Every check runs before anything is written or built: the device, the output path, the
    saved config and (on resume) every checkpoint and metrics file, and the memory estimate
    (:func:`pyro_razor.inference.memory.estimate_memory`) against the memory available.

    Args:
        config: the experiment.
        out_dir: output directory (created); see :class:`~pyro_razor.runs.rundir.RunDir`.
        device, seed, epochs: overrides (see :func:`resolve_config`).
        resume: continue every unfinished variant from its checkpoint, skip finished ones
            (their saved metrics are reused); the config must match the saved one (except
            the device).
        progress: show progress bars.
        overwrite: replace an existing run in ``out_dir`` (otherwise that is an error).
        figures: draw the figures (``False`` saves a few seconds; ``pyro-razor analyse``
            draws them later).
        warm_start: with ``resume``: the ``[train]`` settings may differ from the saved
            config (learning rates, epochs, schedule, ...); every variant whose checkpoint has
            fewer than ``train.epochs`` epochs continues from its parameters, RNG states and
            history with a fresh optimiser (:func:`pyro_razor.inference.train`), e.g. after a
            divergence with lower learning rates. Data, model, guide and evaluation must match.
        report: called once with a one-line memory estimate before any work (e.g. ``print``).
        jobs: variants trained, evaluated and analysed side by side in this many worker
            processes (:mod:`pyro_razor.runs.parallel`; the cores are shared among them);
            their lines are reported as each finishes. 1: one after another, here.

    Under ``torchrun`` (after :func:`pyro_razor.inference.distributed.init_from_env`) every
    rank runs the checks and trains every variant on its share of each minibatch; rank 0 alone
    reports, writes the run directory and evaluates (the others return a summary without
    metrics).

    Sets the allocator to keep freed pages (:func:`~pyro_razor.allocator.keep_freed_memory`).

    Returns:
        The summary dict (also written to ``summary.json``).

    Raises:
        RunError: device not available, bad output path, ``out_dir`` holds another run,
            resume mismatch, a damaged run file, not enough memory, or a variant diverged
            (the message says where, what is kept and how to continue).
        ConfigError: an override is invalid.
    """
    config = resolve_config(config, device=device, seed=seed, epochs=epochs)
    if warm_start and not resume:
        raise RunError("--warm-start continues a run: pass it together with --resume")
    if jobs < 1:
        raise RunError(f"--jobs must be at least 1, got {jobs}")
    if jobs > 1 and distributed.world_size() > 1:
        raise RunError("--jobs runs variants in worker processes; under torchrun use --jobs 1")
    jobs = min(jobs, len(config.variants))
    dev = resolve_device(config.device)
    run = RunDir(out_dir)
    # Under torchrun every rank checks before rank 0, the only writer, writes anything.
    memory_line = distributed.on_every_rank(
        lambda: _check_before_work(run, config, dev, resume, overwrite, warm_start, jobs))
    main = distributed.is_main_process()
    if report is not None and main:
        report(memory_line)
    if main:
        try:
            run.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunError(f"cannot create output directory {run.root}: {exc.strerror}; "
                           "choose another --out") from exc
        run.write_config(config)

    keep_freed_memory()
    data = RunData.load(config.data, dev, config.torch_dtype)
    system = data.system
    summary = {
        "experiment": config.name,
        "system": config.data.source,
        "device": str(dev),
        "dtype": config.dtype,
        "n_train_transitions": data.n_transitions,
        "pyro_razor_version": __version__,
        "variants": {},
    }
    say = report if (report is not None and main) else (lambda line: None)
    if jobs > 1:
        artefacts = _run_variants_in_processes(config, run, (resume, warm_start), jobs,
                                               summary, say)
    else:
        artefacts = {}
        for variant in config.variants:
            metrics, art = _run_variant(config, variant, system, data, dev, run,
                                        (resume, warm_start), progress, say)
            summary["variants"][variant] = metrics
            artefacts[variant] = art
            if main:
                run.write_summary(summary)
                say(variant_line(variant, metrics))
    if figures and main:
        make_figures(run, config, system, data, artefacts)
    return summary


def _variant_task(config, variant, out_dir, resuming):
    """One variant in a worker process (:func:`_run_variant` on freshly loaded data):
    ``(metrics, artefacts, lines)``."""
    dev = resolve_device(config.device)
    data = RunData.load(config.data, dev, config.torch_dtype)
    lines: list[str] = []
    metrics, art = _run_variant(config, variant, data.system, data, dev, RunDir(out_dir),
                                resuming, False, lines.append)
    return metrics, art, lines


def _run_variants_in_processes(config, run: RunDir, resuming, jobs, summary, say) -> dict:
    """Every variant in ``jobs`` worker processes, the costliest first (by the activation
    memory of one step, which grows with the rows an SVI step pushes through the network);
    fills ``summary`` in the config's order and returns the artefacts."""
    order = sorted(config.variants,
                   key=lambda v: -estimate_variant_memory(config, v).activations)
    threads = default_threads(jobs)
    say(f"{', '.join(order)}: in {jobs} worker processes, {threads} torch thread(s) each; "
        "each variant's lines come when it finishes")
    tasks = [(config, v, str(run.root), resuming) for v in order]
    results = {}
    for i, (metrics, art, lines) in run_in_processes(_variant_task, tasks, jobs, threads):
        variant = order[i]
        results[variant] = metrics, art
        for line in lines:
            say(line)
        summary["variants"] = {v: results[v][0] for v in config.variants if v in results}
        run.write_summary(summary)
        say(variant_line(variant, metrics))
    return {v: results[v][1] for v in config.variants}


def _run_variant(config, variant, system, data: RunData, dev, run: RunDir, resuming, progress,
                 say=lambda line: None):
    """Train (or reuse), evaluate and analyse one variant: ``(metrics, artefacts)``.

    The runtime warnings it raises (e.g. a posterior scale capped by the step budget) are
    kept in ``metrics["warnings"]`` (each once, in ``metrics.json`` and ``summary.json``)
    and raised again, so that they are shown and callers can still catch them."""
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            metrics, art = _train_and_evaluate(config, variant, system, data, dev, run,
                                               resuming, progress, say)
    finally:  # shown as if never caught (the caller's filters decide), even after an error
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    texts = [str(w.message) for w in caught
             if issubclass(w.category, RuntimeWarning | UserWarning)]
    if distributed.is_main_process():  # metrics.json written once, with the warnings
        metrics["warnings"] = list(dict.fromkeys(metrics.get("warnings", []) + texts))
        run.write_json(variant, "metrics.json", metrics)
    return metrics, art


def _train_and_evaluate(config, variant, system, data: RunData, dev, run: RunDir, resuming,
                        progress, say):
    """Train (or reuse) and evaluate one variant; ``metrics`` are returned unwritten
    (:func:`_run_variant` writes ``metrics.json`` once, with the warnings)."""
    resume, warm_start = resuming
    if distributed.is_main_process():
        run.variant(variant).mkdir(parents=True, exist_ok=True)
    ckpt_path = run.checkpoint(variant)
    model, guide = fresh_variant(config, variant, system, dev, data.states, data.next_states)
    ckpt = run.read_checkpoint(variant) if resume and ckpt_path.is_file() else None
    finished = ckpt is not None and ckpt["epoch"] >= config.train.epochs
    if finished:
        inference.restore_checkpoint(ckpt, model, guide, device=data.states.device,
                                     refresh_with=(data.states[:1],))
        history = list(ckpt["history"])
    else:
        try:
            result = inference.train(
                model, guide, data.states, data.next_states, config.train,
                checkpoint=ckpt_path, resume=ckpt is not None, warm_start=warm_start,
                progress=progress, description=f"{config.name}/{variant}",
            )
        except TrainingDiverged as exc:
            raise RunError(_diverged(exc, config, variant, run)) from exc
        except ValueError as exc:
            if "cannot resume" in str(exc):
                raise RunError(str(exc)) from exc
            raise
        history = result.history
    if not distributed.is_main_process():  # under torchrun the other ranks only train
        return {}, VariantArtefacts(history=history)
    run.write_history(variant, history)
    saved = run.file(variant, "metrics.json")
    if finished and saved.is_file():
        say(f"{variant}: finished earlier; its training and evaluation are reused")
        metrics = run.read_metrics(variant)
    else:
        if finished:
            say(f"{variant}: training finished earlier; evaluating it again")
        ev = config.evaluation
        say(f"{variant}: evaluating ({ev.num_samples} weight draws x {ev.tau_samples} symmetry "
            f"samples on the training and {len(data.tests)} test set(s), then rollouts and "
            "analysis)")
        start = time.perf_counter()
        metrics = evaluate_variant(config, model, guide, data, history)
        rollouts = min(ev.rollout_trajectories, data.test.shape[0])
        say(f"{variant}: metrics in {time.perf_counter() - start:.0f} s; now {rollouts} "
            f"long-horizon rollouts of {ev.rollout_points} points and the analysis")
    art = VariantArtefacts(history=history)
    metrics.update(analyse_variant(config, variant, system, model, guide, data, run, art))
    return metrics, art
