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
    poisson_cocycle,
    span_basis,
    structure_constants,
    tolerance_from_noise,
)
from pyro_razor.symmetry import generator_matrix, symplectic_matrix
from pyro_razor.systems import make_system
from pyro_razor.systems.units import PhaseSpaceScaling

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


def test_nilpotent_and_solvable_algebras_with_invariants():
    heisenberg = torch.zeros(3, 3, 3, dtype=DT)  # E_01, E_12, E_02: [E_01, E_12] = E_02
    heisenberg[0, 0, 1] = heisenberg[1, 1, 2] = heisenberg[2, 0, 2] = 1.0
    # as 3 x 3 generators these are p^2/2, -q and p: their Poisson algebra has {q, p} = 1
    assert lie_algebra(heisenberg).name == "n(4)"
    report = lie_algebra(heisenberg, constants=False)
    assert report.name == "h(3)" and not report.central_constant
    inv = report.invariants
    assert inv["lower_central_series"] == [3, 1, 0] and inv["is_nilpotent"]
    assert inv["centre_dimension"] == 1 and inv["killing_signature"] == [0, 0, 3]
    affine = torch.zeros(2, 3, 3, dtype=DT)  # [E_00, E_01] = E_01
    affine[0, 0, 0] = affine[1, 0, 1] = 1.0
    assert lie_algebra(affine, constants=False).name == "unrecognised"
    inv = lie_algebra(affine, constants=False).invariants
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


# ------------------------------------------- quantities named by their action on phase space


