r"""Do the razor and the direct estimate find the same quantities? Principal angles of two spans.

Each answer of ``pyro-razor discover`` is a span of quadratic quantities (row-echelon bases
differ even when the spans agree: the razor's ``C1 = x² + 1.49 y² + px² + 0.58 py²`` is
``2 E_1 + 1.16 E_2``, in the span of the direct ``E_1, E_2``). :func:`span_agreement` compares
the spans, not the formulas: with orthonormal bases ``Q_1, Q_2`` of the two sets of monomial
coefficient vectors (``Q_1`` the smaller), the cosines of the principal angles are the singular
values of ``Q_1^T Q_2`` and their sines those of ``(I - Q_2 Q_2^T) Q_1`` (Björck & Golub 1973),
combined by ``atan2`` so that small angles keep their precision. Coefficients are taken in the
standardised units of the data (:class:`~pyro_razor.systems.units.PhaseSpaceScaling`), where
every coordinate varies by about one, so an angle weighs each monomial by its typical size on
the data.

Shapes: ``r`` quantities, ``M`` phase dimension.
"""

from __future__ import annotations

import math

import torch

from pyro_razor.discovery.formulas import quantity_coefficients
from pyro_razor.systems.units import PhaseSpaceScaling

__all__ = ["quadratic_span", "records_agreement", "span_agreement"]

F64 = torch.float64


def _basis(A: torch.Tensor, b: torch.Tensor, scaling: PhaseSpaceScaling) -> torch.Tensor:
    """``(F, r')`` orthonormal basis of the quantities' standardised coefficient vectors."""
    A_s, b_s = scaling.quantities_to_scaled(A.to(F64), b.to(F64))
    C = quantity_coefficients(A_s, b_s)
    U, s, _ = torch.linalg.svd(C.T, full_matrices=False)
    return U[:, s > 1e-12 * float(s.max())]


def span_agreement(razor: tuple[torch.Tensor, torch.Tensor],
                   direct: tuple[torch.Tensor, torch.Tensor],
                   scaling: PhaseSpaceScaling) -> dict:
    """Principal angles between the razor's and the direct estimate's spans.

    Args:
        razor, direct: ``(A (r, M, M), b (r, M))`` in the user's units (``r`` may be 0 and
            may differ between the two).
        scaling: the data's standardisation.

    Returns:
        ``{"razor": r_1, "direct": r_2, "angles_deg": [min(r_1, r_2) angles, ascending],
        "largest_deg": the largest of them (``None`` when either span is empty)}``.
    """
    r1, r2 = razor[0].shape[0], direct[0].shape[0]
    if r1 == 0 or r2 == 0:
        return {"razor": r1, "direct": r2, "angles_deg": [], "largest_deg": None}
    small, large = sorted((_basis(*razor, scaling), _basis(*direct, scaling)),
                          key=lambda Q: Q.shape[1])
    cosines = torch.linalg.svdvals(small.T @ large)  # descending
    sines = torch.linalg.svdvals(small - large @ (large.T @ small)).flip(0)  # ascending
    angles = [math.degrees(math.atan2(float(s), float(c))) for s, c in zip(sines, cosines,
                                                                            strict=True)]
    return {"razor": r1, "direct": r2, "angles_deg": angles, "largest_deg": angles[-1]}


def quadratic_span(records: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A (r, M, M), b (r, M))`` of quantity records (``"A"``, ``"b"`` lists, as in
    ``discovery.json``; ``r = 0``: empty)."""
    if not records:
        return torch.zeros(0, 0, 0, dtype=F64), torch.zeros(0, 0, dtype=F64)
    return (torch.tensor([q["A"] for q in records], dtype=F64),
            torch.tensor([q["b"] for q in records], dtype=F64))


def records_agreement(razor: list[dict], direct: list[dict], scaling: PhaseSpaceScaling) -> dict:
    """:func:`span_agreement` of the razor's quantity records and the direct estimate's
    ``conserved`` ones (its approximate and undecided ones are not laws)."""
    return span_agreement(quadratic_span(razor),
                          quadratic_span([q for q in direct if q["kind"] == "conserved"]),
                          scaling)
