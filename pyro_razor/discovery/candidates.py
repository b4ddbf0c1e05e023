r"""The direct estimate's quantities as generators: where the razor starts, and what it checks.

The razor's conserved quantities ``C_eta`` (:class:`~pyro_razor.models.LearnedQuantities`) can
start at the quadratic quantities the direct estimate (:mod:`~pyro_razor.discovery.direct`)
reports, instead of at zero or at random (``model.eta_init = "direct"``). Each candidate
``C = 1/2 x^T A x + b^T x`` is scaled so that its flow moves the data at unit speed,

.. math:: \Big(\frac{1}{N}\sum_x \|J (A x + b)\|^2\Big)^{1/2} = 1,

so that the symmetry times ``tau`` (``|tau| <= measure_scale``) move the states by as much as
for every other candidate: a unit rotation for an oscillator's energy ``(q^2 + p^2)/2`` in
standardised units, a unit translation for a momentum. A candidate that moves the data much
less than its size (its speed on the data below ``|G|_F / sqrt(M)``, e.g. a combination that
is nearly constant on every trajectory because every run has the same total momentum) is
scaled to ``|G|_F = sqrt(M)`` instead — the size of the oscillator energy's generator ``J`` —
because scaling it to unit speed would blow it up by the inverse of a noise-level speed and
its flow would overflow away from the data; one that does not move the data at all starts at
zero. The order is the estimate's: conserved,
then approximately conserved, then undecided (:attr:`DirectEstimate.kinds`).

Shapes: ``B`` trajectories, ``n`` points, ``M`` phase dimension, ``L`` candidates, ``K``
learnable quantities.
"""

from __future__ import annotations

import torch

from pyro_razor.discovery.direct import DirectEstimate, direct_estimate
from pyro_razor.discovery.formulas import quantity_from_coefficients
from pyro_razor.symmetry import generator_matrix

__all__ = [
    "MIN_SPEED",
    "candidate_generators",
    "candidate_quantities",
    "direct_start",
    "flow_speed",
    "polynomial_candidates",
]

F64 = torch.float64


