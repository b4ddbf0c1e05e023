r"""Null distributions for the direct estimator's tests: extreme eigenvalues of Wishart matrices.

If ``k`` features combine into quantities that are exactly conserved, their within-trajectory
scatter is pure observation noise: whitened by the noise's expected scatter it is
``W_k ~ Wishart_k(nu, I) / nu`` with ``nu`` degrees of freedom (the number of observations
minus one mean per trajectory). The tests of :mod:`~pyro_razor.discovery.direct` need

- :func:`max_eigenvalue_quantile`: the ``1 - alpha`` quantile of ``lambda_max(W_k)`` — a
  ``k``-dimensional conserved subspace has all ``k`` whitened scatters below it with
  probability ``1 - alpha`` (Courant-Fischer then bounds the ``k``-th smallest generalised
  eigenvalue of the data);
- :func:`min_eigenvalue_quantile`: the ``alpha`` quantile of ``lambda_min(W_F)`` — every one
  of ``F`` directions shows at least this much noise scatter with probability ``1 - alpha``,
  simultaneously, so claims below it are controlled for all directions at once.

Both are computed by Monte Carlo with Bartlett's decomposition ``W = L L^T``, ``L`` lower
triangular with ``L_ii ~ chi(nu - i + 1)`` and standard normal entries below the diagonal,
with ``max(200, min(2000, 2e7 / k^3))`` draws and a fixed seed (the same inputs
always give the same quantile) and cached. ``k = 1`` uses
the exact chi-square quantile. A non-integer ``nu`` (Satterthwaite's effective degrees of
freedom) is rounded down, which only makes the tests more cautious. When ``nu < k`` the nonzero
eigenvalues of ``Wishart_k(nu)`` are those of ``Wishart_nu(k)``, and ``lambda_min`` is 0.
"""

from __future__ import annotations

import functools

import torch
from scipy import stats

__all__ = ["max_eigenvalue_quantile", "min_eigenvalue_quantile"]

DRAWS = 2000  # samples for small k; fewer for large k (cost ~ draws k^3), at least 200
SEED = 20241206


def _check(k: int, nu: float, alpha: float, caller: str) -> int:
    if not (isinstance(k, int) and k >= 1):
        raise ValueError(f"{caller}: dimension k must be a positive integer, got {k!r}")
    if not nu >= 1:
        raise ValueError(f"{caller}: need at least one degree of freedom, got nu = {nu!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"{caller}: alpha must be in (0, 1), got {alpha!r}")
    return int(nu)


def _draws(k: int) -> int:
    return int(min(DRAWS, max(200, 2e7 // k**3)))


def _bartlett_eigenvalues(k: int, nu: int) -> torch.Tensor:
    """Eigenvalues of ``_draws(k)`` samples of ``Wishart_k(nu, I) / nu``, ``(draws, k)``."""
    g = torch.Generator().manual_seed(SEED + 7919 * k + nu)
    draws = _draws(k)
    dof = torch.tensor([nu - i for i in range(k)], dtype=torch.float64)
    chi2 = torch._standard_gamma(dof.expand(draws, k) / 2.0, generator=g) * 2.0
    L = torch.randn(draws, k, k, generator=g, dtype=torch.float64).tril(-1)
    L = L + torch.diag_embed(chi2.sqrt())
    return torch.linalg.eigvalsh(L @ L.transpose(-1, -2)) / nu


@functools.lru_cache(maxsize=4096)
def _max_quantile(k: int, nu: int, alpha: float) -> float:
    if k == 1:
        return float(stats.chi2.ppf(1.0 - alpha, nu)) / nu
    small, large = min(k, nu), max(k, nu)
    top = _bartlett_eigenvalues(small, large)[:, -1] * large / nu
    return float(torch.quantile(top, 1.0 - alpha))


@functools.lru_cache(maxsize=4096)
def _min_quantile(k: int, nu: int, alpha: float) -> float:
    if nu < k:
        return 0.0
    if k == 1:
        return float(stats.chi2.ppf(alpha, nu)) / nu
    return float(torch.quantile(_bartlett_eigenvalues(k, nu)[:, 0], alpha))


def max_eigenvalue_quantile(k: int, nu: float, alpha: float) -> float:
    """The ``1 - alpha`` quantile of ``lambda_max(Wishart_k(nu, I) / nu)`` (module docstring)."""
    return _max_quantile(k, _check(k, nu, alpha, "max_eigenvalue_quantile"), float(alpha))


def min_eigenvalue_quantile(k: int, nu: float, alpha: float) -> float:
    """The ``alpha`` quantile of ``lambda_min(Wishart_k(nu, I) / nu)`` (module docstring)."""
    return _min_quantile(k, _check(k, nu, alpha, "min_eigenvalue_quantile"), float(alpha))
