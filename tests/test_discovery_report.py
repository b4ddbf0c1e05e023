"""The evidence-based answer of a discovery run, on exact data with known conserved quantities."""

from __future__ import annotations

import torch

from pyro_razor.discovery.report import conserved_subspace, data_warnings, discover_quantities
from pyro_razor.symmetry import SymmetryMeasure, generator_matrix
from pyro_razor.systems import make_system, simulate
from pyro_razor.systems.units import fit_scaling, identity_scaling

F64 = torch.float64
BALL = SymmetryMeasure("ball", 3.141592653589793)


def oscillator_data(B=8, n=15, dt=0.3, seed=0):
    system = make_system("oscillators", n=2)
    x0 = torch.randn(B, 4, dtype=F64, generator=torch.Generator().manual_seed(seed))
    return system, simulate(system, x0, n, dt)


def mixed(G: torch.Tensor, extra: torch.Tensor | None = None, seed=1) -> torch.Tensor:
    """A random invertible mix of ``G`` (and ``extra`` rows) as a learned set would be."""
    rows = G if extra is None else torch.cat([G, extra])
    mix = torch.randn(rows.shape[0], rows.shape[0], dtype=F64,
                      generator=torch.Generator().manual_seed(seed))
    return torch.einsum("ij,jkl->ikl", mix, rows)


def squeeze(M: int) -> torch.Tensor:
    """A flow that moves the data but conserves nothing: C = q1 p1."""
    A = torch.zeros(M, M, dtype=F64)
    A[0, M // 2] = A[M // 2, 0] = 1.0
    return generator_matrix(A, torch.zeros(M, dtype=F64))[None]


ELBO_WIN = {"vanilla": 2.0, "learned": 1.0, "n_transitions": 112}


def test_finds_exactly_u2_among_a_spurious_and_a_tiny_direction():
    system, data = oscillator_data()
    true = system.generators(dtype=F64)
    learned = mixed(true, torch.cat([squeeze(4), 1e-4 * squeeze(4).transpose(-1, -2)]))
    found = discover_quantities(learned, data, BALL, identity_scaling(4),
                                ["x", "y", "px", "py"], ELBO_WIN)
    assert found.n_found == 4, found.evidence
    assert found.algebra["name"] == "u(2)" and found.algebra["closure_error"] < 1e-8
    formulas = [q["formula"] for q in found.quantities]
    assert formulas == ["C1 = x² + px²", "C2 = x·y + px·py", "C3 = y² + py²",
                        "C4 = x·py − y·px"], formulas
    assert all(q["ratio"] < 1e-8 for q in found.quantities)  # exact data: flat along each
    assert found.to_json()["n_found"] == 4 and "u(2)" in found.verdict
    # the spurious squeeze moved the data but was not conserved; the tiny one did not move it
    assert len(found.evidence["candidates"]["displacements"]) == 5


def test_the_answer_is_none_when_the_elbo_prefers_vanilla_or_nothing_is_conserved():
    system, data = oscillator_data()
    lose = {"vanilla": 1.0, "learned": 1.5, "n_transitions": 112}
    found = discover_quantities(mixed(system.generators(dtype=F64)), data, BALL,
                                identity_scaling(4), ["x", "y", "px", "py"], lose)
    assert found.n_found == 0 and found.verdict.startswith("no quadratic conserved quantity")
    assert "does not improve the ELBO (+56.0 nats" in found.verdict
    spurious = discover_quantities(squeeze(4), data, BALL, identity_scaling(4),
                                   ["x", "y", "px", "py"], ELBO_WIN)
    assert spurious.n_found == 0 and "no learned direction both moves" in spurious.verdict


def test_quantities_are_reported_in_the_users_units():
    """Data in badly scaled units; the model's generators live in standardised units."""
    system, data = oscillator_data()
    units = torch.tensor([1e3, 10.0, 1e-3, 0.1], dtype=F64)  # x' = D x: a_i b_i = 1
    original = data * units
    scaling = fit_scaling(original)
    truth = generator_matrix(*_scaled_quantities(system, units))
    learned = scaling.generators_to_scaled(truth)
    found = discover_quantities(mixed(learned), scaling.to_scaled(original), BALL, scaling,
                                ["x", "y", "px", "py"], ELBO_WIN)
    assert found.n_found == 4 and found.algebra["name"] == "u(2)"
    first = found.quantities[0]  # x²/1e6 + 1e6 px² in RREF: x² + 1e12 px²
    assert first["formula"] == "C1 = x² + 1e12 px²", first["formula"]


def _scaled_quantities(system, units):
    """Quantities of the system in units x_new = D x: A_new = D^-1 A D^-1."""
    D = torch.diag(1.0 / units)
    A = torch.stack([D @ c.A @ D for c in system.conserved_quantities])
    b = torch.stack([D @ c.b for c in system.conserved_quantities])
    return A, b


def test_conserved_subspace_orders_by_conservation_and_warnings():
    system, data = oscillator_data()
    G = torch.cat([squeeze(4), system.generators(dtype=F64)[:1]])
    directions, ratios = conserved_subspace(G, data)
    assert ratios[0] < 1e-8 < 0.1 < ratios[1]
    assert torch.allclose(directions[0].abs(), G[1].abs() / G[1].norm(), atol=1e-8)
    assert data_warnings(8, 15) == []
    assert len(data_warnings(2, 3)) == 3
