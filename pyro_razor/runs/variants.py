"""Build a model variant and its guide from an experiment config, fresh or from a run.

:func:`build_model` and :func:`build_guide` turn config names into objects through
:mod:`pyro_razor.runs.registry`; :func:`fresh_variant` gives a model and guide in a clean param
store under the run's seed (what training and the benchmark start from); :func:`load_variant`
rebuilds a trained variant from a run directory for prediction and analysis.
"""

from __future__ import annotations

import os

import pyro
import pyro.poutine as poutine
import torch

from pyro_razor.inference import load_checkpoint, restore_checkpoint
from pyro_razor.models import NoetherRazorModel
from pyro_razor.runs.config import ExperimentConfig, load_experiment
from pyro_razor.runs.data import RunData
from pyro_razor.runs.device import usable_device
from pyro_razor.runs.errors import RunError
from pyro_razor.runs.registry import GUIDES, MEASURES, NOISES, PRIORS, VARIANTS
from pyro_razor.runs.rundir import RunDir
from pyro_razor.systems import HamiltonianSystem, TrajectoryData, make_dataset

__all__ = ["build_guide", "build_model", "fresh_variant", "load_run_config", "load_variant"]


def build_model(
    config: ExperimentConfig,
    variant: str,
    system: HamiltonianSystem,
    device: torch.device | str = "cpu",
) -> NoetherRazorModel:
    """The model of one variant, on ``device`` in ``config.dtype``.

    ``"vanilla"``: no symmetrisation (``K = 0``); ``"learned"``: ``model.num_quantities``
    learnable quadratic quantities initialised from ``N(0, eta_init_std^2)`` with
    ``eta_seed``; ``"oracle"``: the system's ground-truth generators, fixed.
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
        integrator=mc.integrator,
        integrator_steps=mc.integrator_steps,
        checkpoint_steps=mc.checkpoint_steps,
    )
    model = VARIANTS[variant](system.phase_dim, config.data.dt, system, mc, **kwargs)
    return model.to(device=torch.device(device), dtype=config.torch_dtype)


def build_guide(config: ExperimentConfig, model: NoetherRazorModel):
    """The guide named by ``config.guide.kind`` for ``model`` (network weights only)."""
    return GUIDES[config.guide.kind](model, config.guide)


def fresh_variant(config, variant, system, device, states, next_states):
    """Clear the param store, seed, build model and guide, and create the guide's params."""
    pyro.clear_param_store()
    pyro.set_rng_seed(config.train.seed)
    model = build_model(config, variant, system, device)
    guide = build_guide(config, model)
    with poutine.block(), torch.no_grad():
        guide(states[:1], next_states[:1])
    return model, guide


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
) -> tuple[ExperimentConfig, TrajectoryData, NoetherRazorModel, object]:
    """Rebuild a trained variant from ``run_dir`` for prediction.

    Reads ``config.toml``, regenerates (or loads from the cache) the dataset, builds the model
    and guide and restores the checkpoint's param store and buffers (prior variances, noise).

    Args:
        run_dir: a directory written by :func:`pyro_razor.runs.run_experiment`.
        variant: ``"vanilla"``, ``"learned"`` or ``"oracle"``.
        device: where to put the model (default: the run's device, or the CPU if that is not
            available here).

    Returns:
        ``(config, data, model, guide)``; ``data`` is the float64 CPU
        :class:`~pyro_razor.systems.TrajectoryData`; model and guide are on ``device`` in the
        run's dtype.

    Raises:
        FileNotFoundError: no ``config.toml`` or no checkpoint for ``variant``.
        RunError: ``variant`` is not part of the run.
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
    dev = usable_device(config.device, device)
    raw = make_dataset(config.data.spec())
    system = raw.spec.make_system()
    data = RunData.make(raw, dev, config.torch_dtype)
    model, guide = fresh_variant(config, variant, system, dev, data.states, data.next_states)
    restore_checkpoint(load_checkpoint(ckpt_path), model, guide, device=dev,
                       refresh_with=(data.states[:1],))
    return config, raw, model, guide