def flow_speed(generators: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """``(K,)`` root-mean-square speed ``|G_k [x; 1]|`` of each generator's flow on ``states
    (..., M)`` (same units as the states)."""
    M = generators.shape[-1] - 1
    x = states.reshape(-1, M).to(generators)
    velocity = torch.einsum("kij,nj->kni", generators[:, :M, :M], x) + generators[:, None, :M, M]
    return velocity.pow(2).sum(-1).mean(-1).sqrt()


MIN_SPEED = 1e-6
"""Flow speed on the data (the states' units, standardised in ``discover``) below which a
candidate moves nothing: e.g. ``(p1 + p2)^2`` when every run has ``p1 + p2 = 0``. It cannot be
scaled to unit speed (that would multiply it by up to 1e16 and overflow the flows), so it
starts at zero, like a spare quantity."""


def candidate_quantities(estimate: DirectEstimate, states: torch.Tensor):
    """The reported quantities ``(A, b)`` (shapes ``(L, M, M)``, ``(L, M)``) in the units of
    the states the estimate was given, scaled to unit flow speed on ``states (N, M)`` (at most
    to generator norm ``sqrt(M)``, module docstring); those whose flow does not move the
    states (speed at most :data:`MIN_SPEED`) are zero."""
    M = estimate.features.M
    if estimate.features.degree != 2:
        raise ValueError("candidate_quantities: only quadratic (degree-2) quantities have "
                         f"generators, got degree {estimate.features.degree}")
    A, b = estimate.scaling.quantities_to_original(
        *quantity_from_coefficients(estimate.coefficients.to(F64), M))
    G = generator_matrix(A, b)
    speed = flow_speed(G, states)
    size = G.flatten(1).norm(dim=1) / M**0.5
    factor = torch.where(speed > MIN_SPEED, 1.0 / torch.maximum(speed, size).clamp_min(MIN_SPEED),
                         0.0)
    return A * factor[:, None, None], b * factor[:, None]


def candidate_generators(estimate: DirectEstimate, states: torch.Tensor) -> torch.Tensor:
    """``(L, M+1, M+1)`` generators of :func:`candidate_quantities`."""
    return generator_matrix(*candidate_quantities(estimate, states))


def direct_start(trajectories: torch.Tensor, num_quantities: int, *, alpha: float = 0.05,
                 tolerance: float = 0.05) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Initial ``(A, b)`` of ``K`` learnable quantities from the direct estimate on
    ``trajectories (B, n, M)``: the first ``min(L, K)`` are the candidates (unit flow speed),
    the rest zero (the identity flow, free to grow). Returns ``(A (K, M, M), b (K, M),
    kinds)`` with the ``L`` candidates' kinds (``"conserved"``, ``"approximate"``,
    ``"undecided"``; ``L`` may exceed ``K``)."""
    trajectories = trajectories.detach().to("cpu", F64)
    M = trajectories.shape[-1]
    estimate = direct_estimate(trajectories, alpha=alpha, tolerance=tolerance)
    A0, b0 = candidate_quantities(estimate, trajectories)
    L, K = A0.shape[0], num_quantities
    A, b = torch.zeros(K, M, M, dtype=F64), torch.zeros(K, M, dtype=F64)
    A[:min(L, K)], b[:min(L, K)] = A0[:K], b0[:K]
    return A, b, list(estimate.kinds)


def polynomial_candidates(estimate: DirectEstimate, states: torch.Tensor,
                          degree: int) -> torch.Tensor:
    """The reported quantities of a monomial direct estimate (``direct_estimate(...,
    degree=degree)``, any degree) as ``(L, F)`` coefficients of
    :class:`~pyro_razor.models.PolynomialQuantities` of ``degree`` in the units of ``states
    (N, M)``, each scaled to unit flow speed ``(mean |J grad C|^2)^(1/2) = 1`` on ``states``
    (zero when it does not move them).

    The estimate's quantities are polynomials of the standardised states; rewritten in the
    states' own monomials by a least-squares fit on ``states`` (with a constant, then dropped),
    exact up to rounding when the states determine a degree-``degree`` polynomial (checked:
    relative residual below 1e-6).
    """
    from pyro_razor.models.polynomial_quantities import PolynomialQuantities

    if getattr(estimate.features, "degree", None) is None or estimate.features.degree > degree:
        raise ValueError("polynomial_candidates: needs a monomial direct estimate of degree <= "
                         f"{degree}, got features {type(estimate.features).__name__}")
    x = states.reshape(-1, states.shape[-1]).to(F64)
    phi, _ = estimate.features(estimate.scaling.to_scaled(x))
    values = phi @ estimate.coefficients.to(F64).T  # (N, L)
    basis = PolynomialQuantities(x.shape[-1], 1, degree).to(F64)
    design = torch.cat([basis.monomials(x), torch.ones_like(x[:, :1])], dim=1)
    fit = torch.linalg.lstsq(design, values).solution
    residual = (design @ fit - values).norm() / values.norm().clamp_min(1e-300)
    if residual > 1e-6:
        raise ValueError(f"polynomial_candidates: the states do not determine the degree-{degree}"
                         f" quantities (relative fit residual {float(residual):.2g}); give more "
                         "states")
    eta = fit[:-1].T.contiguous()  # (L, F)
    basis = PolynomialQuantities(x.shape[-1], eta.shape[0], degree, init=eta).to(F64)
    speed = basis.gradients(x).pow(2).sum(-1).mean(0).sqrt()  # (L,): |J v| = |v|
    factor = torch.where(speed > MIN_SPEED, 1.0 / speed.clamp_min(MIN_SPEED), 0.0)
    return eta * factor[:, None]
