r"""Writing a span of quadratic quantities for people: one basis, one rule, for every answer.

Both answers of ``pyro-razor discover`` — the direct estimate (:mod:`.laws`) and the razor's
(:mod:`.report`) — write their quantities through :func:`readable_basis` and
:func:`formulas`:

- **about the data**: a coordinate whose data mean exceeds its spread is written about that
  mean (:func:`origin`), so positions offset by 300 units give ``(x − 300)² + px²`` instead of
  ``x² − 600 x + px²``, whose quadratic part the relative rounding would drop (leaving ``x``);
- **the simplest basis** of the span (:func:`~pyro_razor.discovery.formulas.simplest_basis`,
  reduced row echelon form with each term weighted by its typical size on the data);
- **terms below a floor** (e.g. the noise level) of the largest term's typical size dropped
  from the printed formula — never from ``A`` and ``b``, which stay exact and about the origin.

Shapes: ``r`` quantities, ``M`` phase dimension.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pyro_razor.discovery.formulas import (
    format_quantity,
    monomial_scales,
    quantity_coefficients,
    simplest_basis,
)

__all__ = ["drop_small", "formulas", "origin", "readable_basis", "shifted_names"]


def origin(mean: torch.Tensor, spread: torch.Tensor) -> torch.Tensor:
    """``(M,)`` the point formulas are written about: a coordinate's data ``mean`` where it
    exceeds the coordinate's ``spread``, else 0."""
    return torch.where(mean.abs() > spread, mean, torch.zeros_like(mean))


def shifted_names(names: Sequence[str], mu: torch.Tensor) -> list[str]:
    """``names`` with ``(x − 300)`` for the shifted coordinates."""
    return [n if m == 0 else f"({n} {'−' if m > 0 else '+'} {abs(float(m)):.6g})"
            for n, m in zip(names, mu.tolist(), strict=True)]


def drop_small(coefficients: torch.Tensor, scale: torch.Tensor, floor: float) -> torch.Tensor:
    """Zero the terms whose typical size on the data is below ``floor`` of the largest."""
    size = coefficients.abs() * monomial_scales(scale)
    return torch.where(size < floor * size.max(), torch.zeros_like(coefficients), coefficients)


def readable_basis(A: torch.Tensor, b: torch.Tensor, mu: torch.Tensor, spread: torch.Tensor,
                   precision: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The simplest basis of the span of ``(A (r, M, M), b (r, M))`` written about ``mu``.

    Returns:
        ``(A, b, b_mu)``: the basis about the origin, and its linear part about ``mu``
        (``C = 1/2 (x - mu)^T A (x - mu) + b_mu^T (x - mu)`` up to a constant).
    """
    b_mu = b + A @ mu.to(A)
    A, b_mu, _ = simplest_basis(A, b_mu, tol=min(10.0 ** -precision, 0.5), scale=spread)
    return A, b_mu - A @ mu.to(A), b_mu


def formulas(A: torch.Tensor, b_mu: torch.Tensor, names: Sequence[str], mu: torch.Tensor,
             spread: torch.Tensor, precision: int, floor: float = 0.0,
             first: int = 1) -> list[str]:
    """``"C<first> = ..."``, ... for the basis of :func:`readable_basis` about ``mu``."""
    written = shifted_names(names, mu)
    coefficients = quantity_coefficients(A, b_mu)
    return [format_quantity(drop_small(c, spread, floor), written, precision,
                            label=f"C{first + k}", scale=spread)
            for k, c in enumerate(coefficients)]
