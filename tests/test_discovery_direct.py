"""The direct estimator on systems built to break it (experiments/direct_benchmark.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from experiment_scripts import load_experiment

import pyro_razor
from pyro_razor.cli import main
from pyro_razor.discovery.direct import direct_estimate
from pyro_razor.discovery.laws import direct_discovery
from pyro_razor.systems.files import write_trajectories

XY = ["x", "y", "px", "py"]


@pytest.fixture(scope="module")
def bench():
    return load_experiment("direct_benchmark.py")


@pytest.mark.parametrize("name,noise", [("sho", 0.0), ("detuned", 0.01), ("coupled", 0.03),
                                        ("spring_free", 0.01), ("u3", 0.0)])
def test_determines_the_true_count(bench, name, noise):
    x, truth = bench.data(name, noise=noise)
    e = direct_estimate(x)
    assert (e.status, e.count) == ("determined", truth)
    assert e.kinds == ["conserved"] * truth


def test_two_body_gravity_needs_the_noise_level_when_close_passes_look_like_noise(bench):
    """Noise-free orbits sampled at dt 0.3: close passes leave 6th differences that look like
    noise, so the estimate allows a range; told the data are exact to 1e-6 (the integrator's
    error is 1e-8 of the spread), it finds the 7 laws."""
    x, truth = bench.data("gravity2")
    e = direct_estimate(x)
    assert e.range[0] <= truth <= e.range[1]
    e = direct_estimate(x, noise=1e-6)
    assert (e.status, e.count) == ("determined", truth)


@pytest.mark.parametrize("name", ["pendulum", "quartic", "henon_heiles", "double_pendulum"])
@pytest.mark.parametrize("noise", [0.0, 0.1])
def test_claims_nothing_without_a_quadratic_law(bench, name, noise):
    x, _ = bench.data(name, noise=noise)
    e = direct_estimate(x)
    assert e.kinds.count("conserved") == 0 and e.kinds.count("approximate") == 0


def test_laws_are_the_energies_in_user_units(bench):
    x, _ = bench.data("detuned", noise=0.0)
    found = direct_discovery(direct_estimate(x), XY)
    assert [q["formula"] for q in found.quantities] == ["C1 = x² + px²", "C2 = y² + 0.39 py²"]
    assert found.algebra["name"] == "u(1)^2"
    A = torch.tensor(found.quantities[1]["A"])
    assert float(A[3, 3] / A[1, 1]) == pytest.approx(1 / 1.6**2, rel=1e-6)


def test_offset_positions_keep_count_and_quadratic_part(bench):
    x, _ = bench.data("detuned", offset=300.0)
    found = direct_discovery(direct_estimate(x), XY)
    assert len(found.quantities) == 2
    assert found.quantities[0]["formula"].startswith("C1 = (x − 299.")
    assert "px²" in found.quantities[0]["formula"]


def test_zero_momentum_in_every_run_is_undetermined(bench):
    """Total momentum 0 in every run: P, P² are constant on all data, not provably laws."""
    x, truth = bench.data("spring_zero")
    e = direct_estimate(x)
    assert e.status == "undetermined" and e.counts["D"] >= 2
    assert e.range[0] <= truth <= e.range[1]
    assert any("same value on every trajectory" in w for w in e.warnings)


def test_short_noisy_window_is_undetermined_with_a_warning(bench):
    x, truth = bench.data("detuned", n=101, dt=0.0005, noise=0.03)
    e = direct_estimate(x)
    assert e.status == "undetermined" and e.range[0] <= truth <= e.range[1]
    assert e.count is None


def test_three_points_cannot_separate_exact_from_approximate(bench):
    x, _ = bench.data("sho", n=3)
    e = direct_estimate(x)
    assert (e.status, e.count, e.range) == ("approximate", 0, (0, 1))
    assert any("noise could not be separated" in w for w in e.warnings)


def test_near_resonant_pair_reports_its_slow_cross_terms_as_approximate(bench):
    x, _ = bench.data("beating")
    e = direct_estimate(x)
    assert (e.status, e.count) == ("approximate", 2)
    assert e.kinds[2:] == ["approximate"] * (e.range[1] - 2)
    assert direct_estimate(x, tolerance=0.01).count == 2


def test_near_resonant_pair_at_three_percent_noise_shows_the_cross_terms_trend(bench):
    """At 3 % noise the cross terms' ~2 % drift over the window is inside the noise of the
    within-scatter test (it used to give "determined 4"), but each trajectory's straight-line
    trend shows it: the trend test removes both, and they are reported as approximate."""
    x, truth = bench.data("beating", noise=0.03)
    e = direct_estimate(x)
    assert e.counts["drifting"] == 2
    assert (e.status, e.count, e.range) == ("approximate", truth, (truth, truth + 2))
    assert e.kinds == ["conserved"] * truth + ["approximate"] * 2


def test_given_noise_and_unequal_lengths(bench):
    x, _ = bench.data("coupled", noise=0.01)
    ragged = [x[b, : 5 + b % 7] for b in range(x.shape[0])]
    e = direct_estimate(ragged, noise=0.01 * x.flatten(0, 1).std(0))
    assert (e.status, e.count) == ("determined", 2)
    assert e.noise.given and e.settings["noise_source"] == "given"


def test_rejects_bad_settings(bench):
    x, _ = bench.data("sho")
    with pytest.raises(ValueError, match="alpha"):
        direct_estimate(x, alpha=0.7)
    with pytest.raises(ValueError, match="tolerance"):
        direct_estimate(x, tolerance=-0.1)


def test_library_call_and_command(bench, tmp_path, capsys):
    x, _ = bench.data("detuned", noise=0.01)
    found = pyro_razor.discover(x, names=XY)
    assert found.verdict.startswith("direct estimate: 2 conserved")
    path = write_trajectories(tmp_path / "d.npz", x, 0.3, names=XY) or tmp_path / "d.npz"
    assert pyro_razor.discover(str(path)).verdict == found.verdict
    assert main(["discover", str(path), "--no-razor", "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "direct estimate: 2 conserved" in out and "[conserved] C1 = x² + px²" in out
    record = (tmp_path / "run" / "discovery.json").read_text()
    assert '"razor": false' in record
    with pytest.raises(ValueError, match="razor stage needs dt"):
        pyro_razor.discover([np.zeros((3, 4)), np.ones((4, 4))], razor=True)
