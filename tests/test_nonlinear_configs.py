"""The shipped configs of experiments/nonlinear/: each loads, is named after its file, and its
system's data obey the system's laws (the ground truth RESULTS.md scores learned laws against)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pyro_razor.runs.config import load_experiment
from pyro_razor.runs.data import RunData

NONLINEAR = Path(__file__).resolve().parent.parent / "experiments" / "nonlinear"
CONFIGS = sorted(NONLINEAR.glob("*.toml"))


def test_the_nonlinear_folder_holds_the_five_systems_configs():
    systems = {p.stem.split("_polynomial")[0].split("_quadratic")[0] for p in CONFIGS}
    assert systems == {"quartic", "henon_heiles", "pendulum", "kepler", "toda"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_each_config_loads_is_named_after_its_file_and_its_system_conserves_its_laws(
        path, monkeypatch):
    """The training data (float64) conserve the energy and every shipped ground-truth quantity
    to 1e-3 of its spread across trajectories (the simulator's RK4 error; the laws are exact
    invariants of the flow)."""
    monkeypatch.syspath_prepend(str(NONLINEAR.parents[1]))
    config = load_experiment(path)
    assert config.name == path.stem
    assert config.model.quantity_family in {"polynomial", "quadratic"}
    data = RunData.load(config.data, "cpu", torch.float64)
    x = data.scaling.to_original(data.train.to(torch.float64))  # (B, T, M)
    laws = [data.system.hamiltonian(x)]
    laws += [q(x) for q in data.system.conserved_quantities]
    for C in laws:
        within = (C - C[:, :1]).abs().max()
        assert within < 1e-3 * C[:, 0].std(), (path.stem, float(within))
