r"""The direct estimate as readable laws: formulas in the user's coordinates, and their algebra.

:func:`direct_discovery` turns a :class:`~pyro_razor.discovery.direct.DirectEstimate` of the
quadratic library into a :class:`~pyro_razor.discovery.report.Discovery`: each block of
quantities (conserved, approximately conserved, undecided) is mapped back from standardised to
the user's units (:meth:`~pyro_razor.systems.units.PhaseSpaceScaling.quantities_to_original`)
and written by :mod:`~pyro_razor.discovery.writing` (about the data mean where a coordinate is
offset, simplest basis, terms below :func:`noise_floor` dropped from the printed formula).
Each printed quantity carries the statistics of the test, recomputed for that very quantity
(:meth:`DirectEstimate.statistics`). The Lie algebra of the conserved block is identified in
standardised units.

Shapes: ``r`` quantities, ``F`` features, ``M`` phase dimension.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pyro_razor.discovery.algebra import lie_algebra, tolerance_from_noise
from pyro_razor.discovery.direct import DirectEstimate
from pyro_razor.discovery.formulas import quantity_coefficients, quantity_from_coefficients
from pyro_razor.discovery.report import Discovery
from pyro_razor.discovery.writing import formulas, origin, readable_basis
from pyro_razor.symmetry import generator_matrix

__all__ = ["direct_discovery", "direct_quantities", "noise_floor"]

F64 = torch.float64


def noise_floor(estimate: DirectEstimate) -> float:
    """Relative size below which a printed term is indistinguishable from noise: twice the
    largest standardised noise std (high estimate; 0 for noise-free data)."""
    return 2.0 * float(estimate.noise.high.max())


def _block(estimate: DirectEstimate, rows: torch.Tensor, names: Sequence[str], first: int,
           precision: int):
    """The readable basis of the span of ``rows (r, F)``: ``(A, b)``, formulas, and the basis
    back in the standardised feature basis (for its statistics)."""
    scaling = estimate.scaling
    spread = scaling.scale()  # typical coordinate sizes in the user's units
    mu = origin(scaling.shift, spread)
    A, b = scaling.quantities_to_original(*quantity_from_coefficients(rows, estimate.features.M))
    A, b, b_mu = readable_basis(A, b, mu, spread, precision)
    written = formulas(A, b_mu, names, mu, spread, precision, noise_floor(estimate), first)
    return A, b, written, quantity_coefficients(*scaling.quantities_to_scaled(A, b))


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
        A, b, written, rows = _block(estimate, estimate.coefficients[index], names,
                                     len(records) + 1, precision)
        stats = estimate.statistics(rows)
        for j in range(A.shape[0]):
            records.append({
                "label": f"C{len(records) + 1}", "kind": kind, "A": A[j].tolist(),
                "b": b[j].tolist(), "formula": written[j], "ratio": stats["ratio"][j],
                "drift": stats["drift"][j]})
    return records


def direct_discovery(
    estimate: DirectEstimate, names: Sequence[str], precision: int = 2
) -> Discovery:
    """The :class:`~pyro_razor.discovery.report.Discovery` of a direct estimate alone; the
    algebra's tolerance follows the noise floor (:func:`.algebra.tolerance_from_noise`)."""
    quantities = direct_quantities(estimate, names, precision)
    conserved = [q for q in quantities if q["kind"] == "conserved"]
    M = estimate.features.M
    if conserved:
        A = torch.tensor([q["A"] for q in conserved], dtype=F64)
        b = torch.tensor([q["b"] for q in conserved], dtype=F64)
        G = estimate.scaling.generators_to_scaled(generator_matrix(A, b))
    else:
        G = torch.zeros(0, M + 1, M + 1, dtype=F64)
    algebra = lie_algebra(G, tol=tolerance_from_noise(noise_floor(estimate))).to_json()
    evidence = {"direct": estimate.to_json(), "precision": precision,
                "noise_floor": noise_floor(estimate)}
    return Discovery(quantities, algebra, evidence, estimate.summary(), estimate.warnings)
