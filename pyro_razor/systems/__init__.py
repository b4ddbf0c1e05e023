"""Hamiltonian systems, their ground-truth conserved quantities, and exact trajectory data.

- :mod:`.base`: :class:`HamiltonianSystem` (any differentiable ``H``) and
  :func:`gaussian_initial`.
- :mod:`.builtin`: the paper's systems (simple harmonic oscillator, ``n`` oscillators,
  ``n`` bodies) with the quantities of appendix B; :func:`make_system` by name.
- :mod:`.data`: :func:`simulate` (DOP853), :func:`transitions`, :class:`DatasetSpec`,
  :func:`make_dataset` (reproducible, cached) and :func:`paper_dataset_spec`.
"""

from .base import HamiltonianSystem, InitialSampler, gaussian_initial
from .builtin import (
    NBODY_MOVED_OFFSET,
    NBODY_WIDER_STD,
    SYSTEMS,
    harmonic_oscillators,
    is_import_path,
    make_system,
    n_body,
    simple_harmonic_oscillator,
)
from .data import (
    DATA_FORMAT_VERSION,
    DatasetSpec,
    TrajectoryData,
    default_cache_dir,
    make_dataset,
    paper_dataset_spec,
    simulate,
    transitions,
)

__all__ = [
    "DATA_FORMAT_VERSION",
    "NBODY_MOVED_OFFSET",
    "NBODY_WIDER_STD",
    "SYSTEMS",
    "DatasetSpec",
    "HamiltonianSystem",
    "InitialSampler",
    "TrajectoryData",
    "default_cache_dir",
    "gaussian_initial",
    "harmonic_oscillators",
    "is_import_path",
    "make_dataset",
    "make_system",
    "n_body",
    "paper_dataset_spec",
    "simple_harmonic_oscillator",
    "simulate",
    "transitions",
]
