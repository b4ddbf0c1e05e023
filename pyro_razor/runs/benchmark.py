"""Speed and memory of SVI steps (``pyro-razor bench``).

For each case (an experiment config and one of its variants) the benchmark builds the model and
guide exactly as :func:`pyro_razor.runs.run_experiment` does, runs ``warmup`` untimed SVI
steps and then ``steps`` timed ones (each a :class:`pyro_razor.inference.TrainingStep`, the step
:func:`pyro_razor.inference.train` takes: one ``svi.step`` on a minibatch, the cosine schedule,
the closed-form prior update and the noise update) and reports the median seconds per step and
the peak memory:

- CUDA: ``torch.cuda.max_memory_allocated`` over the timed steps;
- CPU: the process' peak resident set size (``getrusage(RUSAGE_SELF).ru_maxrss``) after the
  case, and by how much this case raised it (0 when an earlier case had a higher peak);

beside the estimate of :func:`pyro_razor.inference.memory.estimate_memory` (the column
``est. MiB``). Cases whose estimate exceeds the memory available are refused before any case
runs.

Built-in reference cases reproduce the four configurations of the paper's tables whose speed
was measured for the reference JAX code on 2-core CPUs (float32, jit). The
Table 2 and 3 cases use 20 trajectories x 50 transitions, i.e. exactly one minibatch of the
paper's setting (B = 20 trajectories), so a step does the same work as in the paper's runs.
They are paper scale: 10-20 Euler steps of ``S x particles x points`` symmetrised network
evaluations (~10^5 rows per evaluation) take tens of seconds per step on a 2-core CPU; the fast
path (:mod:`pyro_razor.models.fast_gradient`) keeps their memory below 1 GiB.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from pyro_razor.configio import replace_path
from pyro_razor.inference import TrainConfig, TrainingStep
from pyro_razor.runs.config import (
    DataConfig,
    EvaluationConfig,
    ExperimentConfig,
    GuideConfig,
    ModelConfig,
    load_experiment,
)
from pyro_razor.runs.data import RunData
from pyro_razor.runs.device import resolve_device
from pyro_razor.runs.errors import RunError
from pyro_razor.runs.variants import check_memory, estimate_variant_memory, fresh_variant

__all__ = [
    "BenchCase",
    "BenchResult",
    "bench_case",
    "seconds_per_step",
    "format_bench",
    "reference_cases",
    "run_benchmark",
]


@dataclass(frozen=True)
class BenchCase:
    """One timed configuration: ``config`` trained as ``variant``.

    Attributes:
        name: label in the table.
        config: the experiment config (its ``device`` is used unless overridden).
        variant: ``"vanilla"``, ``"learned"`` or ``"oracle"``.
        reference_s: the reference implementation's seconds per step as quoted from another
            machine, if known.
    """

    name: str
    config: ExperimentConfig
    variant: str
    reference_s: float | None = None


@dataclass(frozen=True)
class BenchResult:
    """Timing of one :class:`BenchCase`.

    Attributes:
        name, variant, device: what was timed where.
        seconds_per_step: median over the timed steps.
        min_seconds: fastest timed step.
        steps: number of timed steps.
        peak_memory_mb: CUDA: peak allocated memory during the timed steps; CPU: the
            process' peak resident set size after the case.
        memory_increase_mb: CPU: how much this case raised the process' peak RSS (``None``
            on CUDA).
        reference_s: the reference implementation's seconds per step as quoted from a
            measurement on another machine, if known (printed as a quote, never as a ratio).
        estimate_mb: the memory estimate of training the case
            (:func:`~pyro_razor.runs.variants.estimate_variant_memory`).
    """

    name: str
    variant: str
    device: str
    seconds_per_step: float
    min_seconds: float
    steps: int
    peak_memory_mb: float
    memory_increase_mb: float | None
    reference_s: float | None
    estimate_mb: float | None = None


def _reference_config(name, data, model, train, variants) -> ExperimentConfig:
    return ExperimentConfig(
        name=name,
        variants=variants,
        data=data,
        model=model,
        guide=GuideConfig(kind="matrix_normal"),
        train=TrainConfig(**train),
        evaluation=EvaluationConfig(),
        device="cpu",
        dtype="float32",
    )


def reference_cases() -> list[BenchCase]:
    """The four reference configurations with the reference code's seconds per step as quoted
    from a measurement on another 2-core CPU (not comparable with a local figure): Table 1
    learned (26.5 s) and vanilla (0.68 s), Table 2 with ``n = 3`` learned (69 s), Table 3
    learned (69 s)."""
    sho = DataConfig(system="sho", n_train=7, train_points=5, n_test=10, test_points=21, dt=0.2)
    sho_model = ModelConfig(
        hidden=(200, 200), elu_alpha=2.0, tau_samples=200, measure="cube",
        integrator_steps=20, num_quantities=1, prior="closed_form",
    )
    table1 = _reference_config(
        "ref_table1", sho, sho_model, dict(num_particles=20), ("vanilla", "learned")
    )
    osc = DataConfig(
        system="oscillators", system_params={"n": 3}, n_train=20, train_points=51, n_test=10,
        test_points=51, dt=0.3,
    )
    osc_model = ModelConfig(
        hidden=(200, 200, 200), elu_alpha=1.0, tau_samples=100, measure="ball",
        integrator_steps=20, num_quantities=30, prior="closed_form",
    )
    table2 = _reference_config(
        "ref_table2_n3", osc, osc_model, dict(num_particles=2, batch_size=20), ("learned",)
    )
    body = DataConfig(
        system="nbody", system_params={"n": 3, "dim": 2}, n_train=20, train_points=51,
        n_test=10, test_points=51, dt=0.3,
    )
    body_model = ModelConfig(
        hidden=(250, 250, 250, 250), elu_alpha=1.0, tau_samples=100, measure="ball",
        integrator_steps=10, num_quantities=10, eta_init_std=0.01, prior="closed_form",
    )
    table3 = _reference_config(
        "ref_table3", body, body_model, dict(num_particles=2, batch_size=20), ("learned",)
    )
    return [
        BenchCase("ref_table1_learned", table1, "learned", 26.5),
        BenchCase("ref_table1_vanilla", table1, "vanilla", 0.68),
        BenchCase("ref_table2_n3_learned", table2, "learned", 69.0),
        BenchCase("ref_table3_learned", table3, "learned", 69.0),
    ]


def _max_rss_mb() -> float:
    """The process' peak resident set size in MiB (Linux reports KiB, macOS bytes)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_case(
    case: BenchCase, steps: int = 5, warmup: int = 1, device: str | None = None
) -> BenchResult:
    """Time ``steps`` SVI steps of ``case`` after ``warmup`` untimed ones.

    Args:
        case: what to time.
        steps: timed steps (>= 1); the median is reported.
        warmup: untimed steps first (>= 0; the first step also builds the guide's state).
        device: overrides the config's device.
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"need steps >= 1 and warmup >= 0, got {steps} and {warmup}")
    config = case.config if device is None else replace_path(case.config, "device", device)
    dev = resolve_device(config.device)
    rss_before = _max_rss_mb()
    data = RunData.load(config.data, dev, config.torch_dtype)
    system = data.system
    model, guide = fresh_variant(config, case.variant, system, dev, data.states, data.next_states)
    T = data.states.shape[0]
    B = config.train.batch_trajectories(T)
    train_step = TrainingStep(model, guide, config.train, total_steps=warmup + steps)
    order = torch.Generator().manual_seed(config.train.seed)

    def step() -> None:
        idx = torch.randperm(T, generator=order)[:B].to(dev)
        train_step(data.states, data.next_states, subsample=None if B == T else idx)

    torch.set_flush_denormal(True)  # as inference.train does
    for _ in range(warmup):
        step()
    _sync(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        _sync(dev)
        times.append(time.perf_counter() - start)
    if dev.type == "cuda":
        peak, increase = torch.cuda.max_memory_allocated(dev) / 2**20, None
    else:
        peak = _max_rss_mb()
        increase = peak - rss_before
    return BenchResult(
        name=case.name,
        variant=case.variant,
        device=str(dev),
        seconds_per_step=statistics.median(times),
        min_seconds=min(times),
        steps=steps,
        peak_memory_mb=peak,
        memory_increase_mb=increase,
        reference_s=case.reference_s,
        estimate_mb=estimate_variant_memory(config, case.variant).total / 2**20,
    )


def seconds_per_step(config: ExperimentConfig, variants: Sequence[str], steps: int = 5,
                     warmup: int = 2) -> dict[str, float]:
    """Median seconds per SVI step of each variant of ``config``, from ``steps`` timed steps
    after ``warmup`` untimed ones (:func:`bench_case`; the first steps allocate and are
    slower): what a run's time estimate is made of. Each variant is built fresh (the param
    store is cleared), so call it before training."""
    return {v: bench_case(BenchCase(config.name, config, v), steps=steps,
                          warmup=warmup).seconds_per_step
            for v in variants}


def run_benchmark(
    configs: Sequence[str] = (),
    steps: int = 5,
    warmup: int = 1,
    device: str | None = None,
    reference: bool = False,
    progress: bool = True,
    cases: Sequence[str] = (),
    checkpoint_steps: bool = False,
) -> list[BenchResult]:
    """Benchmark every variant of each config file, and the reference cases if ``reference``
    (only those named in ``cases``, if given). ``checkpoint_steps`` turns on activation
    checkpointing of the integrator sub-steps in every case (memory / sub-steps).

    The device (``device`` or each config's own), the case names and every case's memory
    estimate (:func:`~pyro_razor.runs.variants.check_memory`) are checked before any work.
    """
    if device is not None:
        resolve_device(device)
    builtin = {c.name: c for c in reference_cases()}
    unknown = sorted(set(cases) - set(builtin))
    if unknown:
        raise RunError(
            f"unknown benchmark case(s) {unknown}; built-in cases: {', '.join(builtin)}"
        )
    todo = []
    for path in configs:
        config = load_experiment(path)
        if device is None:
            resolve_device(config.device)
        todo += [BenchCase(config.name, config, v) for v in config.variants]
    if reference:
        todo += [c for name, c in builtin.items() if not cases or name in cases]
    if checkpoint_steps:
        todo = [
            BenchCase(c.name + "+ckpt", replace_path(c.config, "model.checkpoint_steps", True),
                      c.variant, c.reference_s)
            for c in todo
        ]
    for case in todo:  # refuse impossible cases before timing any
        config = case.config if device is None else replace_path(case.config, "device", device)
        try:
            check_memory(config, resolve_device(config.device), [case.variant])
        except RunError as exc:
            raise RunError(f"bench case {case.name!r} ({case.variant}): {exc}; or leave it out "
                           "(--case NAME picks built-in cases)") from exc
    results = []
    for case in todo:
        if progress:
            print(f"bench: {case.name} ({case.variant}) ...", file=sys.stderr, flush=True)
        results.append(bench_case(case, steps=steps, warmup=warmup, device=device))
    return results


def format_bench(results: Sequence[BenchResult]) -> str:
    """The results as a markdown table.

    The reference implementation's seconds per step are quoted from a measurement on another
    machine, so they sit in a column labelled as such and no ratio to our figure is printed:
    speeds compare only side by side on one machine in one session."""
    lines = [
        "| case | variant | device | s/step (median) | s/step (min) | steps | peak mem MiB "
        "| +peak MiB | est. MiB | reference s/step, quoted from another machine |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ref = "" if r.reference_s is None else f"{r.reference_s:g} (quoted)"
        inc = "" if r.memory_increase_mb is None else f"{r.memory_increase_mb:.0f}"
        est = "" if r.estimate_mb is None else f"{r.estimate_mb:.3g}"
        lines.append(
            f"| {r.name} | {r.variant} | {r.device} | {r.seconds_per_step:.4g} | "
            f"{r.min_seconds:.4g} | {r.steps} | {r.peak_memory_mb:.0f} | {inc} | {est} | {ref} |"
        )
    return "\n".join(lines) + "\n"
