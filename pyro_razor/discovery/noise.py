r"""The observation noise of trajectories, estimated from their finite differences.

A state observed as ``y_t = x(t) + e_t`` with ``e_t ~ N(0, sigma^2)`` independent over ``t``
has ``k``-th differences ``Delta^k y_t = Delta^k x_t + Delta^k e_t`` with
``Var(Delta^k e_t) = C(2k, k) sigma^2``. For smooth ``x`` sampled finely enough the dynamics'
part ``Delta^k x_t ~ (omega dt)^k`` falls geometrically with ``k`` while the noise part grows
only as ``C(2k, k)``, so

.. math:: s_k^2 = \frac{\overline{(\Delta^k y)^2}}{\binom{2k}{k}} = \sigma^2 + r_k,
          \qquad r_k \ge 0 \text{ decreasing in } k,

per coordinate, pooled over all trajectories with more than ``k`` points. Two estimates:

- ``high``: ``s_K`` at the largest order ``K = min(6, n_max - 1)`` — biased *up* by the
  residual dynamics ``r_K`` — raised to its one-sided ``1 - alpha`` upper confidence bound
  ``s_K^2 nu / chi2_alpha(nu)``: the conservative value where too little noise would reject a
  true law;
- ``low``: one step of Richardson-style extrapolation ``2 s_K^2 - s_{K-1}^2``, which removes
  ``r_K`` when it at least halves per order (``r_{K-1} >= 2 r_K``), capped by the lower
  confidence bound ``s_K^2 nu / chi2_{1-alpha}(nu)`` and floored at 0: biased *down*, the
  conservative value where too much noise would hide a drift.

``nu`` is the effective number of degrees of freedom of ``s_K^2``: consecutive ``K``-th
differences of white noise are correlated, ``rho_j = (-1)^j C(2K, K+j) / C(2K, K)``, so a
trajectory with ``m`` differences contributes ``m^2 / sum_{t,t'} rho_{t-t'}^2`` (about 2 for
``m = 5``, ``K = 6``) — 30 trajectories of 11 points give ``nu ~ 58``, a 19 % standard error
on ``s_K^2``, which the bounds carry into the tests.

Both equal ``sigma`` when the dynamics are resolved and the noise dominates; they differ a lot
when the sampling is coarse (few points per period), which the direct estimator reports as
uncertainty instead of guessing. A known noise level (``--noise``) replaces both.

Shapes: ``B`` trajectories, ``n_b`` points of trajectory ``b``, ``M`` phase dimension.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from scipy import stats

__all__ = ["NoiseEstimate", "effective_dof", "estimate_noise", "known_noise"]

MAX_ORDER = 6


@dataclass(frozen=True)
class NoiseEstimate:
    """Per-coordinate noise standard deviations (``(M,)`` float64 each).

    Attributes:
        low: biased-down estimate (used where too much noise would hide a drift).
        high: biased-up estimate (used where too little noise would reject a law).
        order: the difference order ``K`` of ``high`` (0 when the noise was given).
        given: whether the user gave the noise (then ``low == high``).
        point: the plain estimate ``s_K``; dof: its effective degrees of freedom ``nu``
            (``inf`` when given).
        resolved: whether the noise dominates the top two orders in every coordinate,
            ``s_{K-1}^2 <= 1.75 s_K^2`` (the extrapolation keeps at least a quarter of
            ``s_K^2``); always true when given.
    """

    low: torch.Tensor
    high: torch.Tensor
    order: int
    given: bool
    point: torch.Tensor | None = None
    dof: float = math.inf
    resolved: bool = True

    def to_json(self) -> dict:
        point = self.high if self.point is None else self.point
        return {"low": self.low.tolist(), "high": self.high.tolist(), "point": point.tolist(),
                "order": self.order, "given": self.given, "dof": self.dof,
                "resolved": self.resolved}


def _difference_variances(trajectories: Sequence[torch.Tensor], order: int) -> torch.Tensor:
    """``s_k^2`` for ``k = 1..order``, ``(order, M)``."""
    out = []
    for k in range(1, order + 1):
        diffs = [torch.diff(x, n=k, dim=0) for x in trajectories if x.shape[0] > k]
        squares = torch.cat([d.pow(2) for d in diffs], dim=0)
        out.append(squares.mean(dim=0) / math.comb(2 * k, k))
    return torch.stack(out)


def effective_dof(lengths: Sequence[int], order: int) -> float:
    """``nu`` of ``s_K^2`` pooled over trajectories of ``lengths`` points (module docstring)."""
    rho = torch.tensor([math.comb(2 * order, order + j) / math.comb(2 * order, order)
                        for j in range(order + 1)], dtype=torch.float64)
    total, correlated = 0, 0.0
    for n in lengths:
        m = n - order
        if m < 1:
            continue
        lags = torch.arange(min(m, order + 1))
        correlated += m + 2.0 * float(((m - lags[1:]) * rho[lags[1:]] ** 2).sum())
        total += m
    return total**2 / correlated


def estimate_noise(trajectories: Sequence[torch.Tensor], alpha: float = 0.05) -> NoiseEstimate:
    """Estimate the observation noise of each coordinate (module docstring).

    Args:
        trajectories: ``B`` float tensors of shape ``(n_b, M)``, at least one with 3 or more
            points.
        alpha: one-sided level of the confidence bounds ``low`` and ``high``.

    Returns:
        The :class:`NoiseEstimate` in the trajectories' units.
    """
    longest = max(x.shape[0] for x in trajectories)
    if longest < 3:
        raise ValueError("estimate_noise: need a trajectory of 3 or more points to separate "
                         "noise from motion; give the noise level instead (--noise)")
    order = min(MAX_ORDER, longest - 1)
    s2 = _difference_variances([x.to(torch.float64) for x in trajectories], order)
    nu = effective_dof([x.shape[0] for x in trajectories], order)
    upper, lower = nu / stats.chi2.ppf(alpha, nu), nu / stats.chi2.ppf(1.0 - alpha, nu)
    high = (s2[-1] * upper).sqrt()
    low = torch.minimum(2.0 * s2[-1] - s2[-2], s2[-1] * lower).clamp(min=0.0).sqrt()
    return NoiseEstimate(low=low, high=high, order=order, given=False, point=s2[-1].sqrt(),
                         dof=nu, resolved=bool((s2[-2] <= 1.75 * s2[-1]).all()))


def known_noise(sigma: float | Sequence[float] | torch.Tensor, M: int) -> NoiseEstimate:
    """A noise level given by the user: one ``sigma >= 0`` for all ``M`` coordinates or one each."""
    s = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1)
    if s.numel() == 1:
        s = s.expand(M).clone()
    if s.numel() != M or not bool(torch.isfinite(s).all()) or bool((s < 0).any()):
        raise ValueError(f"noise: need one finite sigma >= 0 or {M} of them, got {sigma!r}")
    return NoiseEstimate(low=s, high=s, order=0, given=True)
