"""Tests for :mod:`pyro_razor.discovery.algebra` (float64 throughout)."""

from __future__ import annotations

import functools
import json

import pytest
import torch

from pyro_razor.discovery.algebra import (
    LieAlgebraReport,
    closure_error,
    identify,
    invariants,
    killing_form,
    lie_algebra,
    span_basis,
    structure_constants,
)
from pyro_razor.symmetry import generator_matrix
from pyro_razor.systems import make_system

DT = torch.float64

# Each algebra: (system, system kwargs, picks). A pick is a quantity name or {name: weight}.
_RABS = ["RABS_12", "RABS_13", "RABS_23"]
_RCOM = ["RCOM_12", "RCOM_13", "RCOM_23"]
ALGEBRAS = {
    "u1": ("sho", {}, ["H"]),
    "u1^2": ("oscillators", {"n": 2}, ["H_1", "H_2"]),
    "su2": ("oscillators", {"n": 2}, ["R_12", "F_12", {"H_1": 1.0, "H_2": -1.0}]),
    "u2": ("oscillators", {"n": 2}, ["H_1", "H_2", "R_12", "F_12"]),
    "u3": ("oscillators", {"n": 3}, None),
    "so3": ("nbody", {"n": 3, "dim": 3}, _RABS),
    "se2": ("nbody", {"n": 3, "dim": 2}, ["T_1", "T_2", "RABS_12"]),
    "u1+se2": ("nbody", {"n": 3, "dim": 2}, ["T_1", "T_2", "RABS_12", "RCOM_12"]),
    "u1^2+su2": (
        "oscillators",
        {"n": 3},
        ["H_3", {"H_1": 1.0, "H_2": 1.0}, "R_12", "F_12", {"H_1": 1.0, "H_2": -1.0}],
    ),
    "su2+su2": (
        "nbody",
        {"n": 3, "dim": 3},
        _RCOM + [{a: 1.0, b: -1.0} for a, b in zip(_RABS, _RCOM, strict=True)],
    ),
    "orbit": ("nbody", {"n": 3, "dim": 2}, None),
}
ORBIT_NAME = "u(1)^2 ⊕ (so(2) ⋉ ℝ^4), weights (1, 2): the 2d n-body orbit algebra"
EXPECTED = {
    "u1": "u(1)",
    "u1^2": "u(1)^2",
    "su2": "su(2) ≅ so(3)",
    "u2": "u(2)",
    "u3": "u(3)",
    "so3": "su(2) ≅ so(3)",
    "se2": "se(2)",
    "u1+se2": "u(1) ⊕ se(2)",
    "u1^2+su2": "u(1)^2 ⊕ su(2)",
    "su2+su2": "su(2) ⊕ su(2) ≅ so(4)",
    "orbit": ORBIT_NAME,
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These tensors are tiny: one thread avoids oversubscription on a shared 2-core box."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@functools.cache
def system_generators(name: str, **kwargs) -> tuple[torch.Tensor, tuple[str, ...]]:
    system = make_system(name, **kwargs)
    names = tuple(q.name for q in system.conserved_quantities)
    return system.generators(dtype=DT), names


def generators(key: str) -> torch.Tensor:
    """The ``(K, M+1, M+1)`` ground-truth generators of the algebra ``ALGEBRAS[key]``."""
    name, kwargs, picks = ALGEBRAS[key]
    G, names = system_generators(name, **kwargs)
    if picks is None:
        return G.clone()
    out = []
    for pick in picks:
        weights = {pick: 1.0} if isinstance(pick, str) else pick
        out.append(sum(w * G[names.index(n)] for n, w in weights.items()))
    return torch.stack(out)


def mixed(G: torch.Tensor, seed: int, noise: float = 0.0, spread: float = 1.0) -> torch.Tensor:
    """Random invertible mixing ``U diag(s) V`` of ``G`` (``log s`` uniform in
    ``[-spread, spread]``, so condition number up to ``e^(2 spread)``), then rescaling, then
    ``noise`` times the largest entry of each mixed generator added as Gaussian noise."""
    gen = torch.Generator().manual_seed(seed)
    K = G.shape[0]
    U, V = (torch.linalg.qr(torch.randn(K, K, dtype=DT, generator=gen))[0] for _ in range(2))
    s = torch.exp(spread * (2.0 * torch.rand(K, dtype=DT, generator=gen) - 1.0))
    H = 3.7 * torch.einsum("ab,bij->aij", U @ torch.diag(s) @ V, G)
    size = H.abs().amax(dim=(1, 2), keepdim=True)
    return H + noise * size * torch.randn(H.shape, dtype=DT, generator=gen)


def quadratic_generators(As: list[torch.Tensor]) -> torch.Tensor:
    A = torch.stack(As)
    return generator_matrix(A, torch.zeros(A.shape[0], A.shape[-1], dtype=DT))


def angular_momenta(n: int) -> torch.Tensor:
    """Generators of ``L_ij = q_i p_j - q_j p_i`` on ``R^{2n}``: the algebra ``so(n)``."""
    As = []
    for i in range(n):
        for j in range(i + 1, n):
            A = torch.zeros(2 * n, 2 * n, dtype=DT)
            A[i, n + j] = A[n + j, i] = 1.0
            A[j, n + i] = A[n + i, j] = -1.0
            As.append(A)
    return quadratic_generators(As)


def brackets(E: torch.Tensor) -> torch.Tensor:
    return E[:, None] @ E[None] - E[None] @ E[:, None]


# ---------------------------------------------------------------------------------- span_basis


def test_span_basis_is_orthonormal_and_spans_the_generators():
    G = mixed(generators("u2"), seed=0)
    E = span_basis(G)
    assert E.shape == (4, 5, 5) and E.dtype == DT
    gram = torch.einsum("aij,bij->ab", E, E)
    assert torch.allclose(gram, torch.eye(4, dtype=DT), atol=1e-12)
    coef = torch.einsum("kij,aij->ka", G, E)
    assert float((G - torch.einsum("ka,aij->kij", coef, E)).norm() / G.norm()) < 1e-12


def test_span_basis_numerical_rank():
    G = generators("u2")
    dependent = torch.stack([G[0], G[1], G[0] - 2.5 * G[1], G[2]])
    assert span_basis(dependent).shape[0] == 3
    assert span_basis(torch.zeros(2, 5, 5, dtype=DT)).shape == (0, 5, 5)
    assert span_basis(torch.zeros(0, 5, 5, dtype=DT)).shape == (0, 5, 5)


# ----------------------------------------------------------------------- structure constants


@pytest.mark.parametrize("key", sorted(ALGEBRAS))
def test_structure_constants_reproduce_brackets_and_are_a_lie_algebra(key):
    E = span_basis(mixed(generators(key), seed=1))
    c = structure_constants(E)
    d = E.shape[0]
    assert c.shape == (d, d, d)
    recon = torch.einsum("ijk,kab->ijab", c, E)
    assert float((brackets(E) - recon).abs().max()) < 1e-10
    assert float((c + c.transpose(0, 1)).abs().max()) < 1e-10
    jacobi = (
        torch.einsum("ijl,lkm->ijkm", c, c)
        + torch.einsum("jkl,lim->ijkm", c, c)
        + torch.einsum("kil,ljm->ijkm", c, c)
    )
    assert float(jacobi.abs().max()) < 1e-10
    assert closure_error(E, c) < 1e-10


def test_structure_constants_of_a_non_orthonormal_basis():
    # least squares also works on the raw generators R_12, F_12, H_1 - H_2
    G = generators("su2")
    c = structure_constants(G)
    assert float((brackets(G) - torch.einsum("ijk,kab->ijab", c, G)).abs().max()) < 1e-10
    assert structure_constants(torch.zeros(0, 3, 3, dtype=DT)).shape == (0, 0, 0)


def test_closure_error_of_a_closed_and_of_an_open_set():
    E = span_basis(mixed(generators("u3"), seed=2))
    assert closure_error(E) < 1e-10
    # [T_x, RABS] is T_y, orthogonal to span(T_x, RABS): the whole bracket leaves the span
    G, names = system_generators("nbody", n=3, dim=2)
    open_set = G[[names.index("T_1"), names.index("RABS_12")]]
    assert abs(closure_error(span_basis(open_set)) - 1.0) < 1e-10
    report = lie_algebra(open_set)
    assert report.name == "not closed" and abs(report.closure_error - 1.0) < 1e-10
    # with 1e-4 noise on a closed set the error is small but not zero (measured 8.3e-4)
    noisy = lie_algebra(mixed(generators("orbit"), seed=3, noise=1e-4)).closure_error
    assert 1e-6 < noisy < 2e-2


# ------------------------------------------------------------------------------ identification


@pytest.mark.parametrize("mode", ["exact", "mixed", "noisy"])
@pytest.mark.parametrize("key", sorted(ALGEBRAS))
def test_identify_known_algebras(key, mode):
    # "mixed": condition number up to e^12, exact; "noisy": up to e^2 plus 1e-4 relative noise
    G = generators(key)
    if mode == "mixed":
        G = mixed(G, seed=len(key), spread=6.0)
    elif mode == "noisy":
        G = mixed(G, seed=len(key), noise=1e-4)
    report = lie_algebra(G)
    assert report.name == EXPECTED[key]
    assert report.invariants["dimension"] == G.shape[0]


def test_killing_signatures():
    for key, signature in [("su2", [0, 3, 0]), ("se2", [0, 1, 2]), ("orbit", [0, 1, 6])]:
        report = lie_algebra(mixed(generators(key), seed=4))
        assert report.invariants["killing_signature"] == signature
    # the Frobenius product on these su(2) generators is ad-invariant, so B = -kappa I
    B = killing_form(structure_constants(span_basis(generators("su2"))))
    kappa = -float(B[0, 0])
    assert kappa > 0 and torch.allclose(B, -kappa * torch.eye(3, dtype=DT), atol=1e-10 * kappa)


def test_orbit_algebra_structure():
    G, names = system_generators("nbody", n=3, dim=2)
    g = {n: G[names.index(n)] for n in names}
    # RABS - RCOM and P_x + P_y commute with all 7 generators
    for central in (g["RABS_12"] - g["RCOM_12"], g["P_1"] + g["P_2"]):
        assert float((central @ G - G @ central).abs().max()) < 1e-12
    # RCOM rotates (T_x, T_y) with weight 1 and (Q, P_x - P_y) with weight 2
    h = torch.stack([g["T_1"], g["T_2"], g["Q_12"], g["P_1"] - g["P_2"], g["RCOM_12"]])
    c = structure_constants(h)
    assert closure_error(h, c) < 1e-10
    ev = torch.linalg.eigvals(c[4, :4, :4].T)
    assert float(ev.real.abs().max()) < 1e-10
    omega = torch.sort(ev.imag.abs()).values
    assert torch.allclose(omega / omega[0], torch.tensor([1.0, 1.0, 2.0, 2.0], dtype=DT))
    report = lie_algebra(mixed(G, seed=5, noise=1e-4))
    assert report.invariants == {
        "dimension": 7,
        "centre_dimension": 2,
        "derived_dimension": 4,
        "derived_series": [7, 4, 0],
        "lower_central_series": [7, 4],
        "is_abelian": False,
        "is_nilpotent": False,
        "is_solvable": True,
        "killing_signature": [0, 1, 6],
        "rank": 3,
    }
    assert report.rotation_weights == [1.0, 2.0]


def test_semisimple_names_and_ideals():
    u3 = lie_algebra(generators("u3"))
    assert u3.simple_ideals == ["su(3)"] and u3.invariants["rank"] == 3
    assert u3.invariants["killing_signature"] == [0, 8, 1]
    assert lie_algebra(angular_momenta(4)).name == "su(2) ⊕ su(2) ≅ so(4)"
    so5 = lie_algebra(mixed(angular_momenta(5), seed=6, noise=1e-4))
    assert so5.name == "so(5) ≅ sp(2)" and so5.invariants["rank"] == 2
    # q^2, p^2 and qp generate the non-compact sp(2, R) = sl(2, R)
    e = torch.eye(2, dtype=DT)
    sl2 = lie_algebra(quadratic_generators([e[:1].T @ e[:1], e[1:].T @ e[1:], 1.0 - e]))
    assert sl2.name == "sl(2,ℝ)" and sl2.invariants["killing_signature"] == [2, 1, 0]


def test_nilpotent_and_solvable_algebras_are_unrecognised_with_invariants():
    heisenberg = torch.zeros(3, 3, 3, dtype=DT)  # E_01, E_12, E_02: [E_01, E_12] = E_02
    heisenberg[0, 0, 1] = heisenberg[1, 1, 2] = heisenberg[2, 0, 2] = 1.0
    report = lie_algebra(heisenberg)
    assert report.name == "unrecognised"
    inv = report.invariants
    assert inv["lower_central_series"] == [3, 1, 0] and inv["is_nilpotent"]
    assert inv["centre_dimension"] == 1 and inv["killing_signature"] == [0, 0, 3]
    affine = torch.zeros(2, 3, 3, dtype=DT)  # [E_00, E_01] = E_01
    affine[0, 0, 0] = affine[1, 0, 1] = 1.0
    inv = lie_algebra(affine).invariants
    assert inv["derived_series"] == [2, 1, 0] and inv["lower_central_series"] == [2, 1]
    assert inv["is_solvable"] and not inv["is_nilpotent"] and inv["killing_signature"] == [1, 0, 1]


def test_abelian_ideal_with_rounding_level_constants():
    # T_x, T_y, P_x, P_y, Q commute exactly; after mixing c is rounding (~1e-17), not structure
    G, names = system_generators("nbody", n=3, dim=2)
    ideal = G[[names.index(n) for n in ["T_1", "T_2", "P_1", "P_2", "Q_12"]]]
    c = structure_constants(span_basis(mixed(ideal, seed=9)))
    assert 0.0 < float(c.abs().max()) < 1e-14
    assert identify(c) == "u(1)^5" and invariants(c)["derived_series"] == [5, 0]
    assert lie_algebra(mixed(ideal, seed=9, noise=1e-4)).name == "u(1)^5"


def test_identify_is_invariant_under_orthogonal_change_and_scaling():
    G = generators("orbit")
    c = structure_constants(span_basis(G))
    Q = torch.linalg.qr(torch.randn(7, 7, dtype=DT, generator=torch.Generator().manual_seed(7)))[0]
    c_rot = torch.einsum("ia,jb,kc,abc->ijk", Q, Q, Q, c)
    assert identify(c_rot) == identify(c) == ORBIT_NAME
    assert invariants(c_rot) == invariants(c)
    scaled = lie_algebra(1e3 * G)
    assert scaled.name == ORBIT_NAME
    assert torch.allclose(killing_form(scaled.structure_constants), killing_form(c), atol=1e-10)


# ---------------------------------------------------------------------------------- the report


def test_report_to_json_is_plain():
    report = lie_algebra(mixed(generators("se2"), seed=8))
    assert isinstance(report, LieAlgebraReport)
    data = json.loads(json.dumps(report.to_json()))
    assert data["dimension"] == 3 and data["name"] == "se(2)"
    assert data["centre_dimension"] == 0 and data["derived_dimension"] == 2
    assert data["killing_signature"] == [0, 1, 2]
    assert data["is_solvable"] is True and data["is_abelian"] is False
    assert data["is_nilpotent"] is False and data["closure_error"] < 1e-10
    c = torch.tensor(data["structure_constants"], dtype=DT)
    assert c.shape == (3, 3, 3) and torch.equal(c, report.structure_constants)


def test_empty_stack_is_the_zero_algebra():
    report = lie_algebra(torch.zeros(0, 5, 5, dtype=DT))
    data = report.to_json()
    assert data["dimension"] == 0 and data["name"] == "0" and data["rank"] == 0
    assert data["structure_constants"] == [] and data["killing_signature"] == [0, 0, 0]
    assert data["is_abelian"] and data["is_solvable"] and data["closure_error"] == 0.0


# ---------------------------------------------------------------------------------- bad input

_G = torch.zeros(2, 5, 5, dtype=DT)
_NAN = _G.clone()
_NAN[0, 0, 1] = float("nan")


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: span_basis(torch.zeros(3, 4, dtype=DT)), r"shape \(K, M\+1, M\+1\)"),
        (lambda: lie_algebra(torch.zeros(2, 4, 5, dtype=DT)), r"shape \(K, M\+1, M\+1\)"),
        (lambda: lie_algebra(torch.zeros(2, 4, 4, dtype=DT)), "M = 3"),
        (lambda: lie_algebra(_NAN), "NaN"),
        (lambda: span_basis(_G, rtol=0.0), "rtol"),
        (lambda: lie_algebra(_G, tol=2.0), "tol"),
        (lambda: structure_constants(torch.zeros(2, 3, dtype=DT)), "generators must have"),
        (lambda: identify(torch.zeros(2, 3, 3, dtype=DT)), r"shape \(d, d, d\)"),
        (lambda: invariants(torch.full((2, 2, 2), float("nan"), dtype=DT)), "NaN"),
        (lambda: identify(torch.zeros(2, 2, 2, dtype=DT), scale=-1.0), "scale"),
        (lambda: closure_error(span_basis(generators("su2")), torch.zeros(2, 2, 2)), "dimension"),
    ],
)
def test_bad_input_raises_one_clear_line(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)
