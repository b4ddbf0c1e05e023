r"""The direct estimator's calibrated conservation tests, run on the span a razor learned.

After training, the learned-symmetry model holds ``r`` quadratic quantities ``C_i(x) =
1/2 x^T A_i x + b_i^T x`` whose flows move the data (the razor's candidates). Which
combinations ``sum_i c_i C_i`` of them are conserved is the question the direct estimator
answers for a feature library, so it is answered here with the *same* statistics: the
candidates themselves are the library (:class:`QuadraticQuantities`, features ``C_i`` with
Jacobians ``grad C_i = A_i x + b_i``), their scatter matrices are those of
:func:`~pyro_razor.discovery.scatter.scatter_matrices`, and
:func:`~pyro_razor.discovery.direct.conservation_tests` decides at level ``alpha``:

- ``U``, the most combinations the data allow (each within the scatter the noise alone gives,
  Wishart quantiles, Courant-Fischer: a truly conserved sub-span passes with probability
  ``>= 1 - alpha``);
- ``L``, the combinations the data show (drift below ``tolerance`` of their potential
  variation beyond the noise, family-wise at ``alpha``). The span was chosen by training on
  the same data, so the noise bound of this test is made simultaneous over every direction of
  the whole quadratic library (``M (M + 3) / 2`` directions, not only the ``r`` of the span):
  a selected direction is then covered like any other;
- ``D``, combinations constant on all the data, which no data can judge.

The razor's count is then the direct estimate's verdict on its span (``determined``,
``approximate`` or ``undetermined`` with a range), not a fixed cut-off on a spread ratio. The
noise is the direct estimate's: estimated from the trajectories (:mod:`.noise`) or given.

Shapes: ``r`` candidate quantities, ``B`` trajectories, ``n`` points, ``M`` phase dimension.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pyro_razor.discovery.direct import conservation_tests, reported_directions, verdict_of
from pyro_razor.discovery.noise import NoiseEstimate
from pyro_razor.discovery.scatter import scatter_matrices
from pyro_razor.symmetry import quantity_from_generator

__all__ = ["QuadraticQuantities", "SpanVerdict", "conservation_in_span"]

F64 = torch.float64


class QuadraticQuantities:
    """A feature library whose features are given quadratic quantities.

    Args:
        A: ``(r, M, M)`` symmetric matrices; b: ``(r, M)`` vectors.

    Calling it on states ``x (N, M)`` gives the values ``(N, r)`` and gradients ``(N, r, M)``.
    """

    def __init__(self, A: torch.Tensor, b: torch.Tensor) -> None:
        if A.ndim != 3 or A.shape[-1] != A.shape[-2] or b.shape != A.shape[:2]:
            raise ValueError(f"QuadraticQuantities needs A (r, M, M) and b (r, M), got "
                             f"{tuple(A.shape)} and {tuple(b.shape)}")
        self.A, self.b = A.to(F64), b.to(F64)
        self.M = A.shape[-1]

    @property
    def num_features(self) -> int:
        return self.A.shape[0]

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.to(F64)
        grad = torch.einsum("rmk,nk->nrm", self.A, x) + self.b  # (N, r, M)
        values = 0.5 * torch.einsum("nrm,nm->nr", grad + self.b, x)  # 1/2 x^T A x + b^T x
        return values, grad


@dataclass
class SpanVerdict:
    """The calibrated verdict on a learned span; :meth:`to_json` is its record.

    Attributes:
        status: ``"determined"``, ``"approximate"`` or ``"undetermined"``.
        count: the conserved count (``None`` when undetermined).
        range: ``(low, high)`` the counts the data allow.
        counts: the tests' ``D``, ``U``, ``L`` and ``exact``.
        directions: ``(r', M+1, M+1)`` generators of the reported combinations, most
            conserved first (unit Frobenius norm).
        kinds: per direction ``"conserved"``, ``"approximate"`` or ``"undecided"``.
        ratios, thresholds, drifts: per eigen-direction (the order of ``directions``), the
            within/noise scatter ratio, the test's threshold (``nan`` beyond the first failure)
            and the relative drift beyond the noise.
        alpha, tolerance: the tests' level and drift tolerance.
    """

    status: str
    count: int | None
    range: tuple[int, int]
    counts: dict
    directions: torch.Tensor
    kinds: list[str]
    ratios: list[float]
    thresholds: list[float]
    drifts: list[float]
    alpha: float
    tolerance: float

    def to_json(self) -> dict:
        return {"status": self.status, "count": self.count, "range": list(self.range),
                "counts": self.counts, "kinds": self.kinds, "ratios": self.ratios,
                "thresholds": self.thresholds, "drifts": self.drifts, "alpha": self.alpha,
                "tolerance": self.tolerance}


@torch.no_grad()
def conservation_in_span(
    generators: torch.Tensor, trajectories: torch.Tensor, noise: NoiseEstimate, *,
    alpha: float = 0.05, tolerance: float = 0.05,
) -> SpanVerdict:
    """Which combinations of ``generators`` the data conserve, by the direct estimator's tests.

    Args:
        generators: ``(r, M+1, M+1)`` the candidates' generators (``r >= 1``), in the units of
            ``trajectories``.
        trajectories: ``(B, n, M)`` states, ``B >= 2``.
        noise: the observation noise in the same units (:mod:`.noise`).
        alpha: the tests' level, in ``(0, 0.5)``; tolerance: the drift tolerance in ``[0, 1)``.
    """
    if generators.ndim != 3 or generators.shape[0] == 0:
        raise ValueError("conservation_in_span needs at least one generator (r, M+1, M+1), "
                         f"got shape {tuple(generators.shape)}")
    if not 0.0 < alpha < 0.5 or not 0.0 <= tolerance < 1.0:
        raise ValueError(f"conservation_in_span: alpha must be in (0, 0.5) and tolerance in "
                         f"[0, 1), got {alpha!r} and {tolerance!r}")
    G = generators.detach().cpu().to(F64)
    A, b = quantity_from_generator(G)
    xs = list(trajectories.detach().cpu().to(F64))
    M = G.shape[-1] - 1
    tests = conservation_tests(scatter_matrices(xs, QuadraticQuantities(A, b)), noise, alpha,
                               tolerance, family=M * (M + 3) // 2)
    counts = tests["counts"]
    status, count, span = verdict_of(counts["D"], counts["U"], counts["exact"], counts["L"])
    C, kinds = reported_directions(status, count, span, tests["C"], tests["constant"],
                                   counts["U"])
    directions = torch.einsum("rk,rij->kij", torch.from_numpy(np.ascontiguousarray(C)), G)
    norms = directions.flatten(1).norm(dim=1).clamp_min(1e-300)
    return SpanVerdict(status, count, span, dict(counts), directions / norms[:, None, None],
                       kinds, tests["ratios"].tolist(),
                       [float(t) for t in tests["thresholds"]], tests["drifts"].tolist(), alpha,
                       tolerance)
