r"""The trend test of the direct estimate (:mod:`~pyro_razor.discovery.direct`, test 2).

The within-noise test compares a combination's whole within-trajectory scatter with what the
noise gives, over ``n_b - 1`` degrees of freedom per trajectory, where a slow drift (a
near-resonant pair's cross terms: a few per cent over the window) hides. White noise has no
direction in time, a drift does. So the ``U`` directions that pass are tested for
straight-line trends: with ``r_b = sum_t w_bt phi_bt`` (``w_bt`` the centred state index of
trajectory ``b``, unit norm: :class:`~pyro_razor.discovery.scatter.Scatter`'s ``trend``), the
generalised eigenvalues ``mu`` of (trend scatter, its noise part ``sum_bt w_bt^2 J Sigma
J^T``) within the ``U``-dimensional span, ascending, are tested step-down from the largest:
while ``mu_k`` exceeds the ``1 - alpha`` quantile of ``lambda_max(Wishart_k(nu)/nu)``
(:func:`~pyro_razor.discovery.calibration.max_eigenvalue_quantile`, ``nu`` the Satterthwaite
degrees of freedom, one per trajectory), the most trending direction leaves. A true conserved
subspace survives each of its steps with probability at least ``1 - alpha``.

Shapes: ``N`` states, ``F`` features, ``F'`` directions tested (complement of the constant
ones), ``U`` passing the within-noise test, ``M`` phase dimension.
"""

from __future__ import annotations

import numpy as np
import torch

from pyro_razor.discovery.calibration import max_eigenvalue_quantile
from pyro_razor.discovery.scatter import Scatter, generalised_eigh

__all__ = ["split_trending", "trend_degrees_of_freedom"]


def trend_degrees_of_freedom(s: Scatter, C: np.ndarray, sigma: torch.Tensor) -> np.ndarray:
    """Satterthwaite degrees of freedom of the noise trend scatter along the directions ``C
    (F, k)``: one scaled chi-square per trajectory."""
    v = s.trend_weights[:, None] * (s.gradients(C) * sigma).pow(2).sum(-1)  # (N, k)
    per = torch.zeros(int(s.owners.max()) + 1, v.shape[1], dtype=v.dtype)
    per.index_add_(0, s.owners, v)
    return (per.sum(0).pow(2) / per.pow(2).sum(0).clamp_min(1e-300)).numpy()


def _diagonalised(K: np.ndarray, W: np.ndarray, N: np.ndarray) -> np.ndarray:
    """The basis of ``span(K)`` that diagonalises ``(W, N)``, ascending, ``N``-normalised."""
    if K.shape[1] == 0:
        return K
    return K @ generalised_eigh(K.T @ W @ K, K.T @ N @ K)[1]


def split_trending(s: Scatter, Q: np.ndarray, V: np.ndarray, U: int, W, N_hi,
                   sigma: torch.Tensor, alpha: float) -> tuple[np.ndarray, int]:
    """The step-down trend test (module docstring) on the first ``U`` columns of ``V`` ``(F',
    F')`` (directions in the complement basis ``Q`` ``(F, F')``; ``W``, ``N_hi`` the within
    and noise scatter in that basis, ``sigma`` the high noise estimate).

    Returns ``V`` with its first ``U`` columns replaced by the ``U - d`` directions without a
    detected trend, then the ``d`` trending ones (each block re-diagonalised in ``(W,
    N_hi)``), and ``d``.
    """
    if U == 0:
        return V, 0
    B = Q @ V[:, :U]
    R, N_R = s.trend.numpy(), s.trend_noise(sigma).numpy()
    mu, E = generalised_eigh(B.T @ R @ B, B.T @ N_R @ B)  # ascending trend/noise ratios
    nus = trend_degrees_of_freedom(s, B @ E, sigma)
    kept = U
    while kept > 0:
        nu = max(float(nus[:kept].min()), 1.0)
        if mu[kept - 1] <= max_eigenvalue_quantile(kept, nu, alpha):
            break
        kept -= 1
    if kept == U:
        return V, 0
    K = V[:, :U] @ E
    head = [_diagonalised(K[:, :kept], W, N_hi), _diagonalised(K[:, kept:], W, N_hi)]
    return np.concatenate(head + [V[:, U:]], axis=1), U - kept
