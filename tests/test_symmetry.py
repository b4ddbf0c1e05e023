"""Tests for :mod:`pyro_razor.symmetry` (float64 throughout unless stated)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from pyro_razor.symmetry import (
    QuadraticQuantity,
    SymmetryMeasure,
    apply_flow,
    check_phase_dim,
    flow_matrices,
    generator_from_quantity,
    generator_matrix,
    generators_of,
    lie_bracket,
    poisson_bracket,
    poisson_bracket_quadratic,
    quadratic_value,
    quantity_from_generator,
    symmetric_from_unconstrained,
    symplectic_matrix,
)

DT = torch.float64


def random_quadratic(M: int, seed: int, scale: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Random symmetric ``A`` (entries ~ ``scale``) and ``b`` of a quadratic on ``R^M``."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(M, M, dtype=DT, generator=g)
    A = scale * symmetric_from_unconstrained(W)
    b = scale * torch.randn(M, dtype=DT, generator=g)
    return A, b


def solve_affine_flow(A: torch.Tensor, b: torch.Tensor, x0: torch.Tensor, t: float) -> np.ndarray:
    """``x(t)`` for ``x' = J (A x + b)`` by DOP853 with ``rtol = atol = 1e-12``."""
    J = symplectic_matrix(A.shape[-1], dtype=DT).numpy()
    JA, Jb = J @ A.numpy(), J @ b.numpy()
    sol = solve_ivp(
        lambda s, y: JA @ y + Jb, (0.0, t), x0.numpy(), method="DOP853", rtol=1e-12, atol=1e-12
    )
    return sol.y[:, -1]


# ----------------------------------------------------------------------------- J, phase dim


@pytest.mark.parametrize("M", [2, 4, 6])
def test_symplectic_matrix_identities(M):
    """``J^T = -J``, ``J^2 = -I`` and the block layout ``[[0, I], [-I, 0]]`` (positions first)."""
    J = symplectic_matrix(M, dtype=DT)
    assert J.shape == (M, M)
    assert torch.equal(J.T, -J)
    assert torch.equal(J @ J, -torch.eye(M, dtype=DT))
    d = M // 2
    assert torch.equal(J[:d, d:], torch.eye(d, dtype=DT))
    assert torch.equal(J[:d, :d], torch.zeros(d, d, dtype=DT))


def test_check_phase_dim():
    assert check_phase_dim(4) == 4
    for bad in [3, 0, -2]:
        with pytest.raises(ValueError, match="positive even number"):
            check_phase_dim(bad)
    for bad in [2.0, "4", True]:
        with pytest.raises(TypeError, match="phase dimension must be an int"):
            check_phase_dim(bad)
    with pytest.raises(ValueError, match="positive even number"):
        symplectic_matrix(5)


# ----------------------------------------------------------------------------- quadratics


def test_symmetric_from_unconstrained_and_quadratic_value():
    """``A = (W + W^T)/2`` is symmetric and leaves symmetric input unchanged;
    ``quadratic_value`` equals ``1/2 x^T A x + b^T x`` evaluated row by row."""
    g = torch.Generator().manual_seed(0)
    W = torch.randn(4, 4, dtype=DT, generator=g)
    A = symmetric_from_unconstrained(W)
    assert torch.equal(A, A.T)
    torch.testing.assert_close(symmetric_from_unconstrained(A), A, rtol=0, atol=0)
    b = torch.randn(4, dtype=DT, generator=g)
    x = torch.randn(2, 3, 4, dtype=DT, generator=g)
    values = quadratic_value(A, b, x)
    assert values.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            v = x[i, j]
            torch.testing.assert_close(values[i, j], 0.5 * v @ A @ v + b @ v, rtol=1e-14, atol=0)


