"""The evidence-based answer of a discovery run, on exact data with known conserved quantities."""

from __future__ import annotations

import pytest
import torch

from pyro_razor.discovery.noise import estimate_noise, known_noise
from pyro_razor.discovery.report import data_warnings, discover_quantities
from pyro_razor.discovery.span_test import QuadraticQuantities, conservation_in_span
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
    assert all(q["kind"] == "conserved" for q in found.quantities)
    assert found.to_json()["n_found"] == 4 and "u(2)" in found.verdict
    test = found.evidence["span_test"]
    assert (test["status"], test["count"], test["alpha"]) == ("determined", 4, 0.05)
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
    assert spurious.n_found == 0
    assert "no combination of the 1 learned direction(s) that move the data passes the " \
        "conservation test at level 0.05" in spurious.verdict


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


def test_quadratic_quantities_library_matches_autograd():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(3, 4, 4, dtype=F64, generator=g)
    A = A + A.transpose(1, 2)
    b = torch.randn(3, 4, dtype=F64, generator=g)
    x = torch.randn(5, 4, dtype=F64, generator=g, requires_grad=True)
    library = QuadraticQuantities(A, b)
    values, grads = library(x)
    expected = 0.5 * torch.einsum("nm,rmk,nk->nr", x, A, x) + x @ b.T
    assert library.num_features == 3
    assert torch.allclose(values, expected, atol=1e-12)
    for r in range(3):
        (g_r,) = torch.autograd.grad(expected[:, r].sum(), x, retain_graph=True)
        assert torch.allclose(grads[:, r], g_r, atol=1e-12)


def noisy(data: torch.Tensor, level: float, seed: int = 3) -> torch.Tensor:
    """``data`` plus white noise of ``level`` times each coordinate's spread."""
    spread = data.reshape(-1, data.shape[-1]).std(dim=0)
    return data + level * spread * torch.randn(data.shape, dtype=F64,
                                               generator=torch.Generator().manual_seed(seed))


def test_span_test_follows_the_noise_where_a_fixed_cut_off_did_not():
    """The u(2) span mixed with a squeeze, on 2 oscillators: determined 4 from exact data to
    3 % noise; at 10 % the data allow [0, 4] ("undetermined", never a wrong number: the
    former fixed cut-off, spread ratio < 0.1, counted 1 there). The noise may be given."""
    system, data = oscillator_data(B=30, n=11)
    G = mixed(system.generators(dtype=F64), squeeze(4))
    for level in (0.0, 0.01, 0.03):
        x = noisy(data, level)
        v = conservation_in_span(G, x, estimate_noise(list(x)))
        assert (v.status, v.count, v.kinds) == ("determined", 4, ["conserved"] * 4), level
        assert v.directions.shape == (4, 5, 5)
    x = noisy(data, 0.1)
    v = conservation_in_span(G, x, estimate_noise(list(x)))
    assert v.status == "undetermined" and v.range[0] <= 4 <= v.range[1]
    spread = data.reshape(-1, 4).std(dim=0)
    given = conservation_in_span(G, x, known_noise((0.1 * spread).tolist(), 4))
    assert given.range[0] <= 4 <= given.range[1]


def test_span_test_claims_nothing_on_random_spans_of_a_system_without_quadratic_laws():
    """40 random 3-dimensional quadratic spans on the quartic oscillator H = p²/2 + q⁴/4
    (experiments/direct_benchmark.py, 30 x 11 points, 1 % noise): no span yields a claimed
    law (the tests' level is 5 %)."""
    from experiment_scripts import load_experiment

    bench = load_experiment("direct_benchmark.py")
    x, truth = bench.data("quartic", noise=0.01)
    assert truth == 0
    noise = estimate_noise(list(x))
    M, claims = x.shape[-1], 0
    for seed in range(40):
        g = torch.Generator().manual_seed(seed)
        A = torch.randn(3, M, M, dtype=F64, generator=g)
        G = generator_matrix(A + A.transpose(1, 2), torch.randn(3, M, dtype=F64, generator=g))
        v = conservation_in_span(G, x, noise)
        claims += any(k in ("conserved", "approximate") for k in v.kinds)
    assert claims == 0


def test_span_test_rejects_bad_input_and_data_warnings():
    system, data = oscillator_data()
    noise = known_noise(0.01, 4)
    with pytest.raises(ValueError, match="at least one generator"):
        conservation_in_span(torch.zeros(0, 5, 5, dtype=F64), data, noise)
    with pytest.raises(ValueError, match="alpha must be in"):
        conservation_in_span(system.generators(dtype=F64), data, noise, alpha=0.7)
    with pytest.raises(ValueError, match="needs A"):
        QuadraticQuantities(torch.zeros(2, 4, 4), torch.zeros(3, 4))
    assert data_warnings(8, 15) == []
    assert len(data_warnings(2, 3)) == 3
