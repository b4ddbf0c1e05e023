"""Diagnostics of trained models: learned symmetries, conservation, predictive checks.

- :mod:`.spectrum`: SVD of learned generators and parallelness to a known span (section 5.1);
- :mod:`.components`: learned directions written in the ground-truth generators;
- :mod:`.report`: :func:`analyse_generators` and its :class:`SymmetryAnalysis` report;
- :mod:`.evidence`: how far a direction's flow moves the data, conservation along the data;
- :mod:`.conservation`: drift of quantities along trajectories;
- :mod:`.longterm`: long-horizon rollouts of a learned Hamiltonian against the exact solution;
- :mod:`.predictive`: coverage, calibration, log predictive density, PSIS-LOO, comparison;
- :mod:`.arviz_data`: predictive draws as ArviZ groups (``InferenceData`` with ArviZ 0.x,
  ``DataTree`` with 1.x, through :mod:`.arviz_compat`) and netCDF files.
"""

from pyro_razor.analysis.arviz_data import load_netcdf, save_netcdf, to_inference_data
from pyro_razor.analysis.conservation import conservation_drift
from pyro_razor.analysis.evidence import (
    conservation_along_data,
    data_spread,
    direction_displacements,
)
from pyro_razor.analysis.longterm import long_horizon_rollout, longterm_record
from pyro_razor.analysis.predictive import (
    DEFAULT_LEVELS,
    PARETO_K_LIMIT,
    calibration_curve,
    compare_variants,
    coverage,
    loo_summary,
    mean_log_predictive_density,
    pointwise_log_predictive_density,
)
from pyro_razor.analysis.report import SymmetryAnalysis, analyse_generators
from pyro_razor.analysis.spectrum import chance_parallelness, learnable_dimension, parallelness

__all__ = [
    "DEFAULT_LEVELS",
    "PARETO_K_LIMIT",
    "SymmetryAnalysis",
    "analyse_generators",
    "calibration_curve",
    "chance_parallelness",
    "conservation_along_data",
    "compare_variants",
    "conservation_drift",
    "coverage",
    "data_spread",
    "direction_displacements",
    "learnable_dimension",
    "load_netcdf",
    "long_horizon_rollout",
    "longterm_record",
    "loo_summary",
    "mean_log_predictive_density",
    "parallelness",
    "pointwise_log_predictive_density",
    "save_netcdf",
    "to_inference_data",
]