def linear(M: int, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The coordinate ``x_i`` as a quantity ``(A, b)`` (``q_i`` for ``i < M/2``, else ``p``)."""
    b = torch.zeros(M, dtype=DT)
    b[i] = 1.0
    return torch.zeros(M, M, dtype=DT), b


def quadratic(M: int, terms: list[tuple[int, int, float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """``sum w x_i x_j`` over ``(i, j, w)`` (``i != j``), or ``w x_i^2 / 2`` for ``i == j``."""
    A = torch.zeros(M, M, dtype=DT)
    for i, j, w in terms:
        A[i, j] += w
        A[j, i] += w if i != j else 0.0
    return A, torch.zeros(M, dtype=DT)


def angular(n: int, i: int, j: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``L = q_i p_j - q_j p_i`` on ``R^{2n}``."""
    return quadratic(2 * n, [(i, n + j, 1.0), (j, n + i, -1.0)])


def energy(M: int, wq: float = 1.0, wp: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(wq |q|^2 + wp |p|^2) / 2``."""
    d = M // 2
    return quadratic(M, [(i, i, wq) for i in range(d)] + [(d + i, d + i, wp) for i in range(d)])


def quantity_generators(quantities, noise: float = 0.0, seed: int = 0) -> torch.Tensor:
    """Generators of ``[(A, b), ...]``, with Gaussian noise ``noise`` times the largest
    coefficient of each quantity added to its (symmetrised) ``A`` and ``b``."""
    A = torch.stack([q[0] for q in quantities])
    b = torch.stack([q[1] for q in quantities])
    gen = torch.Generator().manual_seed(seed)
    size = torch.maximum(A.abs().amax(dim=(1, 2)), b.abs().amax(dim=1)) * noise
    dA = torch.randn(A.shape, dtype=DT, generator=gen)
    A = A + size[:, None, None] * 0.5 * (dA + dA.mT)
    b = b + size[:, None] * torch.randn(b.shape, dtype=DT, generator=gen)
    return generator_matrix(A, b)


L3 = [angular(3, 1, 2), angular(3, 2, 0), angular(3, 0, 1)]  # L_x, L_y, L_z
P3 = [linear(6, 3), linear(6, 4), linear(6, 5)]  # p_x, p_y, p_z
U3 = [  # the u(3) of a 3-d isotropic oscillator: q_i q_j + p_i p_j and L_ij
    quadratic(6, [(i, j, 1.0 if i != j else 2.0), (3 + i, 3 + j, 1.0 if i != j else 2.0)])
    for i in range(3) for j in range(i, 3)
] + L3
QUANTITIES = {
    "iso3": (L3 + [energy(6)], "so(3) ⊕ u(1)"),
    "u3_iso": (U3, "u(3)"),
    "h3": ([linear(2, 0), linear(2, 1)], "h(3)"),
    "h5": ([linear(4, i) for i in range(4)], "h(5)"),
    "h3+u1": ([linear(4, 0), linear(4, 2), quadratic(4, [(1, 1, 1.0), (3, 3, 1.0)])],
              "h(3) ⊕ u(1)"),
    "free1": ([linear(2, 0), linear(2, 1), energy(2, 0.0, 1.0)], "n(4)"),
    "se3": (P3 + L3, "se(3)"),
    "se3+u1": (P3 + L3 + [energy(6, 0.0, 1.0)], "se(3) ⊕ u(1)"),
    "se2+su2": (  # p_x, p_y, L_z on the first pair, spin 1/2 on the second pair of 4 dof
        [linear(8, 4), linear(8, 5), angular(4, 0, 1), angular(4, 2, 3),
         quadratic(8, [(2, 3, 1.0), (6, 7, 1.0)]),
         quadratic(8, [(2, 2, 1.0), (6, 6, 1.0), (3, 3, -1.0), (7, 7, -1.0)])],
        "se(2) ⊕ su(2)",
    ),
}


@pytest.mark.parametrize("key", sorted(QUANTITIES))
def test_quantities_are_named_by_their_poisson_algebra(key):
    quantities, name = QUANTITIES[key]
    report = lie_algebra(quantity_generators(quantities))
    assert report.name == name
    assert report.to_json()["generator_dimension"] == len(quantities)
    # the constant function joins exactly when two linear parts do not commute: {q, p} = 1
    central = key.startswith(("h", "free"))
    assert report.central_constant == central
    assert report.invariants["dimension"] == len(quantities) + central


@pytest.mark.parametrize("key", ["iso3", "u3_iso", "h3", "h3+u1", "se3+u1", "free1"])
def test_names_survive_noise_and_mixing(key):
    # 1e-3 relative noise on the coefficients, then a random mixing (condition up to e^4)
    quantities, name = QUANTITIES[key]
    G = mixed(quantity_generators(quantities, noise=1e-3, seed=11), seed=12, spread=2.0)
    assert lie_algebra(G).name == name


def test_isotropic_oscillator_is_so3_plus_u1_not_u2():
    # {L, H}: abstractly u(1) + su(2) ≅ u(2), but L rotates q and p (integer weights 0, +-1
    # on a 6-dim support), while the u(2) of two oscillators acts on C^2 (weights +-1/2)
    report = lie_algebra(quantity_generators(QUANTITIES["iso3"][0]))
    assert report.simple_ideals == ["su(2)"] and report.invariants["centre_dimension"] == 1
    assert identify(report.structure_constants) == "u(2)"  # without the action: abstract
    rep = report.basis[:, :6, :6]
    assert identify(report.structure_constants, rep=rep) == "so(3) ⊕ u(1)"
    # H acts on the L-support as the complex structure J, but that support is 6-dim, not 4
    H = quantity_generators([energy(6)])[0, :6, :6]
    assert torch.equal(H, symplectic_matrix(6, dtype=DT))
    assert lie_algebra(generators("u2")).name == "u(2)"  # two oscillators: unchanged


def test_heisenberg_constant_and_generator_algebra():
    # {q, p} = 1: the generators commute (u(1)^2), the quantities span h(3) with the constant
    G = quantity_generators(QUANTITIES["h3"][0])
    assert lie_algebra(G, constants=False).name == "u(1)^2"
    report = lie_algebra(G)
    c = report.structure_constants
    assert c.shape == (3, 3, 3) and report.invariants["lower_central_series"] == [3, 1, 0]
    # [E_q, E_p] = sigma * 1, |sigma| = 1 for unit-norm q, p generators (sign from the basis)
    assert float(c[0, 1, 2].abs()) == pytest.approx(1.0, abs=1e-12)
    assert poisson_cocycle(G)[0, 1] == pytest.approx(1.0)  # {q, p} = +1
    # {q, p, p^2/2}: {q, p^2/2} = p, so the generators alone are h(3) and with 1 the filiform n(4)
    G = quantity_generators(QUANTITIES["free1"][0])
    assert lie_algebra(G, constants=False).name == "h(3)"
    assert lie_algebra(G).invariants["lower_central_series"] == [4, 2, 1, 0]
    # {q, p, (q^2 + p^2)/2}: the oscillator algebra, not in the catalogue
    G = quantity_generators([linear(2, 0), linear(2, 1), energy(2)])
    assert lie_algebra(G, constants=False).name == "se(2)"
    assert lie_algebra(G).name == "unrecognised"


def test_constants_removable_by_a_shift_of_origin_are_not_kept():
    # in shifted, rescaled units L picks up linear terms, {p_x, L_z} a constant: a coboundary
    scaling = PhaseSpaceScaling(
        shift=torch.tensor([1.0, 2.0, -1.0, 0.5, 0.3, -0.2], dtype=DT),
        position_scale=torch.tensor([2.0, 1.0, 0.5], dtype=DT),
        momentum_scale=torch.tensor([1.0, 2.0, 4.0], dtype=DT),
    )
    G = scaling.generators_to_scaled(quantity_generators(QUANTITIES["se3+u1"][0]))
    sigma = poisson_cocycle(span_basis(G))
    assert float(sigma.abs().max()) > 0.1
    report = lie_algebra(G)
    assert report.name == "se(3) ⊕ u(1)" and not report.central_constant
    # ... while {q, p} keeps its constant in any units
    G = scaling.generators_to_scaled(quantity_generators([linear(6, 0), linear(6, 3)]))
    assert lie_algebra(G).name == "h(3)"


def test_direct_sums_and_semidirect_products_by_so3():
    G, names = system_generators("nbody", n=3, dim=3)  # 15 quantities of 3 bodies in 3-d
    report = lie_algebra(G)
    # RABS - RCOM: so(3) on relative coordinates; RCOM rotates T (spin 1) and the traceless
    # T_d T_e (spin 2); |T|^2 central
    assert report.name == "(so(3) ⋉ ℝ^8, spins (1, 2)) ⊕ so(3) ⊕ u(1)"
    assert report.summands == ["so(3) ⋉ ℝ^8, spins (1, 2)", "so(3)", "u(1)"]
    se3 = lie_algebra(quantity_generators(QUANTITIES["se3"][0]))
    assert se3.invariants["killing_signature"] == [0, 3, 3]
    # the Killing kernel of se(3) is the translations R^3, an abelian ideal
    ev, U = torch.linalg.eigh(killing_form(se3.structure_constants))  # ascending: 3 < 0, 3 = 0
    assert float(ev[2]) < -0.1 and float(ev[3:].abs().max()) < 1e-10
    kernel = U[:, 3:]
    assert float(torch.einsum("ia,jb,ijk->abk", kernel, kernel, se3.structure_constants)
                 .abs().max()) < 1e-10


def test_tolerance_from_noise_floor():
    # 10 noise stds (the floor is 2 stds), between the exact-data 1e-2 and the cap 0.1
    assert tolerance_from_noise(0.0) == 1e-2
    assert tolerance_from_noise(4e-3) == pytest.approx(2e-2)
    assert tolerance_from_noise(0.5) == 0.1
    # at 1 % relative noise on the coefficients the default 1e-2 fails h(5), 0.1 does not
    G = quantity_generators(QUANTITIES["h5"][0], noise=1e-2, seed=5)
    assert lie_algebra(G).name == "unrecognised"
    assert lie_algebra(G, tol=tolerance_from_noise(2e-2)).name == "h(5)"


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
