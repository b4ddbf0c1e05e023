r"""Scatter matrices of features along and across trajectories (:mod:`.direct`'s quadratic forms).

For features ``phi_bt`` (``(F,)``) of state ``t`` of trajectory ``b`` with Jacobians ``J_bt``
(``(F, M)``), and a diagonal noise covariance ``Sigma = diag(sigma^2)``:

- ``within = sum_bt (phi_bt - mean_b phi)(phi_bt - mean_b phi)^T``;
- ``total = sum_bt (phi_bt - mean phi)(phi_bt - mean phi)^T`` over all states;
- ``noise(sigma) = sum_bt a_bt J_bt Sigma J_bt^T`` with ``a_bt = 1 - 1/n_b`` (or ``1 - 1/N``
  for ``total=True``): the expected scatter of pure observation noise (to first order);
- ``potential(sigma) = (1/M) sum_bt (|x_bt - mean_b x|^2 - a_bt tr Sigma)_+ J_bt J_bt^T``: the
  within scatter of a quantity whose gradient had no preferred direction relative to the
  motion — the yardstick for "drifts by a fraction of what it could";
- ``trend = sum_b r_b r_b^T`` with ``r_b = sum_t w_bt phi_bt``, ``w_bt = (t - tbar_b) /
  sqrt(sum_t (t - tbar_b)^2)`` (``t`` the index of the state in its trajectory: equally
  spaced times): the scatter of the per-trajectory straight-line trends, one degree of freedom
  per trajectory, where a slow drift concentrates while white noise spreads evenly over all
  ``n_b - 1``; ``trend_noise(sigma) = sum_bt w_bt^2 J_bt Sigma J_bt^T`` its noise part.

Shapes: ``N`` states in all, ``F`` features, ``M`` phase dimension.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch

__all__ = ["Scatter", "generalised_eigh", "scatter_matrices"]


def generalised_eigh(A: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ascending ``A v = lambda B v`` with ``v^T B v = 1``; ``B`` is symmetrised and floored."""
    B = 0.5 * (B + B.T)
    B = B + np.eye(B.shape[0]) * 1e-12 * max(float(np.trace(B)) / B.shape[0], 1e-300)
    return scipy.linalg.eigh(0.5 * (A + A.T), B)


@dataclass(frozen=True)
class Scatter:
    """Scatter matrices of one data set (module docstring); all float64 CPU.

    Attributes:
        within, total: ``(F, F)``.
        jacobians: ``(N, F, M)``.
        deviations: ``(N,)`` squared distance of each state from its trajectory's mean state.
        within_weights, total_weights: ``(N,)`` the ``a_bt`` of the noise scatter.
        trend: ``(F, F)``; trend_weights: ``(N,)`` the ``w_bt^2``; owners: ``(N,)`` the
            trajectory of each state.
    """

    within: torch.Tensor
    total: torch.Tensor
    jacobians: torch.Tensor
    deviations: torch.Tensor
    within_weights: torch.Tensor
    total_weights: torch.Tensor
    trend: torch.Tensor
    trend_weights: torch.Tensor
    owners: torch.Tensor

    def noise(self, sigma: torch.Tensor, total: bool = False) -> torch.Tensor:
        """``(F, F)`` expected noise scatter for per-coordinate noise ``sigma (M,)``."""
        a = self.total_weights if total else self.within_weights
        G = self.jacobians * sigma
        return torch.einsum("p,pfm,pgm->fg", a, G, G)

    def gradients(self, V: np.ndarray) -> torch.Tensor:
        """``(N, k, M)`` gradients of the directions ``V (F, k)`` at every state."""
        return torch.einsum("pfm,fk->pkm", self.jacobians, torch.from_numpy(V))

    def trend_noise(self, sigma: torch.Tensor) -> torch.Tensor:
        """``(F, F)`` expected trend scatter of pure noise ``sigma (M,)``."""
        G = self.jacobians * sigma
        return torch.einsum("p,pfm,pgm->fg", self.trend_weights, G, G)

    def potential(self, sigma: torch.Tensor) -> torch.Tensor:
        """``(F, F)`` the drift yardstick ``P`` for noise ``sigma (M,)``."""
        M = self.jacobians.shape[-1]
        motion = (self.deviations - self.within_weights * sigma.pow(2).sum()).clamp_min(0.0)
        return torch.einsum("p,pfm,pgm->fg", motion / M, self.jacobians, self.jacobians)


def scatter_matrices(trajectories: Sequence[torch.Tensor], features) -> Scatter:
    """The :class:`Scatter` of ``B`` float64 trajectories ``(n_b, M)`` in ``features`` (any
    library of :mod:`.features`: ``features(x (N, M)) -> (phi (N, F), J (N, F, M))``)."""
    states = torch.cat(list(trajectories))
    lengths = torch.tensor([x.shape[0] for x in trajectories])
    owner = torch.repeat_interleave(torch.arange(len(trajectories)), lengths)
    phi, J = features(states)

    def centred(values: torch.Tensor) -> torch.Tensor:
        sums = torch.zeros(len(trajectories), values.shape[-1], dtype=values.dtype)
        sums.index_add_(0, owner, values)
        return values - (sums / lengths[:, None].to(values.dtype))[owner]

    phi_w, phi_t = centred(phi), phi - phi.mean(dim=0)
    deviations = centred(states).pow(2).sum(-1)
    n = lengths[owner].to(states.dtype)
    w = _trend_weights(lengths).to(states.dtype)
    r = torch.zeros(len(trajectories), phi.shape[-1], dtype=phi.dtype)
    r.index_add_(0, owner, w[:, None] * phi)
    return Scatter(within=phi_w.T @ phi_w, total=phi_t.T @ phi_t, jacobians=J,
                   deviations=deviations, within_weights=1.0 - 1.0 / n,
                   total_weights=torch.full_like(n, 1.0 - 1.0 / states.shape[0]),
                   trend=r.T @ r, trend_weights=w.square(), owners=owner)


def _trend_weights(lengths: torch.Tensor) -> torch.Tensor:
    """``(N,)`` the ``w_bt``: each trajectory's centred state index, scaled to unit norm."""
    parts = []
    for n in lengths.tolist():
        t = torch.arange(n, dtype=torch.float64) - 0.5 * (n - 1)
        parts.append(t / t.square().sum().sqrt().clamp_min(1e-300))
    return torch.cat(parts)
