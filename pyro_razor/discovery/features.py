r"""Feature libraries for direct discovery: their interface, monomials, and the estimator's view.

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

Every library (this module's :class:`MonomialFeatures`; trigonometric, inverse-distance,
user-callable, union and product libraries in :mod:`~pyro_razor.discovery.libraries`) offers:

- ``M`` (phase dimension), ``num_features`` (``F``), ``labels(names) -> F strings``;
- ``__call__(x (N, M)) -> (phi (N, F), J (N, F, M))``, ``J`` exact;
- ``standardised``: whether it is evaluated on the estimator's standardised states (monomials
  by default) or on the user's own coordinates (``cos`` of a standardised angle is not ``cos``
  of the angle); ``complexities``: ``(F,)`` a simplicity rank per feature (a monomial's degree),
  which :mod:`~pyro_razor.discovery.general` uses to write the simplest formulas.

:class:`ConditionedFeatures` is the direct estimator's view of a library: evaluated on the
standardised states ``z`` (``x = D z + mu``; a library on the user's coordinates gets
``x`` and its Jacobian is multiplied by ``D``, so the noise, kept in standardised units, is
carried correctly), each column divided by its spread on the data, and columns that are
constant or linear combinations of earlier ones on the data dropped (with a warning each).

Shapes: ``M`` phase dimension, ``F`` features, ``N`` states.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch

from pyro_razor.discovery.formulas import _index_pairs, monomials
from pyro_razor.symmetry import check_phase_dim

__all__ = ["ConditionedFeatures", "MonomialFeatures", "check_states", "feature_count"]

DEPENDENT_RTOL = 1e-9  # a column this close (relative) to the span of earlier ones is dropped


def check_states(x: torch.Tensor, M: int, caller: str) -> None:
    """One-line ``ValueError`` unless ``x`` is a finite ``(N, M)`` tensor."""
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[-1] != M:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{caller}: need states of shape (N, {M}), got {got}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{caller}: states contain NaN or inf; remove or repair them first")


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
        standardised: evaluate on the estimator's standardised states (the default; the
            degree-2 answer is mapped back exactly) or on the user's coordinates (``False``:
            formulas of any degree read directly in the user's units).
    """

    def __init__(self, M: int, degree: int = 2, standardised: bool = True):
        check_phase_dim(M)
        if not (isinstance(degree, int) and 1 <= degree <= 4):
            raise ValueError(f"MonomialFeatures: degree must be an integer 1 to 4, got {degree!r}")
        self.M, self.degree, self.standardised = M, degree, bool(standardised)
        self.index = torch.tensor(_index_tuples(M, degree), dtype=torch.long)  # (F, degree)

    @property
    def complexities(self) -> torch.Tensor:
        """``(F,)`` each monomial's degree."""
        return (self.index < self.M).sum(-1)

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


class ConditionedFeatures:
    """A library as the direct estimator evaluates it (module docstring).

    Args:
        library: any feature library (``M`` equal to the data's).
        scaling: the estimator's standardisation ``x = D z + mu``.
        states: ``(N, M)`` all standardised data states (to measure and check the columns).
        names: ``M`` coordinate names for the warnings (default ``x1..xM``).

    Attributes:
        kept: ``(F',)`` indices of the library's columns in use; scales: ``(F',)`` their
            spreads on the data; warnings: one line per dropped column.
    """

    def __init__(self, library, scaling, states: torch.Tensor, names=None):
        if getattr(library, "M", None) != states.shape[-1]:
            raise ValueError(f"direct_estimate: the feature library is for M = "
                             f"{getattr(library, 'M', None)}, the data have M = "
                             f"{states.shape[-1]}; build it with M = {states.shape[-1]}")
        self.library, self.scaling, self.M = library, scaling, library.M
        self.standardised = True
        self.degree = None  # not the quadratic (A, b) library: laws.py refuses it
        names = list(names) if names is not None else [f"x{i + 1}" for i in range(self.M)]
        self._labels = library.labels(names)
        self.kept, self.scales, self.warnings = self._select(*self._evaluate(states))

    def _evaluate(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if getattr(self.library, "standardised", False):
            return self.library(z)
        phi, J = self.library(self.scaling.to_original(z))
        return phi, J * self.scaling.scale().to(J)

    def _select(self, phi: torch.Tensor, J: torch.Tensor):
        """Drop constant columns and columns in the span of earlier ones (on the data)."""
        finite = torch.isfinite(phi).all(0) & torch.isfinite(J).all(-1).all(0)  # (F,)
        if not bool(finite.all()):
            bad = int((~finite).nonzero()[0])
            raise ValueError(f"direct_estimate: feature {self._labels[bad]!r} is NaN or inf on "
                             "the data (a distance of 0?); remove those states or that feature")
        size = phi.std(0, correction=0)
        slope = J.pow(2).sum(-1).mean(0).sqrt()
        scales = torch.where(size > 0, size, slope).clamp_min(1e-300)
        stacked = torch.cat([phi - phi.mean(0), J.permute(0, 2, 1).reshape(-1, J.shape[1])])
        stacked = (stacked / scales).numpy()
        R = np.linalg.qr(stacked, mode="r")
        norms = np.linalg.norm(stacked, axis=0)
        kept, warnings = [], []
        for k in range(phi.shape[1]):
            if size[k] <= 1e-12 * float(size.max()) and slope[k] <= 1e-12 * float(slope.max()):
                warnings.append(f"feature {self._labels[k]!r} is constant on the data; dropped")
            elif abs(R[k, k]) <= DEPENDENT_RTOL * max(norms[k], 1e-300):
                warnings.append(f"feature {self._labels[k]!r} is a linear combination of the "
                                "features before it on the data; dropped")
            else:
                kept.append(k)
        kept = torch.tensor(kept, dtype=torch.long)
        return kept, scales[kept], warnings

    @property
    def num_features(self) -> int:
        """``F'``, the columns in use."""
        return int(self.kept.numel())

    @property
    def complexities(self) -> torch.Tensor:
        return torch.as_tensor(self.library.complexities)[self.kept]

    def labels(self, names: Sequence[str]) -> list[str]:
        full = self.library.labels(names)
        return [full[k] for k in self.kept.tolist()]

    def to_library(self, coefficients: torch.Tensor) -> torch.Tensor:
        """``(r, F')`` coefficients of these columns to ``(r, F)`` of the library's features."""
        out = coefficients.new_zeros(coefficients.shape[0], self.library.num_features)
        out[:, self.kept] = coefficients / self.scales.to(coefficients)
        return out

    def __call__(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Columns in use at standardised states ``z (N, M)``: ``(N, F')``, ``(N, F', M)``."""
        phi, J = self._evaluate(z)
        return phi[:, self.kept] / self.scales, J[:, self.kept] / self.scales[:, None]
