"""Build a model variant and its guide from an experiment config, fresh or from a run.

:func:`build_model` and :func:`build_guide` turn config names into objects through
:mod:`pyro_razor.runs.registry`; :func:`fresh_variant` gives a model and guide in a clean param
store under the run's seed (what training and the benchmark start from); :func:`load_variant`
rebuilds a trained variant from a run directory for prediction and analysis.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import pyro
import pyro.poutine as poutine
import torch

from pyro_razor.inference import restore_checkpoint
from pyro_razor.inference.memory import (
    MemoryEstimate,
    available_memory,
    estimate_memory,
    format_bytes,
    format_memory,
)
from pyro_razor.models import NoetherRazorModel
from pyro_razor.runs.config import ExperimentConfig, load_experiment
from pyro_razor.runs.data import RunData
from pyro_razor.runs.device import usable_device
from pyro_razor.runs.errors import RunError
from pyro_razor.runs.registry import GUIDES, MEASURES, NOISES, PRIORS, VARIANTS
from pyro_razor.runs.rundir import RunDir
from pyro_razor.systems import HamiltonianSystem

__all__ = [
    "build_guide",
    "build_model",
    "check_memory",
    "estimate_variant_memory",
    "fresh_variant",
    "load_run_config",
    "load_variant",
    "training_trajectories",
]


def build_model(
    config: ExperimentConfig,
    variant: str,
    system: HamiltonianSystem | None,
    device: torch.device | str = "cpu",
    phase_dim: int | None = None,
    trajectories: torch.Tensor | None = None,
) -> NoetherRazorModel:
    """The model of one variant, on ``device`` in ``config.dtype``, for phase dimension
    ``phase_dim`` (default the system's; file data have no system).

    ``"vanilla"``: no symmetrisation (``K = 0``); ``"learned"``: ``model.num_quantities``
    learnable quantities of ``model.quantity_family`` (quadratic with exact flows, or
    polynomial of degree ``model.quantity_degree`` with integrated flows:
    :data:`~pyro_razor.runs.registry.QUANTITY_FAMILIES`) started as ``model.eta_init`` says
    (from ``N(0, eta_init_std^2)`` with ``eta_seed``, or at the direct estimate's candidates
    on the training ``trajectories (B, n, M)``); ``"oracle"``: the system's ground-truth
    generators, fixed.
    Call ``pyro.clear_param_store()`` and ``pyro.set_rng_seed`` first (see
    :func:`fresh_variant`).
    """
    mc = config.model
    kwargs = dict(
        hidden=mc.hidden,
        activation=mc.activation,
        elu_alpha=mc.elu_alpha,
        prior=PRIORS[mc.prior](mc),
        noise=NOISES[mc.noise](mc.noise_variance),
        measure=MEASURES[mc.measure](mc.measure_scale),
        tau_samples=mc.tau_samples,
        tau_antithetic=mc.tau_antithetic,
        integrator=mc.integrator,
        integrator_steps=mc.integrator_steps,
        checkpoint_steps=mc.checkpoint_steps,
    )
    M = system.phase_dim if phase_dim is None else phase_dim
    model = VARIANTS[variant](M, config.data.dt, system, mc, trajectories, **kwargs)
    return model.to(device=torch.device(device), dtype=config.torch_dtype)


def build_guide(config: ExperimentConfig, model: NoetherRazorModel):
    """The guide named by ``config.guide.kind`` for ``model`` (network weights only)."""
    return GUIDES[config.guide.kind](model, config.guide)


def training_trajectories(states: torch.Tensor, next_states: torch.Tensor):
    """``(B, n, M)`` trajectories of transitions ``(B, n - 1, M)`` that keep them (else
    ``None``): what a data-derived start of the learned quantities is computed from."""
    if states.dim() != 3:
        return None
    return torch.cat([states, next_states[:, -1:]], dim=1)


def fresh_variant(config, variant, system, device, states, next_states):
    """Clear the param store, seed, build model and guide, and create the guide's params."""
    pyro.clear_param_store()
    pyro.set_rng_seed(config.train.seed)
    model = build_model(config, variant, system, device, phase_dim=states.shape[-1],
                        trajectories=training_trajectories(states, next_states))
    guide = build_guide(config, model)
    with poutine.block(), torch.no_grad():
        guide(states[:1], next_states[:1])
    return model, guide


def _num_quantities(config: ExperimentConfig, variant: str, system: HamiltonianSystem) -> int:
    """``K`` of a variant: 0 (vanilla), ``model.num_quantities`` or the oracle's generators."""
    if variant == "vanilla":
        return 0
    if variant == "learned":
        return config.model.num_quantities
    if variant == "oracle":
        return system.oracle_generators().shape[0]
    return system.generators().shape[0]


def estimate_variant_memory(config: ExperimentConfig, variant: str) -> MemoryEstimate:
    """The memory of training ``variant`` of ``config``
    (:func:`pyro_razor.inference.memory.estimate_memory`), from the config alone: no data,
    model or guide is built."""
    system = config.data.make_system() if variant.startswith("oracle") else None
    shapes, mc, tc = config.data.shapes(), config.model, config.train
    vectorised = tc.vectorize_particles and tc.num_particles > 1
    (n_train, train_points), test = shapes["train"], shapes["test"]
    splits = [(n_train, train_points)] + [test] * (1 + shapes["extra"])
    return estimate_memory(
        phase_dim=shapes["phase_dim"],
        hidden=mc.hidden,
        num_quantities=_num_quantities(config, variant, system),
        tau_samples=mc.tau_samples,
        particles=tc.num_particles if vectorised else 1,
        batch_points=tc.batch_trajectories(n_train) * (train_points - 1),
        integrator=mc.integrator,
        integrator_steps=mc.integrator_steps,
        checkpoint_steps=mc.checkpoint_steps,
        splits=splits,
        guide=config.guide.kind,
        guide_rank=config.guide.rank,
        dtype_bytes=torch.tensor([], dtype=config.torch_dtype).element_size(),
        device_type=torch.device(config.device).type,
    )


def check_memory(
    config: ExperimentConfig, device: torch.device | str, variants: Sequence[str] | None = None,
    jobs: int = 1,
) -> str:
    """Refuse a config whose training cannot fit the memory available on ``device``
    (:func:`~pyro_razor.inference.memory.available_memory`): the largest estimate of its
    ``variants`` (default all), trained one after another, must fit; with ``jobs`` variants
    trained side by side (``run --jobs``), the sum of the ``jobs`` largest.

    Returns:
        The estimate as one line, e.g. ``"name: memory estimate 1.2 GiB (...); 60 GiB
        available"``.

    Raises:
        RunError: it does not fit; the message names the settings to lower.
    """
    estimates = sorted((estimate_variant_memory(config, v) for v in variants or config.variants),
                       key=lambda e: -e.total)
    estimate, available = estimates[0], available_memory(device)
    together = sum(e.total for e in estimates[:jobs])
    if available is not None and together > available and jobs > 1:
        raise RunError(
            f"experiment {config.name!r} does not fit in memory with {jobs} variants at once: "
            f"{format_bytes(together)} needed, {format_bytes(available)} available on "
            f"{device}; use fewer --jobs"
        )
    if available is not None and estimate.total > available:
        raise RunError(
            f"experiment {config.name!r} does not fit in memory: "
            f"{format_memory(estimate, available)} on {device}; "
            f"{_memory_hint(config, estimate, available)}"
        )
    line = f"{config.name}: {format_memory(estimate, available)}"
    if jobs > 1:
        line += f"; {format_bytes(together)} for {jobs} variants at once"
    return line


def _memory_hint(config: ExperimentConfig, estimate: MemoryEstimate, available: int) -> str:
    """What to change: for the largest part of the estimate and every part that alone exceeds
    the ``available`` bytes."""
    dc, mc = config.data, config.model
    parts = estimate.parts()
    parts["parameters"] += parts.pop("optimizer")
    hints = {
        "parameters": f"use a smaller network (model.hidden = {list(mc.hidden)})",
        "data": (f"use fewer or shorter trajectories (data.n_train = {dc.n_train}, "
                 f"train_points = {dc.train_points}, n_test = {dc.n_test}, test_points = "
                 f"{dc.test_points})"),
        "activations": (f"lower model.tau_samples ({mc.tau_samples}), train.num_particles "
                        f"({config.train.num_particles}), train.batch_size or "
                        f"model.integrator_steps ({mc.integrator_steps}), or the widths "
                        f"model.hidden = {list(mc.hidden)}"
                        + ("" if mc.checkpoint_steps else
                           ", or set model.checkpoint_steps = true")),
    }
    largest = max(parts, key=parts.get)
    return "; ".join(hint for part, hint in hints.items()
                     if part == largest or parts[part] > available)


def load_run_config(run: RunDir) -> ExperimentConfig:
    """The resolved config of a run directory."""
    if not run.config_path.is_file():
        raise FileNotFoundError(
            f"{run.root} is not a pyro-razor run directory: {run.config_path.name} is missing "
            "(create one with `pyro-razor run CONFIG --out DIR`)"
        )
    return load_experiment(run.config_path)


def load_variant(
    run_dir: str | os.PathLike, variant: str, device: str | None = None
) -> tuple[ExperimentConfig, RunData, NoetherRazorModel, object]:
    """Rebuild a trained variant from ``run_dir`` for prediction.

    Reads ``config.toml``, regenerates (or loads from the cache) the dataset, builds the model
    and guide and restores the checkpoint's param store and buffers (prior variances, noise).

    Args:
        run_dir: a directory written by :func:`pyro_razor.runs.run_experiment`.
        variant: ``"vanilla"``, ``"learned"`` or ``"oracle"``.
        device: where to put the model (default: the run's device, or the CPU if that is not
            available here).

    Returns:
        ``(config, data, model, guide)``; ``data`` is the run's
        :class:`~pyro_razor.runs.data.RunData` (float64 trajectories in model units, the true
        system or ``None``, the units' scaling); model and guide are on ``device`` in the
        run's dtype.

    Raises:
        FileNotFoundError: no ``config.toml`` or no checkpoint for ``variant``.
        RunError: ``variant`` is not part of the run, or its checkpoint is unreadable.
    """
    run = RunDir(run_dir)
    config = load_run_config(run)
    if variant not in config.variants:
        raise RunError(
            f"variant {variant!r} is not part of the run in {run.root}; it has "
            f"{', '.join(config.variants)}"
        )
    ckpt_path = run.checkpoint(variant)
    if not ckpt_path.is_file():
        raise FileNotFoundError(
            f"no checkpoint for variant {variant!r} in {run.root} ({ckpt_path} is missing); "
            "train it first with `pyro-razor run` (or --resume an interrupted run)"
        )
    ckpt = run.read_checkpoint(variant)
    dev = usable_device(config.device, device)
    data = RunData.load(config.data, dev, config.torch_dtype)
    model, guide = fresh_variant(config, variant, data.system, dev, data.states,
                                 data.next_states)
    restore_checkpoint(ckpt, model, guide, device=dev, refresh_with=(data.states[:1],))
    return config, data, model, guide
