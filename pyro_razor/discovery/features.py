r"""Feature libraries for direct discovery: monomials of the phase-space coordinates.

A candidate conserved quantity is a linear combination ``C(x) = c^T phi(x)`` of ``F`` features;
the direct estimator (:mod:`~pyro_razor.discovery.direct`) needs the features and their
Jacobians ``J = d phi / d x`` at every observed state (the Jacobian carries observation noise
into ``C``: ``C(x + e) ~ C(x) + c^T J e``).

:class:`MonomialFeatures` of degree ``D`` holds every monomial of degree ``1..D`` (there is no
constant: a conserved quantity is defined up to one). Degree 2 lists them in the order of
:func:`~pyro_razor.discovery.formulas.monomials`, so its coefficients are those of
:func:`~pyro_razor.discovery.formulas.quantity_from_coefficients`; higher degrees list the
monomials of degree ``D`` first, then ``D - 1``, ..., each degree in lexicographic order of its
sorted index tuple. A monomial is stored as a tuple of ``D`` coordinate indices padded with
``M`` (a constant 1), e.g. ``q1 p1`` in ``M = 2`` is ``(0, 1)`` and ``q1`` is ``(0, 2)``.

Shapes: ``M`` phase dimension, ``F`` features, ``N`` states.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch

from pyro_razor.discovery.formulas import _index_pairs, monomials
from pyro_razor.symmetry import check_phase_dim

__all__ = ["MonomialFeatures", "feature_count"]


def feature_count(M: int, degree: int) -> int:
    """``F``: the number of monomials of degree ``1..degree`` in ``M`` variables."""
    return math.comb(M + degree, degree) - 1


def _index_tuples(M: int, degree: int) -> list[tuple[int, ...]]:
    if degree == 2:
        return [(i, j) if j >= 0 else (i, M) for i, j in _index_pairs(M)]
    out = []
    for k in range(degree, 0, -1):
        out += [tup + (M,) * (degree - k)
                for tup in itertools.combinations_with_replacement(range(M), k)]
    return out


class MonomialFeatures:
    """All monomials of degree ``1..degree`` of ``M`` coordinates, with Jacobians.

    Args:
        M: phase dimension (positive, even).
        degree: the highest degree, 1 to 4 (``F`` grows as ``M^degree / degree!``).
    """

    def __init__(self, M: int, degree: int = 2):
        check_phase_dim(M)
        if not (isinstance(degree, int) and 1 <= degree <= 4):
            raise ValueError(f"MonomialFeatures: degree must be an integer 1 to 4, got {degree!r}")
        self.M, self.degree = M, degree
        self.index = torch.tensor(_index_tuples(M, degree), dtype=torch.long)  # (F, degree)

    @property
    def num_features(self) -> int:
        """``F``."""
        return self.index.shape[0]

    def labels(self, names: Sequence[str]) -> list[str]:
        """Readable monomials over ``names``, e.g. ``"x²"``, ``"x·px"``, ``"x³"``."""
        if len(names) != self.M:
            raise ValueError(f"MonomialFeatures.labels: need {self.M} names, got {len(names)}")
        if self.degree == 2:
            return monomials(names)
        powers = "¹²³⁴"
        out = []
        for row in self.index.tolist():
            counts = {i: row.count(i) for i in sorted(set(row)) if i < self.M}
            out.append("·".join(names[i] + (powers[c - 1] if c > 1 else "")
                                for i, c in counts.items()))
        return out

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and Jacobians at ``x (N, M)``: ``phi (N, F)`` and ``J (N, F, M)``."""
        if x.dim() != 2 or x.shape[-1] != self.M:
            raise ValueError(f"MonomialFeatures: need states of shape (N, {self.M}), "
                             f"got {tuple(x.shape)}")
        extended = torch.cat([x, x.new_ones(x.shape[0], 1)], dim=-1)  # (N, M + 1)
        index = self.index.to(x.device)
        factors = extended[:, index]  # (N, F, degree)
        phi = factors.prod(dim=-1)
        J = x.new_zeros(x.shape[0], self.num_features, self.M + 1)
        for pos in range(self.degree):
            others = torch.cat([factors[..., :pos], factors[..., pos + 1:]], dim=-1).prod(-1)
            J.scatter_add_(2, index[None, :, pos:pos + 1].expand(x.shape[0], -1, 1),
                           others[..., None])
        return phi, J[..., : self.M]
