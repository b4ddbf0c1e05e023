"""Figures in the style of the paper (Figures 2-5), training and rollout diagnostics, and the
posterior predictive checks.

- :mod:`.portraits`: learned Hamiltonians on the ``(q, p)`` plane (Figure 2);
- :mod:`.symmetries`: singular values and parallelness (Figures 3-4), generators (Figure 5);
- :mod:`.dynamics`: rollouts, training curves, conservation drift;
- :mod:`.predictive`: posterior predictive densities, rollout bands, calibration, LOO-PIT;
- :mod:`.discovery`: found quantities along the data beside their generators.

Every function builds a :class:`matplotlib.figure.Figure` without ``pyplot``, returns it and
saves it as PNG when given ``path`` (see :mod:`.common`). Jupyter displays a returned figure
inline; save it to look at it outside a notebook.
"""

from pyro_razor.plotting.common import DPI
from pyro_razor.plotting.discovery import plot_discovery
from pyro_razor.plotting.dynamics import (
    plot_conservation_drift,
    plot_rollouts,
    plot_training_curves,
)
from pyro_razor.plotting.portraits import plot_phase_portraits
from pyro_razor.plotting.predictive import (
    plot_calibration,
    plot_loo_pit,
    plot_ppc_phases,
    plot_rollout_bands,
)
from pyro_razor.plotting.symmetries import plot_generators, plot_singular_values
from pyro_razor.symmetry import phase_labels

__all__ = [
    "DPI",
    "phase_labels",
    "plot_calibration",
    "plot_conservation_drift",
    "plot_discovery",
    "plot_generators",
    "plot_loo_pit",
    "plot_phase_portraits",
    "plot_ppc_phases",
    "plot_rollout_bands",
    "plot_rollouts",
    "plot_singular_values",
    "plot_training_curves",
]
