"""Non-quadratic laws: sparse formulas, functional independence, discover(features=...), and
experiments/nonquadratic_systems.py's quick table."""

from __future__ import annotations

import pytest
import torch
from experiment_scripts import load_experiment

import pyro_razor
from pyro_razor.discovery.direct import direct_estimate
from pyro_razor.discovery.features import MonomialFeatures
from pyro_razor.discovery.general import formula, general_discovery, general_quantities
from pyro_razor.discovery.libraries import FeatureUnion, TrigFeatures
from pyro_razor.systems import HamiltonianSystem, gaussian_initial, simulate

F64 = torch.float64


@pytest.fixture(scope="module")
def ns():
    return load_experiment("nonquadratic_systems.py")


def test_quartic_energy_is_found_alone_with_p2_and_q4_in_ratio_two_to_one(ns):
    """Noise-free quartic oscillator, monomials to degree 4: exactly 1 law, terms p² and q⁴
    only, coefficients 1 : 0.5 to 1e-6."""
    found = pyro_razor.discover(ns.data("quartic"), names=["q", "p"], degree=4)
    assert found.evidence["direct"]["status"] == "determined"
    assert [q["kind"] for q in found.quantities] == ["conserved"]
    terms = found.quantities[0]["terms"]
    assert set(terms) == {"p²", "q⁴"}
    assert terms["p²"] / terms["q⁴"] == pytest.approx(2.0, rel=1e-6)
    assert found.evidence["independent"] == 1 and found.algebra["name"] is None
    assert found.quantities[0]["formula"] == "C1 = 0.5·q⁴ + p²"


def test_pendulum_with_trig_features_is_p2_over_2_minus_cos_q(ns):
    """1 % noise: 1 law, cos q : p² = −2 to 2 %, no other term."""
    x = ns.data("pendulum", noise=0.01)
    lib = FeatureUnion(TrigFeatures(2, [0]), MonomialFeatures(2, 2, standardised=False))
    found = pyro_razor.discover(x, names=["q", "p"], features=lib)
    assert [q["kind"] for q in found.quantities] == ["conserved"]
    terms = found.quantities[0]["terms"]
    assert set(terms) == {"cos(q)", "p²"}
    assert terms["cos(q)"] / terms["p²"] == pytest.approx(-2.0, rel=0.02)


def test_kepler_has_four_laws_in_the_span_and_three_independent(ns):
    """E, L, A_x, A_y (noise-free, monomials to degree 3 with 1/r, x/r, y/r): 4 conserved,
    one of them a function of the other three (A² = 1 + 2 H L²)."""
    _, names, lib, *_ = ns.cases()["kepler"]
    x = ns.data("kepler")
    found = general_discovery(direct_estimate(x, features=lib), x, names)
    conserved = [q for q in found.quantities if q["kind"] == "conserved"]
    assert len(conserved) == 4 and found.evidence["independent"] == 3
    assert [q["function_of"] for q in conserved if not q["independent"]] == [["C1", "C2", "C3"]]
    assert conserved[0]["formula"] == "C1 = x·py − y·px"
    assert "3 functionally independent" in found.verdict


def test_a_square_of_a_law_is_in_the_span_but_not_independent():
    """Harmonic oscillator with monomials to degree 4: H and H² (2 in the span), 1
    independent; H² is reported as a function of H."""
    sho = HamiltonianSystem("sho", 2, lambda x: 0.5 * (x**2).sum(-1), gaussian_initial(2))
    g = torch.Generator().manual_seed(0)
    x = simulate(sho, sho.sample_initial(20, g), 11, 0.3)
    found = pyro_razor.discover(x, names=["q", "p"], degree=4)
    conserved = [q for q in found.quantities if q["kind"] == "conserved"]
    assert len(conserved) == 2 and found.evidence["independent"] == 1
    assert conserved[0]["formula"] == "C1 = q² + p²"
    assert conserved[1]["function_of"] == ["C1"]
    assert conserved[1]["terms"]["q²·p²"] / conserved[1]["terms"]["q⁴"] == pytest.approx(
        2.0, rel=1e-6)


def test_no_law_system_finds_none(ns):
    found = pyro_razor.discover(ns.data("damped_quartic"), names=["q", "p"], degree=4)
    assert found.quantities == [] and found.evidence["independent"] == 0


def test_formula_writes_coefficients_and_signs():
    """Coefficients follow the quadratic answer's rule (format_coefficient): one format for both."""
    c = torch.tensor([0.5, 0.0, -1.0, 0.004], dtype=F64)
    assert formula("C2", c, ["q⁴", "q", "p²", "p"]) == "C2 = 0.5·q⁴ − p² + 4e-3·p"
    assert formula("C1", torch.tensor([-2.0, 1.0], dtype=F64), ["a", "b"]) == "C1 = −2·a + b"


def test_bad_requests_give_one_line_errors(ns):
    x = ns.data("quartic")
    with pytest.raises(ValueError, match="razor stage only handles quadratic laws"):
        pyro_razor.discover(x, degree=4, razor=True)
    with pytest.raises(ValueError, match="need an estimate made with features"):
        general_quantities(direct_estimate(x), ["q", "p"])
    with pytest.raises(ValueError, match="degree must be an integer 1 to 4"):
        pyro_razor.discover(x, degree=5)


def test_quick_table_counts(ns, capsys):
    rows = ns.table(ns.QUICK)
    assert [(r["name"], r["span"], r["independent"]) for r in rows] == [
        ("quartic", 1, 1)] * 3 + [("pendulum", 1, 1)] * 3
    assert "| quartic | poly ≤ 4 (F=14) | 0 | 1 / 1 | 1 | 1 | 1 | C1 = 0.5·q⁴ + p²" in \
        capsys.readouterr().out
