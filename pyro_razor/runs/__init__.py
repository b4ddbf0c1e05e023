"""Experiments as runs: configs, the name registry, run directories and the commands that
train (``run``), re-analyse (``analyse``), check (``ppc``), tabulate (``table``) and time
(``bench``) them.

- :mod:`.config`: the typed TOML experiment config;
- :mod:`.registry`: config names to builders (variants, guides, priors, noises, ...);
- :mod:`.rundir`: :class:`RunDir`, every path and file format of a run directory;
- :mod:`.variants`: build a variant fresh or load a trained one;
- :mod:`.results`: a variant's metrics, rollouts and symmetry analysis;
- :mod:`.run`, :mod:`.analyse`, :mod:`.ppc`, :mod:`.table`, :mod:`.benchmark`: the commands;
- :mod:`.figures`: the figures of a run.
"""

from pyro_razor.runs.analyse import analyse_run
from pyro_razor.runs.config import (
    VARIANT_LABELS,
    VARIANTS,
    DataConfig,
    EvaluationConfig,
    ExperimentConfig,
    GuideConfig,
    ModelConfig,
    load_experiment,
)
from pyro_razor.runs.device import resolve_device
from pyro_razor.runs.errors import RunError
from pyro_razor.runs.ppc import run_ppc
from pyro_razor.runs.run import resolve_config, run_experiment
from pyro_razor.runs.rundir import RunDir, read_history
from pyro_razor.runs.table import format_table
from pyro_razor.runs.variants import build_guide, build_model, fresh_variant, load_variant

__all__ = [
    "VARIANTS",
    "VARIANT_LABELS",
    "DataConfig",
    "EvaluationConfig",
    "ExperimentConfig",
    "GuideConfig",
    "ModelConfig",
    "RunDir",
    "RunError",
    "analyse_run",
    "build_guide",
    "build_model",
    "format_table",
    "fresh_variant",
    "load_experiment",
    "load_variant",
    "read_history",
    "resolve_config",
    "resolve_device",
    "run_experiment",
    "run_ppc",
]
