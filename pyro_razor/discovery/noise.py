r"""The observation noise of trajectories, estimated from their finite differences.

A state observed as ``y_t = x(t) + e_t`` with ``e_t ~ N(0, sigma^2)`` independent over ``t``
has ``k``-th differences ``Delta^k y_t = Delta^k x_t + Delta^k e_t`` with
``Var(Delta^k e_t) = C(2k, k) sigma^2``. For smooth ``x`` sampled finely enough the dynamics'
part ``Delta^k x_t ~ (omega dt)^k`` falls geometrically with ``k`` while the noise part grows
only as ``C(2k, k)``, so

.. math:: s_k^2 = \frac{\overline{(\Delta^k y)^2}}{\binom{2k}{k}} = \sigma^2 + r_k,
          \qquad r_k \ge 0 \text{ decreasing in } k,

per coordinate, pooled over all trajectories with more than ``k`` points. Two estimates:

- ``high = s_K`` at the largest order ``K = min(6, n_max - 1)``: biased *up* by the residual
  dynamics ``r_K`` — the conservative value where too little noise would reject a true law;
- ``low = sqrt(max(0, 2 s_K^2 - s_{K-1}^2))``: one step of Richardson-style extrapolation that
  removes ``r_K`` when it at least halves per order (``r_{K-1} >= 2 r_K``), so it is biased
  *down* — the conservative value where too much noise would hide a drift.

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

__all__ = ["NoiseEstimate", "estimate_noise", "known_noise"]

MAX_ORDER = 6


@dataclass(frozen=True)
class NoiseEstimate:
    """Per-coordinate noise standard deviations (``(M,)`` float64 each).

    Attributes:
        low: biased-down estimate (used where too much noise would hide a drift).
        high: biased-up estimate (used where too little noise would reject a law).
        order: the difference order ``K`` of ``high`` (0 when the noise was given).
        given: whether the user gave the noise (then ``low == high``).
    """

    low: torch.Tensor
    high: torch.Tensor
    order: int
    given: bool

    def to_json(self) -> dict:
        return {"low": self.low.tolist(), "high": self.high.tolist(), "order": self.order,
                "given": self.given}


def _difference_variances(trajectories: Sequence[torch.Tensor], order: int) -> torch.Tensor:
    """``s_k^2`` for ``k = 1..order``, ``(order, M)``."""
    out = []
    for k in range(1, order + 1):
        diffs = [torch.diff(x, n=k, dim=0) for x in trajectories if x.shape[0] > k]
        squares = torch.cat([d.pow(2) for d in diffs], dim=0)
        out.append(squares.mean(dim=0) / math.comb(2 * k, k))
    return torch.stack(out)


def estimate_noise(trajectories: Sequence[torch.Tensor]) -> NoiseEstimate:
    """Estimate the observation noise of each coordinate (module docstring).

    Args:
        trajectories: ``B`` float tensors of shape ``(n_b, M)``, at least one with 3 or more
            points.

    Returns:
        The :class:`NoiseEstimate` in the trajectories' units.
    """
    longest = max(x.shape[0] for x in trajectories)
    if longest < 3:
        raise ValueError("estimate_noise: need a trajectory of 3 or more points to separate "
                         "noise from motion; give the noise level instead (--noise)")
    order = min(MAX_ORDER, longest - 1)
    s2 = _difference_variances([x.to(torch.float64) for x in trajectories], order)
    high = s2[-1].sqrt()
    low = (2.0 * s2[-1] - s2[-2]).clamp(min=0.0).sqrt()
    return NoiseEstimate(low=low, high=high, order=order, given=False)


def known_noise(sigma: float | Sequence[float] | torch.Tensor, M: int) -> NoiseEstimate:
    """A noise level given by the user: one ``sigma >= 0`` for all ``M`` coordinates or one each."""
    s = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1)
    if s.numel() == 1:
        s = s.expand(M).clone()
    if s.numel() != M or not bool(torch.isfinite(s).all()) or bool((s < 0).any()):
        raise ValueError(f"noise: need one finite sigma >= 0 or {M} of them, got {sigma!r}")
    return NoiseEstimate(low=s, high=s, order=0, given=True)
