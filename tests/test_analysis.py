"""Tests for :mod:`pyro_razor.analysis`: generator SVD, parallelness, recovery, drift.

Float64 throughout; tolerances are stated at each assertion.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from pyro_razor.analysis import (
    SymmetryAnalysis,
    analyse_generators,
    conservation_drift,
    parallelness,
)
from pyro_razor.symmetry import generator_matrix, symmetric_from_unconstrained
from pyro_razor.systems import make_system

F64 = torch.float64

SYSTEMS = [
    pytest.param("sho", {}, 1, id="sho"),
    pytest.param("oscillators", {"n": 2}, 4, id="osc2"),
    pytest.param("oscillators", {"n": 3}, 9, id="osc3"),
    pytest.param("nbody", {"n": 3, "dim": 2}, 7, id="nbody2d"),
]


def truth(name: str, params: dict) -> tuple[torch.Tensor, list[str]]:
    system = make_system(name, **params)
    return system.generators(), [c.name for c in system.conserved_quantities]


def random_orthogonal(n: int, g: torch.Generator) -> torch.Tensor:
    Q, R = torch.linalg.qr(torch.randn(n, n, dtype=F64, generator=g))
    return Q * torch.sign(torch.diagonal(R))


def mixed_truth(G: torch.Tensor, extra_zero: int, seed: int) -> torch.Tensor:
    """Random orthogonal mixing of the true generators, plus zero rows, rows shuffled."""
    g = torch.Generator().manual_seed(seed)
    L = G.shape[0]
    mixed = torch.einsum("kl,lij->kij", random_orthogonal(L, g), G)
    stacked = torch.cat([mixed, torch.zeros(extra_zero, *G.shape[1:], dtype=F64)])
    return stacked[torch.randperm(L + extra_zero, generator=g)]


def random_generators(K: int, M: int, seed: int) -> torch.Tensor:
    """Generators of ``K`` random quadratic quantities on ``R^M``."""
    g = torch.Generator().manual_seed(seed)
    A = symmetric_from_unconstrained(torch.randn(K, M, M, dtype=F64, generator=g))
    b = torch.randn(K, M, dtype=F64, generator=g)
    return generator_matrix(A, b)


# ----------------------------------------------------------------------------- parallelness


def test_parallelness_projects_onto_span():
    """In-span -> 1, orthogonal -> 0, a + b (a in span, b orthogonal) -> |a|/|a+b| (1e-12)."""
    g = torch.Generator().manual_seed(0)
    basis = torch.randn(3, 10, dtype=F64, generator=g)
    Q, _ = torch.linalg.qr(basis.T)  # (10, 3) orthonormal span
    inside = torch.randn(3, dtype=F64, generator=g) @ basis
    outside = torch.randn(10, dtype=F64, generator=g)
    outside = outside - Q @ (Q.T @ outside)
    mixed = 2.0 * inside / inside.norm() + outside / outside.norm()  # lengths 2 and 1
    vectors = torch.stack([inside, outside, mixed, torch.zeros(10, dtype=F64)])
    par = parallelness(vectors, basis)
    expected = torch.tensor([1.0, 0.0, 2.0 / math.sqrt(5.0), 0.0], dtype=F64)
    assert par.shape == (4,) and par.dtype == F64
    assert torch.allclose(par, expected, atol=1e-12)
    # A redundant (rank-deficient) basis spans the same space: same values.
    redundant = torch.cat([basis, basis[:1] + basis[1:2], torch.zeros(1, 10, dtype=F64)])
    assert torch.allclose(parallelness(vectors, redundant), expected, atol=1e-12)
    # An empty or all-zero basis spans {0}: parallelness 0.
    assert torch.equal(
        parallelness(vectors, torch.zeros(0, 10, dtype=F64)), torch.zeros(4, dtype=F64)
    )
    assert torch.equal(
        parallelness(vectors, torch.zeros(2, 10, dtype=F64)), torch.zeros(4, dtype=F64)
    )


def test_parallelness_float32_and_errors():
    """float32 inputs give float32 output within 1e-6; bad shapes are named."""
    basis = torch.eye(3, 5)
    v = torch.tensor([[3.0, 4.0, 0.0, 0.0, 0.0], [0.0, 0.0, 3.0, 4.0, 0.0]])
    par = parallelness(v, basis)
    assert par.dtype == torch.float32
    assert torch.allclose(par, torch.tensor([1.0, 0.6]), atol=1e-6)
    with pytest.raises(ValueError, match=r"vectors have dimension D = 5 but the basis has D = 4"):
        parallelness(v, torch.eye(3, 4))
    with pytest.raises(ValueError, match=r"\(n, D\)"):
        parallelness(v[0], basis)
    with pytest.raises(ValueError, match="NaN or inf"):
        parallelness(torch.full((1, 5), float("nan")), basis)
    with pytest.raises(TypeError, match="torch.Tensor"):
        parallelness([[1.0] * 5], basis)


# ----------------------------------------------------------------------------- recovery


@pytest.mark.parametrize(("name", "params", "L"), SYSTEMS)
def test_exact_recovery_of_a_rotated_true_basis(name, params, L):
    """Orthogonal mixing + 3 zero rows (K = L + 3): exactly L significant, parallelness 1."""
    G, names = truth(name, params)
    learned = mixed_truth(G, extra_zero=3, seed=1)
    a = analyse_generators(learned, G, names, parallel_level=0.99)
    assert a.true_dim == L
    assert a.n_significant == L
    assert a.recovered
    assert len(a.singular_values) == L + 3 and len(a.parallelness) == L + 3
    assert all(abs(p - 1.0) < 1e-10 for p in a.parallelness[:L])
    # Orthogonal mixing keeps the singular values of the true stack; the zero rows add zeros.
    true_sv = torch.linalg.svdvals(G.reshape(L, -1))
    assert torch.allclose(
        torch.tensor(a.absolute_singular_values[:L], dtype=F64), true_sv, atol=1e-10
    )
    assert max(a.absolute_singular_values[L:]) < 1e-12
    assert a.singular_values[0] == pytest.approx(1.0, abs=1e-15)
    assert len(a.components) == L
    assert a.generator_norms == pytest.approx(
        learned.reshape(L + 3, -1).norm(dim=1).tolist(), abs=1e-12
    )
    assert "recovered" in a.report and "NOT" not in a.report
    # The right singular vectors are orthonormal.
    V = torch.tensor(a.right_singular_vectors, dtype=F64)
    assert torch.allclose(V @ V.T, torch.eye(L + 3, dtype=F64), atol=1e-10)


def test_float32_learned_generators_are_accepted():
    """A float32 learned set of U(2) generators is still recovered (parallelness > 1 - 1e-6)."""
    G, names = truth("oscillators", {"n": 2})
    a = analyse_generators(mixed_truth(G, 2, seed=3).float(), G, names)
    assert a.n_significant == 4 and a.recovered
    assert all(p > 1 - 1e-6 for p in a.parallelness[:4])


@pytest.mark.parametrize(("name", "params", "L"), SYSTEMS[1:])
def test_random_generators_are_not_parallel(name, params, L):
    """Random quadratic generators (K = L) lie mostly outside the true span.

    The generators of quadratics on R^M span M(M+1)/2 + M dimensions (14 for M = 4, 27 for
    M = 6, 90 for M = 12); a random direction there has expected squared parallelness
    L / that, i.e. 0.29, 0.33 and 0.078 (seed 2 gives means 0.35, 0.26, 0.092 and largest
    parallelness 0.75, 0.67, 0.48), far below the 0.99 of a recovered direction.
    """
    G, names = truth(name, params)
    M = G.shape[-1] - 1
    a = analyse_generators(random_generators(L, M, seed=2), G, names)
    assert a.n_significant >= 1
    assert max(a.parallelness) < 0.9
    mean_sq = sum(p * p for p in a.parallelness) / len(a.parallelness)
    space = M * (M + 1) // 2 + M
    assert mean_sq == pytest.approx(L / space, abs=0.1)
    assert not a.recovered
    assert "NOT recovered" in a.report


def test_collapse_is_not_counted_thanks_to_min_norm():
    """Generators shrunk to norms ~1e-3 pass the relative threshold but not min_norm."""
    G, names = truth("oscillators", {"n": 2})
    learned = 1e-3 * mixed_truth(G, 2, seed=4)
    a = analyse_generators(learned, G, names)
    assert sum(lam > 0.05 for lam in a.singular_values) == 4  # normalised values all pass
    assert max(a.absolute_singular_values) < 0.01
    assert max(a.generator_norms) < 0.01
    assert a.n_significant == 0 and a.components == [] and not a.recovered
    assert analyse_generators(learned, G, names, min_norm=0.0).n_significant == 4


def test_design_quartic_probe_collapse():
    """DESIGN.md section 3: norms 0.02 and 0.003 (SO(2) would be ~1.41) -> nothing significant."""
    G_H, _ = truth("sho", {})
    other = random_generators(1, 2, seed=5)
    learned = torch.cat([0.02 * G_H / G_H.norm(), 0.003 * other / other.norm()])
    a = analyse_generators(learned, G_H, ["H"])
    assert a.generator_norms == pytest.approx([0.02, 0.003], rel=1e-12)
    assert a.singular_values[1] > 0.05  # the relative test alone would count both
    assert a.n_significant == 0
    assert "inactive" in a.report


def test_single_generator_components_and_sign():
    """K = 1: -2.5 G_H has singular value 2.5 sqrt 2 and component +1.00 on H (sign fixed)."""
    G_H, _ = truth("sho", {})
    a = analyse_generators(-2.5 * G_H, G_H, ["H"])
    assert a.absolute_singular_values == pytest.approx([2.5 * math.sqrt(2.0)], rel=1e-12)
    assert a.n_significant == 1 and a.recovered
    assert a.components == [pytest.approx({"H": 1.0}, abs=1e-12)]
    assert "≈ 1.00 H" in a.report
    V = torch.tensor(a.right_singular_vectors[0], dtype=F64)
    assert torch.allclose(V, (G_H / G_H.norm()).reshape(-1), atol=1e-12)


def test_components_orthogonal_pair():
    """A direction (R_12 + F_12)/sqrt 2 of unit generators has coefficients 0.7071 each."""
    G, names = truth("oscillators", {"n": 2})
    unit = G / G.reshape(4, -1).norm(dim=1)[:, None, None]
    direction = (unit[2] + unit[3]) / math.sqrt(2.0)
    a = analyse_generators(3.0 * direction[None], G, names)
    c = a.components[0]
    assert list(c)[:2] in (["R_12", "F_12"], ["F_12", "R_12"])
    assert c["R_12"] == pytest.approx(1 / math.sqrt(2.0), abs=1e-12)
    assert c["F_12"] == pytest.approx(1 / math.sqrt(2.0), abs=1e-12)
    assert abs(c["H_1"]) < 1e-12 and abs(c["H_2"]) < 1e-12
    assert "0.71 R_12 + 0.71 F_12" in a.report or "0.71 F_12 + 0.71 R_12" in a.report


def test_components_rabs_plus_rcom():
    """(RABS + RCOM)/sqrt 2 of unit generators: both named, equal coefficients.

    RABS_12 and RCOM_12 are not orthogonal (unit inner product c = 1/sqrt 3), so
    ||RABS + RCOM|| = sqrt(2 + 2c) and the unit singular vector (RABS + RCOM)/sqrt(2 + 2c) has
    least-squares coefficients 1/sqrt(2 + 2c) = 0.563 each (0.71 only for an orthogonal pair,
    see the test above).
    """
    G, names = truth("nbody", {"n": 3, "dim": 2})
    unit = G / G.reshape(7, -1).norm(dim=1)[:, None, None]
    i, j = names.index("RABS_12"), names.index("RCOM_12")
    cos = float((unit[i] * unit[j]).sum())
    assert cos == pytest.approx(1 / math.sqrt(3.0), abs=1e-12)
    direction = (unit[i] + unit[j]) / math.sqrt(2.0)
    learned = torch.cat([direction[None], torch.zeros(2, 13, 13, dtype=F64)])
    a = analyse_generators(learned, G, names, parallel_level=0.95)
    expected = 1.0 / math.sqrt(2.0 + 2.0 * cos)
    c = a.components[0]
    assert set(list(c)[:2]) == {"RABS_12", "RCOM_12"}
    assert c["RABS_12"] == pytest.approx(expected, abs=1e-12)
    assert c["RCOM_12"] == pytest.approx(expected, abs=1e-12)
    assert a.parallelness[0] == pytest.approx(1.0, abs=1e-12)
    line = a.report.splitlines()[4]
    assert line.startswith("v1 (lambda=1.00") and "RABS_12" in line and "RCOM_12" in line
    assert f"{expected:.2f} RABS_12" in line or f"{expected:.2f} RCOM_12" in line


def test_zero_generators_and_k_larger_than_d():
    """All-zero learned set: no significant direction, no NaN; K > D works (rank 1 -> 1)."""
    G, names = truth("oscillators", {"n": 2})
    a = analyse_generators(torch.zeros(5, 5, 5, dtype=F64), G, names)
    assert a.n_significant == 0 and not a.recovered
    assert a.singular_values == [0.0] * 5 and a.absolute_singular_values == [0.0] * 5
    assert all(math.isfinite(p) for p in a.parallelness)
    none = analyse_generators(torch.zeros(3, 3, 3))
    assert none.n_significant == 0 and none.true_dim == 0 and none.recovered
    assert none.parallelness == [0.0] * 3

    G_H, _ = truth("sho", {})  # D = 9
    coeffs = torch.linspace(-2.0, 2.0, 12, dtype=F64)
    a = analyse_generators(coeffs[:, None, None] * G_H, G_H, ["H"])
    assert len(a.singular_values) == 9 and len(a.generator_norms) == 12
    assert a.n_significant == 1 and a.recovered
    assert a.parallelness[0] == pytest.approx(1.0, abs=1e-12)
    expected = float(coeffs.norm()) * math.sqrt(2.0)
    assert a.absolute_singular_values[0] == pytest.approx(expected, rel=1e-12)

    vanilla = analyse_generators(torch.zeros(0, 5, 5), G, names)  # K = 0: a vanilla HNN
    assert vanilla.n_significant == 0 and vanilla.singular_values == [] and not vanilla.recovered


def test_to_json_contract_and_round_trip():
    """The JSON contract keys exist, json.dumps works, from_json rebuilds an equal object."""
    G, names = truth("oscillators", {"n": 2})
    a = analyse_generators(mixed_truth(G, 3, seed=6), G, names)
    d = a.to_json()
    for key in ("singular_values", "n_significant", "threshold", "parallelness", "true_dim"):
        assert key in d
    assert isinstance(d["n_significant"], int) and isinstance(d["true_dim"], int)
    assert isinstance(d["threshold"], float)
    text = json.dumps(d)
    back = SymmetryAnalysis.from_json(json.loads(text))
    assert back == a
    with pytest.raises(ValueError, match=r"unknown keys \['bogus'\]"):
        SymmetryAnalysis.from_json({**d, "bogus": 1})


def test_analyse_generators_errors():
    G, names = truth("oscillators", {"n": 2})
    with pytest.raises(ValueError, match="3-d tensor of shape"):
        analyse_generators(G[0], G)
    with pytest.raises(ValueError, match="3-d tensor of shape"):
        analyse_generators(torch.zeros(2, 5, 4, dtype=F64))
    with pytest.raises(ValueError, match="M = 3; generators act on homogeneous"):
        analyse_generators(torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match=r"\(M = 2\) but the true ones are 5 x 5 \(M = 4\)"):
        analyse_generators(torch.zeros(2, 3, 3), G)
    with pytest.raises(ValueError, match="got 3 true_names for 4 true generators"):
        analyse_generators(G, G, names[:3])
    with pytest.raises(ValueError, match="NaN or inf"):
        analyse_generators(torch.full((1, 3, 3), float("inf")))
    with pytest.raises(TypeError, match="torch.Tensor"):
        analyse_generators(G.numpy())
    with pytest.raises(ValueError, match="threshold must lie in"):
        analyse_generators(G, threshold=1.5)
    with pytest.raises(ValueError, match="min_norm must be"):
        analyse_generators(G, min_norm=-1.0)
    with pytest.raises(ValueError, match="parallel_level must lie in"):
        analyse_generators(G, parallel_level=0.0)
    with pytest.raises(ValueError, match=r"true generators \['Z'\] are zero"):
        analyse_generators(G, torch.cat([G, torch.zeros(1, 5, 5, dtype=F64)]), [*names, "Z"])


# ----------------------------------------------------------------------------- drift


def test_conservation_drift_exact_values():
    """Rotations conserve every U(1) quantity (< 1e-12); a growing radius (1 + t) makes the SHO
    energy drift by exactly ((1 + t)^2 - 1) H(x_0), averaged over trajectories."""
    sho = make_system("sho")
    t = torch.linspace(0.0, 2.0, 11, dtype=F64)
    x0 = torch.tensor([[1.0, 0.0], [0.5, -1.5]], dtype=F64)
    c, s = torch.cos(t), torch.sin(t)
    rot = torch.stack(
        [c[None] * x0[:, :1] + s[None] * x0[:, 1:], -s[None] * x0[:, :1] + c[None] * x0[:, 1:]],
        dim=-1,
    )  # (2, 11, 2) exact SHO flow
    quantities = {"H": sho.H, "H_q": sho.conserved_quantities[0]}
    d = conservation_drift(rot, quantities)
    assert set(d) == {"H", "H_q"} and d["H"].shape == (11,)
    assert float(d["H"].abs().max()) < 1e-12 and float(d["H_q"].abs().max()) < 1e-12
    grown = rot * (1.0 + t)[None, :, None]
    H0 = sho.H(x0)
    expected = ((1.0 + t) ** 2 - 1.0) * H0.mean()
    assert torch.allclose(conservation_drift(grown, {"H": sho.H})["H"], expected, atol=1e-12)
    single = conservation_drift(grown[1], {"H": sho.H})["H"]  # (P, M) input
    assert torch.allclose(single, ((1.0 + t) ** 2 - 1.0) * H0[1], atol=1e-12)
    with pytest.raises(ValueError, match=r"\(T, P, M\) or \(P, M\)"):
        conservation_drift(torch.zeros(3), {"H": sho.H})
    with pytest.raises(ValueError, match="non-empty dict"):
        conservation_drift(rot, {})
    with pytest.raises(ValueError, match=r"must map \(T, P, M\) to \(T, P\)"):
        conservation_drift(rot, {"bad": lambda x: x})


# ---------------------------------------------------------------------------- evidence


def _sho_trajectories(B=6, n=12, dt=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(B, 2, dtype=torch.float64, generator=g)
    t = torch.arange(n, dtype=torch.float64) * dt
    c, s = torch.cos(t), torch.sin(t)  # exact SHO flow: rotation of (q, p)
    q = x0[:, :1] * c + x0[:, 1:] * s
    p = -x0[:, :1] * s + x0[:, 1:] * c
    return torch.stack([q, p], dim=-1)


def test_displacement_rejects_a_direction_that_barely_moves_the_data_and_keeps_a_true_one():
    """Two learned generators: SO(2) at full size and a squeeze of norm 0.01. With the
    singular-value thresholds switched off both would count; only SO(2) moves the data
    (displacement ~1 of the spread, the squeeze ~0.01), so exactly one is significant."""
    from pyro_razor.symmetry import SymmetryMeasure

    so2 = generator_matrix(torch.eye(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64))
    flip = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    squeeze = 0.01 * generator_matrix(flip, torch.zeros(2, dtype=torch.float64))
    learned = torch.stack([so2, squeeze])
    data = _sho_trajectories()
    measure = SymmetryMeasure("cube", math.pi)
    a = analyse_generators(learned, so2[None], ["H"], threshold=0.0, min_norm=0.0,
                           trajectories=data, measure=measure, min_displacement=0.1)
    print("displacements", a.displacements, "conservation", a.conservation)
    assert a.n_significant == 1 and a.recovered
    assert a.displacements[0] > 0.5 and a.displacements[1] < 0.05
    # SO(2)'s quantity (the energy) is flat along the exact data; the squeeze's q*p is not
    assert a.conservation[0] < 1e-10 and a.conservation[1] > 0.3
    assert "moves" in a.report and "a random direction has 0.45" in a.report
    without_data = analyse_generators(learned, so2[None], ["H"], threshold=0.0, min_norm=0.0)
    assert without_data.n_significant == 2 and without_data.displacements == []


def test_chance_parallelness_and_learnable_dimension():
    from pyro_razor.analysis import chance_parallelness, learnable_dimension

    assert learnable_dimension(12) == 90 and learnable_dimension(2) == 5
    assert chance_parallelness(7, 12) == pytest.approx(math.sqrt(7 / 90))
    # the mean squared parallelness of random learnable directions is L / d
    g = torch.Generator().manual_seed(0)
    true = make_system("oscillators", n=2).generators(dtype=torch.float64)
    A = symmetric_from_unconstrained(torch.randn(4000, 4, 4, dtype=torch.float64, generator=g))
    b = torch.randn(4000, 4, dtype=torch.float64, generator=g)
    par = parallelness(generator_matrix(A, b).reshape(4000, -1), true.reshape(4, -1))
    assert float((par**2).mean()) == pytest.approx(4 / 14, rel=0.1)  # 4 of 14 learnable


def test_conservation_along_data_of_a_known_quantity():
    from pyro_razor.analysis import conservation_along_data

    data = _sho_trajectories()
    H = generator_matrix(torch.eye(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64))
    q2 = generator_matrix(torch.diag(torch.tensor([2.0, 0.0], dtype=torch.float64)),
                          torch.zeros(2, dtype=torch.float64))
    out = conservation_along_data(torch.stack([H, q2]), data)
    energy = 0.5 * (data**2).sum(-1)
    assert float(out["across"][0]) == pytest.approx(float(energy.mean(-1).std()), rel=1e-10)
    assert float(out["within"][0]) < 1e-12 and float(out["ratio"][1]) > 0.3
