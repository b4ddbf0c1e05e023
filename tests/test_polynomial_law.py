"""experiments/polynomial_law.py: a learned polynomial law against the system's energy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from experiment_scripts import load_experiment

from pyro_razor.runs.config import load_experiment as load_config
from pyro_razor.runs.data import RunData

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
QUICK = EXPERIMENTS / "nonlinear" / "quartic_polynomial_quick.toml"


@pytest.fixture(scope="module")
def law():
    return load_experiment("polynomial_law.py")


def _write(run: Path, eta: torch.Tensor) -> None:
    (run / "learned").mkdir(parents=True)
    (run / "learned" / "quantities.json").write_text(json.dumps({"eta": eta.tolist()}))


def test_the_energy_itself_scores_one_and_a_drifting_law_does_not(law, tmp_path, monkeypatch):
    """Quartic quick data: the energy written in model-unit monomials (a least-squares fit,
    exact for a degree-4 polynomial) has R^2 = 1 and no within-trajectory variance; q^2 alone
    (not conserved) has R^2 < 0.9 and a within/total ratio above 1e-3."""
    monkeypatch.syspath_prepend(str(EXPERIMENTS.parent))
    config = load_config(QUICK)
    data = RunData.load(config.data, "cpu", torch.float64)
    z = data.train.to(torch.float64).reshape(-1, 2)
    phi = law.monomial_values(z, 4)
    H = data.system.hamiltonian(data.scaling.to_original(z))
    eta = torch.linalg.lstsq(phi, H[:, None]).solution.T
    _write(tmp_path / "exact", eta)
    (row,) = law.law_report(QUICK, tmp_path / "exact")
    assert row["energy_r2"] == pytest.approx(1.0, abs=1e-6)
    assert row["within_total_train"] < 1e-6 and row["energy_within_total_train"] < 1e-12
    q2 = torch.zeros(1, 14, dtype=torch.float64)
    q2[0, 2] = 1.0  # the monomial q^2
    _write(tmp_path / "q2", q2)
    (row,) = law.law_report(QUICK, tmp_path / "q2")
    assert row["energy_r2"] < 0.9 and row["within_total_train"] > 1e-3


KEPLER = EXPERIMENTS / "nonlinear" / "kepler_quadratic_quick.toml"


def test_a_quadratic_run_is_read_from_its_generators_and_scored_against_named_laws(
        law, tmp_path, monkeypatch):
    """Kepler quick data, a quadratic 'learned' run whose one generator is the angular
    momentum's (written as the run writes generators.pt): R^2 = 1 against the true laws
    together and against L alone (law 2), below 0.1 against A_x (law 3: the orbits'
    orientations are uniform, so L says nothing about it), and no within-trajectory
    variance."""
    monkeypatch.syspath_prepend(str(EXPERIMENTS.parent))
    from experiments.nonlinear_systems import kepler, kepler_laws
    from pyro_razor.symmetry import generator_matrix

    config = load_config(KEPLER)
    data = RunData.load(config.data, "cpu", torch.float64)
    L = kepler().conserved_quantities[0]
    # the generator is read in model units: here they are the system's own
    z = data.train.to(torch.float64).reshape(-1, 4)
    assert torch.allclose(data.scaling.to_original(z), z), "the Kepler config trains unscaled"
    (tmp_path / "learned").mkdir(parents=True)
    torch.save(generator_matrix(L.A, L.b)[None].float(), tmp_path / "learned" / "generators.pt")
    (row,) = law.law_report(KEPLER, tmp_path, kepler_laws)
    assert row["laws_r2"] == pytest.approx(1.0, abs=1e-6)
    assert row["law_r2"][1] == pytest.approx(1.0, abs=1e-6)
    assert row["law_r2"][2] < 0.1
    assert row["within_total_train"] < 1e-10
