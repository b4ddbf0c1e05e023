r"""The direct estimate as readable laws: formulas in the user's coordinates, and their algebra.

:func:`direct_discovery` turns a :class:`~pyro_razor.discovery.direct.DirectEstimate` of the
quadratic library into a :class:`~pyro_razor.discovery.report.Discovery`: each block of
quantities (conserved, approximately conserved, undecided) is mapped back from standardised to
the user's units (:meth:`~pyro_razor.systems.units.PhaseSpaceScaling.quantities_to_original`),
written in the simplest basis of its span (:func:`~pyro_razor.discovery.formulas.simplest_basis`
with the data's coordinate spreads as scales: coefficients relative to the largest term's
typical size, ``precision`` decimals, and terms smaller than :func:`noise_floor` of the
largest dropped from the printed formula — never from ``A``, ``b``), and each printed
quantity carries the statistics of the
test, recomputed for that very quantity (:meth:`DirectEstimate.statistics`). Coordinates whose
data mean exceeds their spread are written about that mean (:func:`origin`), so a law of
positions offset by 300 units reads ``(x − 300)² + px²`` instead of losing its quadratic part
to the rounding of ``x² − 600 x``; ``A`` and ``b`` are always about the origin. The Lie algebra
of the conserved block is identified in standardised units.

Shapes: ``r`` quantities, ``F`` features, ``M`` phase dimension.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pyro_razor.discovery.algebra import lie_algebra
from pyro_razor.discovery.direct import DirectEstimate
from pyro_razor.discovery.formulas import (
    format_quantity,
    monomial_scales,
    quantity_coefficients,
    quantity_from_coefficients,
    simplest_basis,
)
from pyro_razor.discovery.report import Discovery
from pyro_razor.symmetry import generator_matrix

__all__ = ["direct_discovery", "direct_quantities", "noise_floor", "origin", "shifted_names"]

F64 = torch.float64


def origin(estimate: DirectEstimate) -> torch.Tensor:
    """``(M,)`` the point formulas are written about: a coordinate's data mean where it exceeds
    the coordinate's spread (positions offset by 300 print as ``(x − 300)``), else 0."""
    mean, spread = estimate.scaling.shift, estimate.scaling.scale()
    return torch.where(mean.abs() > spread, mean, torch.zeros_like(mean))


def shifted_names(names: Sequence[str], mu: torch.Tensor) -> list[str]:
    """``names`` with ``(x − 300)`` for the shifted coordinates."""
    return [n if m == 0 else f"({n} {'−' if m > 0 else '+'} {abs(float(m)):.6g})"
            for n, m in zip(names, mu.tolist(), strict=True)]


def noise_floor(estimate: DirectEstimate) -> float:
    """Relative size below which a printed term is indistinguishable from noise: twice the
    largest standardised noise std (high estimate; 0 for noise-free data)."""
    return 2.0 * float(estimate.noise.high.max())


def _drop_small(coefficients: torch.Tensor, scale: torch.Tensor, floor: float) -> torch.Tensor:
    """Zero the terms whose typical size on the data is below ``floor`` of the largest."""
    size = coefficients.abs() * monomial_scales(scale)
    return torch.where(size < floor * size.max(), torch.zeros_like(coefficients), coefficients)


def _block(estimate: DirectEstimate, rows: torch.Tensor, precision: int):
    """Simplest basis of the span of ``rows (r, F)`` written about :func:`origin`: ``(A, b')``
    with ``C = 1/2 (x - mu)^T A (x - mu) + b'^T (x - mu)``, and the rows."""
    M, scaling, mu = estimate.features.M, estimate.scaling, origin(estimate)
    A_z, b_z = quantity_from_coefficients(rows, M)
    A, b = scaling.quantities_to_original(A_z, b_z)
    b_shift = b + A @ mu  # the same quantity about mu, up to a constant
    spread = scaling.scale()  # typical coordinate sizes in the user's units
    A, b_shift, _ = simplest_basis(A, b_shift, tol=min(10.0 ** -precision, 0.5), scale=spread)
    b = b_shift - A @ mu
    A_z, b_z = scaling.quantities_to_scaled(A, b)
    return A, b, b_shift, quantity_coefficients(A_z, b_z)


def direct_quantities(
    estimate: DirectEstimate, names: Sequence[str], precision: int = 2
) -> list[dict]:
    """Records ``label, kind, formula, A, b, ratio, drift`` of the reported quantities.

    Args:
        estimate: a degree-2 direct estimate.
        names: ``M`` coordinate names, positions first.
        precision: decimals of the printed coefficients (relative to the largest term).
    """
    if estimate.features.degree != 2:
        raise ValueError("direct_quantities: formulas in (A, b) form need the quadratic "
                         f"library, got degree {estimate.features.degree}")
    records = []
    for kind in ("conserved", "approximate", "undecided"):
        index = [i for i, k in enumerate(estimate.kinds) if k == kind]
        if not index:
            continue
        A, b, b_shift, rows = _block(estimate, estimate.coefficients[index], precision)
        stats = estimate.statistics(rows)
        scale, written = estimate.scaling.scale(), shifted_names(names, origin(estimate))
        floor = noise_floor(estimate)
        for j in range(A.shape[0]):
            label = f"C{len(records) + 1}"
            records.append({
                "label": label, "kind": kind, "A": A[j].tolist(), "b": b[j].tolist(),
                "formula": format_quantity(
                    _drop_small(quantity_coefficients(A[j:j + 1], b_shift[j:j + 1])[0], scale,
                                floor), written, precision, label=label, scale=scale),
                "ratio": stats["ratio"][j], "drift": stats["drift"][j]})
    return records


def direct_discovery(
    estimate: DirectEstimate, names: Sequence[str], precision: int = 2
) -> Discovery:
    """The :class:`~pyro_razor.discovery.report.Discovery` of a direct estimate alone."""
    quantities = direct_quantities(estimate, names, precision)
    conserved = [q for q in quantities if q["kind"] == "conserved"]
    M = estimate.features.M
    if conserved:
        A = torch.tensor([q["A"] for q in conserved], dtype=F64)
        b = torch.tensor([q["b"] for q in conserved], dtype=F64)
        G = estimate.scaling.generators_to_scaled(generator_matrix(A, b))
    else:
        G = torch.zeros(0, M + 1, M + 1, dtype=F64)
    algebra = lie_algebra(G).to_json()
    evidence = {"direct": estimate.to_json(), "precision": precision,
                "noise_floor": noise_floor(estimate)}
    return Discovery(quantities, algebra, evidence, estimate.summary(), estimate.warnings)
