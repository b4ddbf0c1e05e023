"""The shipped quick experiment configs, run for real (slow: `python -m pytest -m slow`).

Each test runs `experiments/<name>_quick.toml` through the same runner as `pyro-razor run` and
checks the effect the config exists to show. Wall times on 2 CPU cores are in
experiments/RESULTS.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyro_razor.configio import replace_path
from pyro_razor.runs import load_experiment, run_experiment

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"

pytestmark = pytest.mark.slow


def _run(name: str, tmp_path: Path, variants: tuple[str, ...] | None = None) -> dict:
    config = load_experiment(EXPERIMENTS / f"{name}.toml")
    if variants is not None:
        config = replace_path(config, "variants", variants)
    return run_experiment(config, tmp_path / name, progress=False, figures=False)


def test_table1_sho_quick_finds_so2_and_beats_vanilla(tmp_path):
    """~3 min of training: SO(2) parallelness > 0.99, learned -ELBO/N below vanilla's and
    test MSE no worse than vanilla's (the acceptance criteria of the experiments issue)."""
    summary = _run("table1_sho_quick", tmp_path, ("vanilla", "learned"))
    vanilla, learned = summary["variants"]["vanilla"], summary["variants"]["learned"]
    symmetry = json.loads((tmp_path / "table1_sho_quick" / "learned" / "symmetry.json").read_text())
    assert symmetry["n_significant"] == 1
    assert symmetry["parallelness"][0] > 0.99
    assert learned["neg_elbo_per_n"] < vanilla["neg_elbo_per_n"]
    assert learned["test_mse"] <= vanilla["test_mse"]


def test_table2_oscillators_n2_quick_recovers_u2(tmp_path):
    """~6 min of training: exactly 4 = dim U(2) significant directions, all parallel > 0.99."""
    _run("table2_oscillators_n2_quick", tmp_path, ("learned",))
    symmetry = json.loads(
        (tmp_path / "table2_oscillators_n2_quick" / "learned" / "symmetry.json").read_text()
    )
    assert symmetry["true_dim"] == 4
    assert symmetry["n_significant"] == 4
    assert min(symmetry["parallelness"][:4]) > 0.99


def test_table3_nbody_quick_learned_beats_vanilla_in_the_orbit_span(tmp_path):
    """~12 min of training (vanilla and learned): what RESULTS.md reports for seed 0. The learned
    model has the lower -ELBO/N and the lower MSE on the test, moved and wider sets, and its 7
    leading directions are parallel (> 0.9; measured 0.923-1.000 on seed 0 and >= 0.929 on
    seeds 1-2, chance level 0.28) to the 7 true generators' span. The number of significant
    directions is reported, not asserted: at this scale 2 of the 7 move the data by more than
    the threshold."""
    summary = _run("table3_nbody_quick", tmp_path, ("vanilla", "learned"))
    vanilla, learned = summary["variants"]["vanilla"], summary["variants"]["learned"]
    assert learned["neg_elbo_per_n"] < vanilla["neg_elbo_per_n"]
    for key in ("test_mse", "test_mse_moved", "test_mse_wider"):
        assert learned[key] < vanilla[key], key
    symmetry = json.loads(
        (tmp_path / "table3_nbody_quick" / "learned" / "symmetry.json").read_text()
    )
    assert symmetry["true_dim"] == 7
    assert min(symmetry["parallelness"][:7]) > 0.9
    assert symmetry["parallelness"][0] > 0.99
    assert symmetry["n_significant"] >= 1
