"""Features, noise estimates, Wishart quantiles and trajectory checks of the direct estimator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from pyro_razor.discovery.calibration import max_eigenvalue_quantile, min_eigenvalue_quantile
from pyro_razor.discovery.features import MonomialFeatures, feature_count
from pyro_razor.discovery.formulas import monomials
from pyro_razor.discovery.noise import estimate_noise, known_noise
from pyro_razor.discovery.scatter import generalised_eigh, scatter_matrices
from pyro_razor.discovery.trajectories import as_trajectory_list
from pyro_razor.discovery.trend import trend_degrees_of_freedom

F64 = torch.float64


@pytest.mark.parametrize("M,degree", [(2, 1), (4, 2), (4, 3), (2, 4)])
def test_features_count_and_jacobian_match_autograd(M, degree):
    f = MonomialFeatures(M, degree)
    assert f.num_features == feature_count(M, degree)
    x = torch.randn(7, M, dtype=F64, generator=torch.Generator().manual_seed(0))
    phi, J = f(x)
    auto = torch.autograd.functional.jacobian(lambda z: f(z)[0].sum(0), x).permute(1, 0, 2)
    torch.testing.assert_close(J, auto, rtol=1e-12, atol=1e-12)
    assert phi.shape == (7, f.num_features)


def test_quadratic_features_follow_the_formula_order():
    names = ["x", "y", "px", "py"]
    f = MonomialFeatures(4, 2)
    assert f.labels(names) == monomials(names)
    x = torch.tensor([[2.0, 3.0, 5.0, 7.0]], dtype=F64)
    phi, _ = f(x)
    assert phi[0].tolist()[:3] == [4.0, 6.0, 9.0]  # x², x·y, y²
    assert phi[0].tolist()[-4:] == [2.0, 3.0, 5.0, 7.0]
    assert MonomialFeatures(2, 3).labels(["q", "p"])[:4] == ["q³", "q²·p", "q·p²", "p³"]


def test_features_reject_bad_degree_and_shape():
    with pytest.raises(ValueError, match="degree"):
        MonomialFeatures(2, 5)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        MonomialFeatures(4)(torch.zeros(3, 2, dtype=F64))


def test_noise_estimate_recovers_white_noise_on_smooth_motion():
    g = torch.Generator().manual_seed(1)
    t = torch.arange(21, dtype=F64) * 0.3
    phase = 2 * math.pi * torch.rand(40, 1, generator=g, dtype=F64)
    clean = torch.stack([torch.cos(t + phase), -torch.sin(t + phase)], -1)
    sigma = torch.tensor([0.02, 0.05], dtype=F64)
    noisy = clean + sigma * torch.randn(clean.shape, generator=g, dtype=F64)
    est = estimate_noise(list(noisy))
    assert est.order == 6
    torch.testing.assert_close(est.point, sigma, rtol=0.1, atol=0.0)  # within 10 %
    # 40 trajectories of 15 sixth differences, lag-j correlation C(12, 6 + j) / C(12, 6)
    per_trajectory = 15 + 2 * sum((15 - j) * (math.comb(12, 6 + j) / 924) ** 2
                                  for j in range(1, 7))
    assert est.resolved and est.dof == pytest.approx(600**2 / (40 * per_trajectory))
    # one-sided 95 % bounds: low below and high above the truth, within their spread
    assert bool((est.low < sigma).all()) and bool((est.high > sigma).all())
    assert bool((est.high < 1.3 * sigma).all()) and bool((est.low > 0.75 * sigma).all())


def test_noise_estimate_needs_three_points_and_known_noise_checks():
    with pytest.raises(ValueError, match="--noise"):
        estimate_noise([torch.zeros(2, 2, dtype=F64)])
    assert known_noise(0.1, 4).high.tolist() == [0.1] * 4
    with pytest.raises(ValueError, match="4 of them"):
        known_noise([0.1, 0.2], 4)


def test_wishart_quantiles_match_exact_and_brute_force():
    assert max_eigenvalue_quantile(1, 50, 0.05) == pytest.approx(stats.chi2.ppf(0.95, 50) / 50)
    assert min_eigenvalue_quantile(1, 50, 0.05) == pytest.approx(stats.chi2.ppf(0.05, 50) / 50)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(20000, 40, 3, generator=g, dtype=F64)
    eig = torch.linalg.eigvalsh(x.transpose(1, 2) @ x / 40)
    assert max_eigenvalue_quantile(3, 40, 0.05) == pytest.approx(
        float(torch.quantile(eig[:, -1], 0.95)), rel=0.03)
    assert min_eigenvalue_quantile(3, 40, 0.05) == pytest.approx(
        float(torch.quantile(eig[:, 0], 0.05)), rel=0.06)
    assert min_eigenvalue_quantile(5, 3, 0.05) == 0.0  # rank-deficient: nu < k
    with pytest.raises(ValueError, match="alpha"):
        max_eigenvalue_quantile(2, 10, 1.5)


def test_scatter_of_a_linear_feature_is_the_sample_scatter():
    xs = [torch.tensor([[0.0, 1.0], [2.0, 1.0]], dtype=F64),
          torch.tensor([[4.0, 0.0], [4.0, 2.0], [4.0, 4.0]], dtype=F64)]
    s = scatter_matrices(xs, MonomialFeatures(2, 1))
    assert s.within.numpy() == pytest.approx(np.array([[2.0, 0.0], [0.0, 8.0]]))
    sigma = torch.tensor([1.0, 1.0], dtype=F64)
    # linear features: J = I, noise scatter = sum of (1 - 1/n_b) = 1/2 * 2 + 2/3 * 3 = 3
    assert s.noise(sigma).numpy() == pytest.approx(3.0 * np.eye(2))


def test_trend_scatter_is_the_straight_line_fit_of_each_trajectory():
    """Trajectory 1 (2 points) has trend vector (x_1 - x_0) / sqrt(2); trajectory 2 (3 points,
    w = (-1, 0, 1) / sqrt(2)) (x_2 - x_0) / sqrt(2); linear features, so the noise trend
    scatter is sum_bt w_bt^2 Sigma = 2 Sigma (each trajectory's weights have unit norm)."""
    xs = [torch.tensor([[0.0, 1.0], [2.0, 1.0]], dtype=F64),
          torch.tensor([[4.0, 0.0], [4.0, 2.0], [4.0, 4.0]], dtype=F64)]
    s = scatter_matrices(xs, MonomialFeatures(2, 1))
    r1, r2 = np.array([2.0, 0.0]) / math.sqrt(2), np.array([0.0, 4.0]) / math.sqrt(2)
    assert s.trend.numpy() == pytest.approx(np.outer(r1, r1) + np.outer(r2, r2))
    sigma = torch.tensor([0.5, 2.0], dtype=F64)
    assert s.trend_noise(sigma).numpy() == pytest.approx(2.0 * np.diag([0.25, 4.0]))
    assert s.owners.tolist() == [0, 0, 1, 1, 1]


def test_trend_noise_scatter_is_the_expected_trend_of_pure_noise():
    """Constant trajectories plus white noise: over 400 draws the mean trend scatter of a
    quadratic feature matches ``trend_noise`` to 5 % (its first-order noise term; the
    second-order term of x^2 is constant along a trajectory, so it adds no trend)."""
    g = torch.Generator().manual_seed(0)
    centre = torch.randn(20, 1, 2, generator=g, dtype=F64)
    features, sigma = MonomialFeatures(2, 2), torch.tensor([0.1, 0.1], dtype=F64)
    draws = [scatter_matrices(list(centre + 0.1 * torch.randn(20, 9, 2, generator=g,
                                                              dtype=F64)), features).trend
             for _ in range(400)]
    s = scatter_matrices(list(centre.expand(20, 9, 2)), features)
    expected, mean = s.trend_noise(sigma).diagonal(), torch.stack(draws).mean(0).diagonal()
    assert (mean / expected).numpy() == pytest.approx(np.ones(5), rel=0.05)


def test_generalised_eigh_and_direction_gradients():
    """``generalised_eigh`` solves ``A v = mu B v`` ascending with ``v^T B v = 1``; a scatter's
    ``gradients(V)`` are ``V^T J`` at every state; the trend test's degrees of freedom for
    linear features and equal noise are one per trajectory."""
    g = torch.Generator().manual_seed(3)
    X, Y = (torch.randn(6, 4, generator=g, dtype=F64).numpy() for _ in range(2))
    A, B = X @ X.T, Y @ Y.T + np.eye(6)
    mu, V = generalised_eigh(A, B)
    assert np.all(np.diff(mu) >= 0)
    assert A @ V == pytest.approx(B @ V * mu, abs=1e-9)
    assert V.T @ B @ V == pytest.approx(np.eye(6), abs=1e-9)
    xs = [torch.randn(5, 2, generator=g, dtype=F64) for _ in range(4)]
    s = scatter_matrices(xs, MonomialFeatures(2, 2))
    C = torch.randn(5, 2, generator=g, dtype=F64).numpy()
    expected = torch.einsum("pfm,fk->pkm", s.jacobians, torch.from_numpy(C))
    assert torch.equal(s.gradients(C), expected)
    linear = scatter_matrices(xs, MonomialFeatures(2, 1))
    dof = trend_degrees_of_freedom(linear, np.eye(2), torch.tensor([0.1, 0.1], dtype=F64))
    assert dof == pytest.approx([4.0, 4.0])


def test_trajectory_checks_name_the_problem():
    with pytest.raises(ValueError, match="at least 2 trajectories"):
        as_trajectory_list(np.zeros((1, 5, 2)), "f")
    with pytest.raises(ValueError, match="trajectory 1 contains NaN"):
        as_trajectory_list([np.zeros((3, 2)), np.full((3, 2), np.nan)], "f")
    with pytest.raises(ValueError, match="must be even"):
        as_trajectory_list(np.zeros((2, 5, 3)), "f")
    with pytest.raises(ValueError, match="trajectory 1 has 1 point"):
        as_trajectory_list([np.zeros((3, 2)), np.zeros((1, 2))], "f")
    with pytest.raises(ValueError, match="shape \\(B, n, M\\)"):
        as_trajectory_list(np.zeros((5, 2)), "f")
    assert [x.shape[0] for x in as_trajectory_list([np.zeros((3, 2)), np.ones((5, 2))], "f")] \
        == [3, 5]
