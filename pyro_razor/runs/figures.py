"""The figures of a run, drawn from what its variants contributed (``<run>/figures/``)."""

from __future__ import annotations

import functools
import warnings

import torch

from pyro_razor import plotting
from pyro_razor.inference import hamiltonian_energy
from pyro_razor.runs.config import VARIANT_LABELS, ExperimentConfig
from pyro_razor.runs.data import RunData
from pyro_razor.runs.results import VariantArtefacts
from pyro_razor.runs.rundir import RunDir
from pyro_razor.systems import HamiltonianSystem

__all__ = ["make_figures"]


def _figure(name: str, fn, *args, **kwargs) -> None:
    """Draw one figure; a plotting failure warns instead of losing a finished run."""
    try:
        fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - figures must never lose results
        warnings.warn(f"figure {name} failed: {type(exc).__name__}: {exc}", RuntimeWarning,
                      stacklevel=2)


def make_figures(
    run: RunDir, config: ExperimentConfig, system: HamiltonianSystem | None, data: RunData,
    artefacts: dict[str, VariantArtefacts],
) -> None:
    """Training curves, singular values and generators (learned variants), rollouts,
    conservation drift and, for 2-d phase spaces, phase portraits (paper Figures 2-5)."""
    run.figures.mkdir(parents=True, exist_ok=True)
    labels = list(data.names)
    _figure("training_curves", plotting.plot_training_curves,
            {v: a.history for v, a in artefacts.items()}, run.figure("training_curves.png"))
    learned = {v: a for v, a in artefacts.items() if a.analysis is not None}
    if learned:
        _figure("singular_values", plotting.plot_singular_values,
                {v: a.analysis for v, a in learned.items()}, run.figure("singular_values.png"),
                reference_levels=(config.evaluation.parallel_level,))
        for v, a in learned.items():
            _figure("generators", plotting.plot_generators, a.generators, a.analysis, labels,
                    run.figure(f"generators_{v}.png"))
    rollouts = {v: a.longterm for v, a in artefacts.items() if a.longterm is not None}
    if rollouts:
        first = next(iter(rollouts.values()))
        _figure("rollouts", plotting.plot_rollouts, first["times"], first["truth"][0],
                {v: r["prediction"][0] for v, r in rollouts.items()}, labels,
                run.figure("rollouts.png"))
        if first["drift"]:  # known conserved quantities to follow
            _figure("conservation_drift", plotting.plot_conservation_drift, first["times"],
                    {v: r["drift"] for v, r in rollouts.items()},
                    run.figure("conservation_drift.png"))
    if data.phase_dim == 2:
        hamiltonians = {
            VARIANT_LABELS[v]: functools.partial(hamiltonian_energy, a.hamiltonian)
            for v, a in artefacts.items() if a.hamiltonian is not None
        }
        if system is not None:
            hamiltonians["True H"] = data.scaling.scaled_hamiltonian(system.H)
        extent = 1.25 * float(data.train.abs().max())
        _figure("phase_portraits", plotting.plot_phase_portraits, hamiltonians, data.train,
                extent, run.figure("phase_portraits.png"), resolution=config.evaluation.grid,
                dtype=torch.float64)
