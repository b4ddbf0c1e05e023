"""`pyro-razor discover` on systems whose quadratic conserved quantities are known and fewer than
the largest group of their shape, or none (slow: `python -m pytest -m slow`, ~5-8 min each on
one CPU core; the measured counts and wall times are in experiments/RESULTS.md).

The systems and the data files come from experiments/discovery_systems.py, the script that
produced the recorded results, so the test checks exactly what RESULTS.md reports.
"""

from __future__ import annotations

import pytest
from experiment_scripts import load_experiment

from pyro_razor.runs.discover import run_discovery

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def script():
    """experiments/discovery_systems.py as a module (loaded once)."""
    return load_experiment("discovery_systems.py")


@pytest.mark.parametrize("name", ["detuned", "coupled", "central", "pendulum"])
def test_discover_finds_exactly_the_known_quantities(script, name, tmp_path):
    """The number found equals the true number (2, 2, 1, 0), and the null answer is given on
    the pendulum, whose energy is not quadratic."""
    _, _, true_count, true_algebra = script.SYSTEMS[name]
    data = script.make_file(name, tmp_path / f"{name}.npz", noise=0.0, seed=0)
    found = run_discovery(str(data), tmp_path / name, progress=False, seed=0)
    assert found.n_found == true_count, (found.verdict, found.warnings)
    if true_count == 0:
        assert "no quadratic conserved quantity is supported by these data" in found.verdict
    else:
        assert found.algebra["name"] == true_algebra