def test_quadratic_quantity():
    A, b = random_quadratic(4, 1)
    C = QuadraticQuantity("C", A, b)
    assert C.phase_dim == 4
    x = torch.randn(7, 4, dtype=DT, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(C(x), quadratic_value(A, b, x), rtol=1e-15, atol=0)
    assert C(x.float()).dtype == torch.float32
    torch.testing.assert_close(C.generator(), generator_matrix(A, b), rtol=0, atol=0)
    with pytest.raises(ValueError, match="'bad': A must be symmetric"):
        QuadraticQuantity("bad", A + torch.triu(torch.ones(4, 4, dtype=DT), 1), b)
    with pytest.raises(ValueError, match=r"A must be \(M, M\) and b \(M,\)"):
        QuadraticQuantity("bad", A, b[:3])


def test_generators_of_stacks_and_casts():
    quantities = [QuadraticQuantity(f"C{k}", *random_quadratic(4, 10 + k)) for k in range(3)]
    G = generators_of(quantities, dtype=torch.float32)
    assert G.shape == (3, 5, 5) and G.dtype == torch.float32
    for k, q in enumerate(quantities):
        torch.testing.assert_close(G[k], q.generator().float(), rtol=0, atol=0)
    with pytest.raises(ValueError, match="at least one quantity"):
        generators_of([])


# ----------------------------------------------------------------------------- generators


@pytest.mark.parametrize("M", [2, 4, 6])
def test_generator_matrix_layout_and_round_trip(M):
    """``G = [[J A, J b], [0, 0]]`` and ``quantity_from_generator`` recovers ``(A, b)``."""
    A, b = random_quadratic(M, M)
    J = symplectic_matrix(M, dtype=DT)
    G = generator_matrix(A, b)
    assert G.shape == (M + 1, M + 1)
    torch.testing.assert_close(G[:M, :M], J @ A, rtol=0, atol=0)
    torch.testing.assert_close(G[:M, M], J @ b, rtol=0, atol=1e-15)
    assert torch.equal(G[M], torch.zeros(M + 1, dtype=DT))
    A2, b2 = quantity_from_generator(G)
    torch.testing.assert_close(A2, A, rtol=0, atol=1e-15)
    torch.testing.assert_close(b2, b, rtol=0, atol=1e-15)


def test_generator_matrix_batched_round_trip():
    """Batched ``(K, M, M)``/``(K, M)`` inputs give ``(K, M+1, M+1)``; round trip exact."""
    pairs = [random_quadratic(4, 20 + k) for k in range(5)]
    A = torch.stack([p[0] for p in pairs])
    b = torch.stack([p[1] for p in pairs])
    G = generator_matrix(A, b)
    assert G.shape == (5, 5, 5)
    for k in range(5):
        torch.testing.assert_close(G[k], generator_matrix(A[k], b[k]), rtol=0, atol=0)
    A2, b2 = quantity_from_generator(G)
    torch.testing.assert_close(A2, A, rtol=0, atol=1e-15)
    torch.testing.assert_close(b2, b, rtol=0, atol=1e-15)


def test_generator_matrix_shape_errors():
    A, b = random_quadratic(4, 3)
    with pytest.raises(ValueError, match=r"generator_matrix needs A of shape \(\.\.\., M, M\)"):
        generator_matrix(A, b[:2])
    with pytest.raises(ValueError, match=r"got A \(4, 3\)"):
        generator_matrix(A[:, :3], b)


def test_generator_from_quantity_matches_generator_matrix():
    """A lambda-defined quadratic (plus a constant, which has no generator) gives the same
    generator as ``generator_matrix(A, b)`` (1e-12); angular momentum ``q1 p2 - q2 p1`` gives
    the rotation generator."""
    A, b = random_quadratic(6, 4)
    G = generator_from_quantity(lambda x: 0.5 * ((x @ A) * x).sum(-1) + x @ b + 3.0, 6)
    torch.testing.assert_close(G, generator_matrix(A, b), rtol=1e-12, atol=1e-12)

    L = generator_from_quantity(lambda x: x[..., 0] * x[..., 3] - x[..., 1] * x[..., 2], 4)
    A_L = torch.zeros(4, 4, dtype=DT)
    A_L[0, 3] = A_L[3, 0] = 1.0
    A_L[1, 2] = A_L[2, 1] = -1.0
    torch.testing.assert_close(L, generator_matrix(A_L, torch.zeros(4, dtype=DT)))
    # its flow rotates positions and momenta together: q -> R q, p -> R p
    T = flow_matrices(L[None], torch.tensor([[0.3]], dtype=DT))[0]
    c, s = math.cos(0.3), math.sin(0.3)
    R = torch.tensor([[c, -s], [s, c]], dtype=DT)
    torch.testing.assert_close(T[:2, :2], R, rtol=0, atol=1e-14)
    torch.testing.assert_close(T[2:4, 2:4], R, rtol=0, atol=1e-14)


def test_generator_from_quantity_rejects_non_quadratic():
    with pytest.raises(ValueError, match="the observable is not quadratic"):
        generator_from_quantity(lambda x: (x**4).sum(-1), 4)
    with pytest.raises(ValueError, match="the observable is not quadratic"):
        generator_from_quantity(lambda x: x[..., 0] ** 2 * x[..., 1], 2)
    with pytest.raises(ValueError, match="positive even number"):
        generator_from_quantity(lambda x: (x**2).sum(-1), 3)


# ----------------------------------------------------------------------------- flows


@pytest.mark.parametrize("M", [2, 4, 6])
def test_single_generator_flow_matches_ode_solution(M):
    """``apply_flow(flow_matrices(G, tau, scale), x)`` equals the DOP853 solution of
    ``x' = J (A x + b)`` at time ``scale * tau`` (relative error < 1e-6, measured <= 1.2e-13),
    for several ``tau`` of both signs and several points at once."""
    A, b = random_quadratic(M, 100 + M)
    G = generator_matrix(A, b)[None]
    scale = 1.3
    tau = torch.tensor([[-0.8], [0.0], [0.35], [1.1]], dtype=DT)
    x = torch.randn(3, M, dtype=DT, generator=torch.Generator().manual_seed(M))
    out = apply_flow(flow_matrices(G, tau, scale=scale), x)
    assert out.shape == (4, 3, M)
    for s in range(4):
        for n in range(3):
            ref = solve_affine_flow(A, b, x[n], scale * tau[s, 0].item())
            err = np.linalg.norm(out[s, n].numpy() - ref) / np.linalg.norm(ref)
            assert err < 1e-6, (s, n, err)


@pytest.mark.parametrize("M", [2, 4, 6])
def test_combined_generator_flow_is_flow_of_weighted_sum(M):
    """``expm(sum_k tau_k G_k)`` is the time-1 flow of the quadratic ``sum_k tau_k C_k``:
    ``x' = J (A x + b)`` with ``A = sum tau_k A_k``, ``b = sum tau_k b_k`` (rel. err < 1e-6)."""
    K = 3
    pairs = [random_quadratic(M, 200 + 10 * M + k) for k in range(K)]
    G = torch.stack([generator_matrix(A, b) for A, b in pairs])
    g = torch.Generator().manual_seed(M)
    tau = torch.rand(2, K, dtype=DT, generator=g) * 2 - 1
    x = torch.randn(2, M, dtype=DT, generator=g)
    out = apply_flow(flow_matrices(G, tau), x)
    for s in range(2):
        A = sum(tau[s, k] * pairs[k][0] for k in range(K))
        b = sum(tau[s, k] * pairs[k][1] for k in range(K))
        for n in range(2):
            ref = solve_affine_flow(A, b, x[n], 1.0)
            err = np.linalg.norm(out[s, n].numpy() - ref) / np.linalg.norm(ref)
            assert err < 1e-6, (s, n, err)


def test_flow_group_property_identity_and_invariance():
    """For one generator: ``Phi^{t1 + t2} = Phi^{t1} Phi^{t2}`` (1e-12), ``Phi^0 = I`` exactly,
    the flow of ``C`` conserves ``C`` and is symplectic (``R^T J R = J``), all to 1e-12."""
    A, b = random_quadratic(4, 7)
    G = generator_matrix(A, b)[None]
    t1, t2 = 0.4, -1.1
    T = flow_matrices(G, torch.tensor([[t1], [t2], [t1 + t2], [0.0]], dtype=DT), scale=0.9)
    torch.testing.assert_close(T[2], T[0] @ T[1], rtol=0, atol=1e-12)
    torch.testing.assert_close(T[0] @ T[1], T[1] @ T[0], rtol=0, atol=1e-12)
    assert torch.equal(T[3], torch.eye(5, dtype=DT))
    torch.testing.assert_close(T[:, 4], torch.tensor([0, 0, 0, 0, 1.0], dtype=DT).expand(4, 5))
    x = torch.randn(6, 4, dtype=DT, generator=torch.Generator().manual_seed(8))
    moved = apply_flow(T, x)
    torch.testing.assert_close(
        quadratic_value(A, b, moved), quadratic_value(A, b, x).expand(4, 6), rtol=0, atol=1e-12
    )
    J = symplectic_matrix(4, dtype=DT)
    R = T[:, :4, :4]
    torch.testing.assert_close(R.transpose(-1, -2) @ J @ R, J.expand(4, 4, 4), rtol=0, atol=1e-12)


def test_flow_matrices_batched_tau_and_apply_flow_leading_dims():
    """``tau`` of shape ``(2, 3, K)`` gives ``(2, 3, M+1, M+1)``; ``apply_flow`` maps
    ``(S, M+1, M+1)`` and ``(a, b, M)`` points to ``(S, a, b, M)`` and equals
    ``T[:M, :M] x + T[:M, M]`` per point (1e-14)."""
    G = torch.stack([generator_matrix(*random_quadratic(4, 30 + k)) for k in range(2)])
    tau = torch.randn(2, 3, 2, dtype=DT, generator=torch.Generator().manual_seed(9))
    T = flow_matrices(G, tau)
    assert T.shape == (2, 3, 5, 5)
    torch.testing.assert_close(
        T[1, 2], torch.linalg.matrix_exp((tau[1, 2] @ G.reshape(2, 25)).reshape(5, 5))
    )
    S = T.reshape(6, 5, 5)
    x = torch.randn(2, 5, 4, dtype=DT, generator=torch.Generator().manual_seed(10))
    out = apply_flow(S, x)
    assert out.shape == (6, 2, 5, 4)
    expected = S[3, :4, :4] @ x[1, 2] + S[3, :4, 4]
    torch.testing.assert_close(out[3, 1, 2], expected, rtol=0, atol=1e-14)


def test_flow_shape_errors():
    G = generator_matrix(*random_quadratic(4, 11))[None]
    with pytest.raises(ValueError, match=r"generators must have shape \(K, M\+1, M\+1\)"):
        flow_matrices(G[0], torch.zeros(1, 1, dtype=DT))
    with pytest.raises(ValueError, match=r"generators must have shape"):
        flow_matrices(G[:, :, :4], torch.zeros(1, 1, dtype=DT))
    with pytest.raises(ValueError, match="tau has 2 symmetry times per sample but there are 1"):
        flow_matrices(G, torch.zeros(3, 2, dtype=DT))
    T = flow_matrices(G, torch.zeros(3, 1, dtype=DT))
    with pytest.raises(
        ValueError, match=r"transforms must have shape \(\.\.\., 7, 7\) to act on points with M = 6"
    ):
        apply_flow(T, torch.zeros(2, 6, dtype=DT))


# ----------------------------------------------------------------------------- brackets


def test_poisson_bracket_canonical_and_conserved_quantities():
    """``{q_i, p_j} = delta_ij``, ``{q_i, q_j} = 0``, and angular momentum of the isotropic
    2-d oscillator Poisson-commutes with ``H`` (|.| < 1e-13); ``{H, q} = -p``."""
    x = torch.randn(5, 4, dtype=DT, generator=torch.Generator().manual_seed(12))
    ones = torch.ones(5, dtype=DT)
    torch.testing.assert_close(poisson_bracket(lambda z: z[..., 0], lambda z: z[..., 2], x), ones)
    torch.testing.assert_close(
        poisson_bracket(lambda z: z[..., 0], lambda z: z[..., 3], x), 0 * ones
    )
    torch.testing.assert_close(
        poisson_bracket(lambda z: z[..., 0], lambda z: z[..., 1], x), 0 * ones
    )

    def H(z):
        return 0.5 * (z**2).sum(-1)

    def L(z):
        return z[..., 0] * z[..., 3] - z[..., 1] * z[..., 2]

    assert poisson_bracket(H, L, x).abs().max().item() < 1e-13
    torch.testing.assert_close(poisson_bracket(H, lambda z: z[..., 0], x), -x[:, 2])


@pytest.mark.parametrize("M", [2, 4, 6])
def test_poisson_bracket_quadratic_matches_autograd(M):
    """``poisson_bracket_quadratic`` returns ``(A, b, c)`` with ``{C1, C2}(x) =
    1/2 x^T A x + b^T x + c`` -- constant included -- equal to the autograd bracket (1e-12);
    ``A`` is symmetric."""
    A1, b1 = random_quadratic(M, 40 + M)
    A2, b2 = random_quadratic(M, 50 + M)
    A, b, c = poisson_bracket_quadratic(A1, b1, A2, b2)
    assert A.shape == (M, M) and b.shape == (M,) and c.shape == ()
    torch.testing.assert_close(A, A.T, rtol=0, atol=1e-15)
    x = torch.randn(8, M, dtype=DT, generator=torch.Generator().manual_seed(M))
    auto = poisson_bracket(
        lambda z: quadratic_value(A1, b1, z), lambda z: quadratic_value(A2, b2, z), x
    )
    torch.testing.assert_close(quadratic_value(A, b, x) + c, auto, rtol=1e-12, atol=1e-12)
    assert abs(c.item()) > 1e-3  # the constant is exercised, not trivially zero


@pytest.mark.parametrize("M", [2, 4, 6])
def test_lie_bracket_of_generators_is_generator_of_poisson_bracket(M):
    """With ``G(C) = [[J A, J b], [0, 0]]`` and ``{f, g} = grad f . J grad g``:

        G({C1, C2}) = + [G(C1), G(C2)] = G(C1) G(C2) - G(C2) G(C1)

    (top-left block: ``J A1 J A2 - J A2 J A1 = J (A1 J A2 - A2 J A1)``; the constant ``c`` of
    the bracket has no generator). Checked to 1e-13; the opposite sign is far off. Also
    ``lie_bracket`` is antisymmetric and satisfies the Jacobi identity."""
    A1, b1 = random_quadratic(M, 60 + M)
    A2, b2 = random_quadratic(M, 70 + M)
    G1, G2 = generator_matrix(A1, b1), generator_matrix(A2, b2)
    A, b, _ = poisson_bracket_quadratic(A1, b1, A2, b2)
    bracket = lie_bracket(G1, G2)
    torch.testing.assert_close(bracket, G1 @ G2 - G2 @ G1, rtol=0, atol=0)
    torch.testing.assert_close(generator_matrix(A, b), bracket, rtol=0, atol=1e-13)
    assert (generator_matrix(A, b) + bracket).abs().max().item() > 1e-2
    torch.testing.assert_close(lie_bracket(G2, G1), -bracket, rtol=0, atol=0)
    G3 = generator_matrix(*random_quadratic(M, 80 + M))
    jacobi = (
        lie_bracket(G1, lie_bracket(G2, G3))
        + lie_bracket(G2, lie_bracket(G3, G1))
        + lie_bracket(G3, lie_bracket(G1, G2))
    )
    assert jacobi.abs().max().item() < 1e-13


# ----------------------------------------------------------------------------- measures

N_MC = 20_000


def _binomial_tol(p: float, n: int = N_MC) -> float:
    """Five binomial standard deviations of an empirical fraction."""
    return 5 * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("K", [1, 3, 7])
def test_ball_measure_support_and_radial_law(K):
    """Uniform in the ball of radius ``scale``: ``|tau| <= scale`` and
    ``P(|tau| <= r scale) = r^K`` within 5 binomial sigmas on 20000 samples; mean 0."""
    scale = 2.5
    g = torch.Generator().manual_seed(K)
    tau = SymmetryMeasure("ball", scale).sample(N_MC, K, dtype=DT, generator=g)
    assert tau.shape == (N_MC, K) and tau.dtype == DT
    radius = tau.norm(dim=-1)
    assert radius.max().item() <= scale * (1 + 1e-12)
    for r in [0.3, 0.6, 0.9]:
        frac = (radius <= r * scale).double().mean().item()
        assert abs(frac - r**K) <= _binomial_tol(r**K), (r, frac, r**K)
    # the direction is isotropic: each coordinate has mean 0 (std of a coordinate <= scale)
    assert tau.mean(0).abs().max().item() < 5 * scale / math.sqrt(N_MC)


def test_cube_measure_support_and_moments():
    """Uniform on ``[-scale, scale]^K``: support, mean 0 and variance ``scale^2 / 3``."""
    scale = math.pi
    tau = SymmetryMeasure("cube", scale).sample(
        N_MC, 3, dtype=DT, generator=torch.Generator().manual_seed(1)
    )
    assert tau.abs().max().item() <= scale
    assert tau.abs().max().item() > 0.99 * scale
    assert tau.mean(0).abs().max().item() < 5 * scale / math.sqrt(3 * N_MC)
    var = scale**2 / 3  # Var(tau^2) = scale^4 (1/5 - 1/9) = 4 scale^4 / 45
    var_tol = 5 * math.sqrt(4 * scale**4 / 45 / N_MC)
    assert (tau.var(0) - var).abs().max().item() < var_tol
    frac = (tau[:, 0] <= 0.5 * scale).double().mean().item()
    assert abs(frac - 0.75) <= _binomial_tol(0.75)


def test_normal_measure_moments():
    """``N(0, scale^2 I)``: mean within 5 ``scale/sqrt(n)``, std within 5 ``scale/sqrt(2n)``."""
    scale = 0.7
    tau = SymmetryMeasure("normal", scale).sample(
        N_MC, 4, dtype=DT, generator=torch.Generator().manual_seed(2)
    )
    assert tau.mean(0).abs().max().item() < 5 * scale / math.sqrt(N_MC)
    assert (tau.std(0) - scale).abs().max().item() < 5 * scale / math.sqrt(2 * N_MC)


@pytest.mark.parametrize("kind", ["ball", "cube", "normal"])
def test_measure_reproducible_with_generator_and_dtype(kind):
    m = SymmetryMeasure(kind)
    a = m.sample(50, 3, dtype=DT, generator=torch.Generator().manual_seed(5))
    b = m.sample(50, 3, dtype=DT, generator=torch.Generator().manual_seed(5))
    c = m.sample(50, 3, dtype=DT, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert m.sample(4, 2, dtype=torch.float32).dtype == torch.float32
    assert m.scale == math.pi  # the reference code's default


@pytest.mark.parametrize("kind", ["ball", "cube", "normal"])
def test_stratified_times_have_the_measures_law(kind):
    """Every stratified time is mu-distributed: over 400 sets of 50 the same checks as the
    plain samples (mean, second moment; ball: radial law), within 5 binomial/MC sigmas."""
    K, S, sets, scale = 3, 50, 400, 1.7
    g = torch.Generator().manual_seed(9)
    m = SymmetryMeasure(kind, scale)
    tau = m.sample_stratified(S, K, num_sets=sets, dtype=DT, generator=g)
    assert tau.shape == (sets, S, K) and tau.dtype == DT
    flat = tau.reshape(-1, K)
    n = flat.shape[0]
    reference = m.sample(200_000, K, dtype=DT, generator=torch.Generator().manual_seed(1))
    second = float(reference.pow(2).mean())
    assert flat.mean(0).abs().max().item() < 5 * math.sqrt(second / n)
    assert abs(float(flat.pow(2).mean()) - second) < 0.02 * second
    if kind == "ball":
        radius = flat.norm(dim=-1)
        assert radius.max().item() <= scale * (1 + 1e-12)
        for r in [0.3, 0.6, 0.9]:
            frac = (radius <= r * scale).double().mean().item()
            assert abs(frac - r**K) <= _binomial_tol(r**K, n)


def test_stratified_times_put_one_point_in_every_stratum():
    """Cube, K = 2: in each coordinate of each set the S points occupy the S strata
    ``[-s + 2 s i / S, -s + 2 s (i + 1) / S)`` once each; sets differ."""
    S, scale = 16, math.pi
    tau = SymmetryMeasure("cube", scale).sample_stratified(
        S, 2, num_sets=3, dtype=DT, generator=torch.Generator().manual_seed(3))
    strata = torch.floor((tau / scale + 1) / 2 * S).long()
    for p in range(3):
        for k in range(2):
            assert sorted(strata[p, :, k].tolist()) == list(range(S))
    assert not torch.allclose(tau[0], tau[1])
    assert SymmetryMeasure("ball").sample_stratified(4, 0, num_sets=2).shape == (2, 4, 0)
    with pytest.raises(ValueError, match="num_sets >= 1"):
        SymmetryMeasure("ball").sample_stratified(4, 2, num_sets=0)


def test_stratified_orbit_average_beats_independent_times():
    """The point of stratifying: a smooth periodic orbit average (cos over a full turn, exact
    value 0). 256 independent times: RMS error sqrt(1/2 / 256) = 0.044; S stratified ones:
    within-stratum variance ~ sin^2 h^2 / 12 with h = 2 pi / S, so an error of about
    sqrt(<sin^2> h^2 / 12 / S) = 0.0071 at S = 32, a sixth at an eighth of the cost.
    Measured over 400 repeats (bounds at ~+-25 %, a few of their standard errors)."""
    m, g = SymmetryMeasure("cube", math.pi), torch.Generator().manual_seed(4)
    strat = m.sample_stratified(32, 1, num_sets=400, dtype=DT, generator=g)
    plain = m.sample(400 * 256, 1, dtype=DT, generator=g).reshape(400, 256, 1)
    err_strat = torch.cos(strat).mean(dim=(1, 2)).pow(2).mean().sqrt().item()
    err_plain = torch.cos(plain).mean(dim=(1, 2)).pow(2).mean().sqrt().item()
    predicted = math.sqrt(0.5 * (2 * math.pi / 32) ** 2 / 12 / 32)
    assert 0.75 * 0.0442 < err_plain < 1.25 * 0.0442
    assert 0.75 * predicted < err_strat < 1.25 * predicted
    assert err_strat < err_plain / 4


def test_measure_bad_arguments():
    with pytest.raises(ValueError, match=r"unknown symmetry measure 'sphere'; choose one of"):
        SymmetryMeasure("sphere")
    for bad in [0.0, -1.0, math.inf, math.nan]:
        with pytest.raises(ValueError, match="scale must be positive and finite"):
            SymmetryMeasure("ball", bad)


# ----------------------------------------------------------------------------- dtype


def test_float32_in_float32_out():
    A, b = random_quadratic(4, 90)
    A32, b32 = A.float(), b.float()
    G = generator_matrix(A32, b32)
    assert G.dtype == torch.float32
    assert all(t.dtype == torch.float32 for t in quantity_from_generator(G))
    tau = SymmetryMeasure("ball").sample(3, 1, dtype=torch.float32)
    T = flow_matrices(G[None], tau)
    assert T.dtype == torch.float32
    x = torch.randn(2, 4)
    out = apply_flow(T, x)
    assert out.dtype == torch.float32 and out.shape == (3, 2, 4)
    ref = apply_flow(flow_matrices(G[None].double(), tau.double()), x.double())
    assert (out.double() - ref).abs().max().item() < 1e-4
    assert symplectic_matrix(4, dtype=torch.float32).dtype == torch.float32
    assert all(t.dtype == torch.float32 for t in poisson_bracket_quadratic(A32, b32, A32, b32))
    assert poisson_bracket(lambda z: z[..., 0], lambda z: z[..., 2], x).dtype == torch.float32
    assert quadratic_value(A32, b32, x).dtype == torch.float32
    assert generator_from_quantity(lambda z: (z**2).sum(-1), 2, dtype=torch.float32).dtype == (
        torch.float32
    )
