r"""Readable conserved quantities: monomial coefficients, the simplest basis, formula strings.

A quadratic quantity on phase space ``x = (q, p) in R^M`` (``M = 2d``, positions first)

.. math:: C(x) = \tfrac12 x^T A x + b^T x
          = \sum_i \tfrac12 A_{ii} x_i^2 + \sum_{i<j} A_{ij} x_i x_j + \sum_i b_i x_i

is a linear combination of ``M (M + 3) / 2`` monomials, listed in this order:

1. ``q_i q_j`` for ``i <= j``;
2. ``q_i p_j`` for all ``i, j``;
3. ``p_i p_j`` for ``i <= j``;
4. the linear ``q_1..q_d``, then ``p_1..p_d``.

The coefficient of ``x_i^2`` is ``A_ii / 2``, of ``x_i x_j`` (``i < j``) is ``A_ij``, of ``x_i``
is ``b_i`` (:func:`quantity_coefficients`, inverted exactly by
:func:`quantity_from_coefficients`). Conserved quantities are defined up to an additive
constant, so there is no constant monomial.

A learned set of ``K`` quantities is only defined up to its span (any invertible mix of
conserved quantities is conserved). :func:`simplest_basis` picks the canonical basis of that
span: the reduced row-echelon form (RREF) of the ``K x n_monomials`` coefficient matrix,
with pivots equal to 1 and zero rows dropped. Because the columns are ordered quadratic
first, quantities with a quadratic part come first and purely linear ones (momenta) last.
:func:`format_quantity` and :func:`format_quantities` print them, e.g. for two uncoupled
oscillators ``["C1 = q1² + p1²", "C2 = q1·q2 + p1·p2", "C3 = q2² + p2²",
"C4 = q1·p2 − q2·p1"]``.

Number format (:func:`format_quantity`, with ``precision`` = decimals shown): let ``s`` be the
largest ``|coefficient|`` of the quantity.

- A term with ``|c| < 0.5 * 10^-precision * s`` is dropped: it rounds to zero at
  ``precision`` decimals *relative to the largest term* (the overall scale of a conserved
  quantity is arbitrary, so only relative sizes mean anything). This removes noise.
- A kept coefficient with ``10^-m <= |c| < 10^4``, ``m = min(precision, 2)``, is written in
  fixed point with ``precision`` decimals and trailing zeros stripped (``0.5``, ``2``,
  ``0.33``); if that gives ``1`` the number is left out (``q1²``, ``−q2·p1``). Fixed point
  thus always shows a nonzero digit, and never more than two leading zeros.
- Any other kept coefficient is written in scientific notation with ``precision`` decimals
  in the mantissa, trailing zeros stripped and no exponent padding (``1e-6``, ``2.5e4``), so
  a quantity ``1e-6 q1²`` never prints as ``0.00 q1²``.

Terms are joined with ``" + "`` and ``" − "`` (U+2212 MINUS SIGN); a leading negative term
starts with ``"−"``; a quantity with no terms prints as ``"C1 = 0"``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from pyro_razor.symmetry import check_phase_dim, phase_labels

__all__ = [
    "format_coefficient",
    "format_quantities",
    "monomial_scales",
    "format_quantity",
    "monomials",
    "quantity_coefficients",
    "quantity_from_coefficients",
    "simplest_basis",
]

MINUS = "\u2212"
"""The minus sign used between terms (U+2212)."""

_F64 = torch.float64


# ---------------------------------------------------------------------------- monomials


def _check_names(names: Sequence[str] | None, M: int | None, caller: str) -> list[str]:
    """Validate user names (``M`` of them if ``M`` is given); ``None`` gives the defaults."""
    if names is None:
        if M is None:
            raise ValueError(f"{caller}: pass the coordinate names (M of them, positions first)")
        return phase_labels(M)
    names = list(names)
    if not all(isinstance(n, str) and n.strip() for n in names):
        raise ValueError(f"{caller}: every coordinate name must be a non-empty str, got {names}")
    if len(set(names)) != len(names):
        raise ValueError(f"{caller}: coordinate names must be distinct, got {names}")
    if M is not None and len(names) != M:
        raise ValueError(
            f"{caller}: got {len(names)} coordinate names for phase dimension M = {M}; "
            "pass one name per coordinate, positions first"
        )
    if len(names) == 0 or len(names) % 2 != 0:
        raise ValueError(
            f"{caller}: need an even, positive number of names (d positions then d momenta), "
            f"got {len(names)}"
        )
    return names


def _index_pairs(M: int) -> list[tuple[int, int]]:
    """Monomials as index pairs ``(i, j)`` with ``i <= j``; ``(i, -1)`` is the linear ``x_i``."""
    d = M // 2
    qq = [(i, j) for i in range(d) for j in range(i, d)]
    qp = [(i, d + j) for i in range(d) for j in range(d)]
    pp = [(d + i, d + j) for i in range(d) for j in range(i, d)]
    linear = [(i, -1) for i in range(M)]
    return qq + qp + pp + linear


def _monomial_count(M: int) -> int:
    return M * (M + 3) // 2


def monomials(names: Sequence[str]) -> list[str]:
    """Labels of the ``M (M + 3) / 2`` monomials over the coordinate names, in basis order.

    Args:
        names: ``M`` distinct coordinate names, positions first, e.g. ``["x", "y", "px",
            "py"]`` (see :func:`~pyro_razor.symmetry.phase_labels` for the defaults).

    Returns:
        ``["x²", "x·y", "y²", "x·px", "x·py", "y·px", "y·py", "px²", "px·py", "py²", "x", "y",
        "px", "py"]`` for that example: squares as ``"x²"``, products as ``"x·px"``.
    """
    names = _check_names(names, None, "monomials")
    labels = []
    for i, j in _index_pairs(len(names)):
        if j < 0:
            labels.append(names[i])
        elif i == j:
            labels.append(f"{names[i]}²")
        else:
            labels.append(f"{names[i]}·{names[j]}")
    return labels


# ---------------------------------------------------------------------------- coefficients


def _check_quantities(A: torch.Tensor, b: torch.Tensor, caller: str) -> int:
    """Check ``A (K, M, M)`` symmetric and ``b (K, M)``, finite; return ``M``."""
    if not isinstance(A, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise ValueError(f"{caller}: A and b must be torch tensors")
    if not (A.is_floating_point() and b.is_floating_point()):
        raise ValueError(f"{caller}: A and b must be floating point, got {A.dtype} and {b.dtype}")
    if A.dim() != 3 or A.shape[-1] != A.shape[-2] or b.shape != A.shape[:2]:
        raise ValueError(
            f"{caller}: need A of shape (K, M, M) and b of shape (K, M), got A "
            f"{tuple(A.shape)} and b {tuple(b.shape)}; use A[None], b[None] for one quantity"
        )
    M = A.shape[-1]
    if M == 0 or M % 2 != 0:
        raise ValueError(f"{caller}: phase dimension M = {M} must be positive and even (M = 2d)")
    if not (bool(torch.isfinite(A).all()) and bool(torch.isfinite(b).all())):
        raise ValueError(f"{caller}: A or b contains NaN or inf; clean the quantities first")
    A64 = A.detach().to(_F64)
    tol = math.sqrt(torch.finfo(A.dtype).eps) * float(A64.abs().max().clamp_min(1e-300))
    if float((A64 - A64.transpose(-1, -2)).abs().max()) > tol:
        raise ValueError(f"{caller}: A must be symmetric; pass (A + A^T) / 2")
    return M


def quantity_coefficients(A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Monomial coefficients of ``C_k(x) = 1/2 x^T A_k x + b_k^T x``.

    Args:
        A: ``(K, M, M)`` symmetric matrices.
        b: ``(K, M)`` vectors.

    Returns:
        ``(K, M (M + 3) / 2)`` coefficients in :func:`monomials` order (same dtype/device as
        ``A``): ``A_ii / 2`` for ``x_i^2``, ``A_ij`` for ``x_i x_j`` (``i < j``), ``b_i`` for
        ``x_i``.
    """
    M = _check_quantities(A, b, "quantity_coefficients")
    pairs = _index_pairs(M)
    quad = [(i, j) for i, j in pairs if j >= 0]
    rows = torch.tensor([i for i, _ in quad], device=A.device)
    cols = torch.tensor([j for _, j in quad], device=A.device)
    weight = torch.where(rows == cols, 0.5, 1.0).to(A.dtype)
    return torch.cat([A[:, rows, cols] * weight, b.to(A.dtype)], dim=-1)


def quantity_from_coefficients(
    coefficients: torch.Tensor, M: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Invert :func:`quantity_coefficients` exactly.

    Args:
        coefficients: ``(K, M (M + 3) / 2)`` monomial coefficients.
        M: phase dimension (positive, even).

    Returns:
        ``(A, b)`` of shapes ``(K, M, M)`` (symmetric) and ``(K, M)``.
    """
    check_phase_dim(M)
    n = _monomial_count(M)
    c = coefficients
    if not isinstance(c, torch.Tensor) or c.dim() != 2 or c.shape[-1] != n:
        got = tuple(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__
        raise ValueError(
            f"quantity_from_coefficients: need coefficients of shape (K, {n}) for M = {M} "
            f"(M (M + 3) / 2 monomials), got {got}"
        )
    if not c.is_floating_point():
        raise ValueError(
            f"quantity_from_coefficients: coefficients must be floating point, got {c.dtype}"
        )
    if not bool(torch.isfinite(c).all()):
        raise ValueError("quantity_from_coefficients: coefficients contain NaN or inf")
    quad = [(i, j) for i, j in _index_pairs(M) if j >= 0]
    rows = torch.tensor([i for i, _ in quad], device=c.device)
    cols = torch.tensor([j for _, j in quad], device=c.device)
    values = c[:, : len(quad)] * torch.where(rows == cols, 2.0, 1.0).to(c.dtype)
    A = c.new_zeros(c.shape[0], M, M)
    A[:, rows, cols] = values
    A[:, cols, rows] = values
    b = c[:, len(quad) :].clone()
    return A, b


# ---------------------------------------------------------------------------- simplest basis


def _rref(R: torch.Tensor, tol: float) -> tuple[torch.Tensor, list[int]]:
    """Gauss-Jordan with partial pivoting on ``(K, n)`` float64 rows; the ``r`` nonzero rows
    and their pivot columns.

    A column gets a pivot when its largest remaining entry exceeds ``tol`` (rows are
    pre-scaled to max-abs 1, so ``tol`` is relative).
    """
    R = R.clone()
    K, n = R.shape
    row, pivots = 0, []
    for col in range(n):
        if row == K:
            break
        k = row + int(R[row:, col].abs().argmax())
        if float(R[k, col].abs()) <= tol:
            continue
        R[[row, k]] = R[[k, row]]
        R[row] = R[row] / R[row, col]
        factors = R[:, col].clone()
        factors[row] = 0.0
        R = R - factors[:, None] * R[row][None, :]
        R[:, col] = 0.0
        R[row, col] = 1.0
        pivots.append(col)
        row += 1
    return R[:row], pivots


def monomial_scales(scale: torch.Tensor) -> torch.Tensor:
    """Typical sizes of the monomials for coordinates of typical sizes ``scale (M,)``:
    ``s_i s_j`` for ``x_i x_j`` and ``s_i`` for ``x_i``, in :func:`monomials` order."""
    s = torch.as_tensor(scale, dtype=_F64).reshape(-1)
    M = s.shape[0]
    return torch.tensor([float(s[i] * s[j]) if j >= 0 else float(s[i])
                         for i, j in _index_pairs(M)], dtype=_F64)


def simplest_basis(
    A: torch.Tensor, b: torch.Tensor, tol: float = 1e-8, scale: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The reduced row-echelon basis of the span of ``K`` quadratic quantities.

    Each coefficient row (:func:`quantity_coefficients`) is first divided by its largest
    ``|entry|`` (the span does not change), then Gauss-Jordan elimination with partial
    pivoting runs over the columns in :func:`monomials` order; a column gets a pivot only if
    its largest remaining entry exceeds ``tol`` (so ``tol`` is relative to each quantity's
    own scale). Pivots are exactly 1 and the pivot columns are exactly 0 in the other rows.
    Computed in float64.

    Args:
        A: ``(K, M, M)`` symmetric matrices.
        b: ``(K, M)`` vectors.
        tol: relative rank tolerance in ``(0, 1)``; raise it (e.g. to ``1e-3``) for noisy
            learned quantities.
        scale: ``(M,)`` typical size of each coordinate in the data (e.g. its standard
            deviation). Coordinates in very different units make raw coefficients
            incomparable (``x² / 10^6 + 10^6 px²``); with ``scale`` the elimination and the
            tolerance work on each term's typical contribution ``|c| * size(monomial)``, and
            every row is then rescaled so its pivot coefficient is 1.

    Returns:
        ``(A_r, b_r, r)``: ``(r, M, M)`` and ``(r, M)`` in ``A``'s dtype and device, and the
        rank ``r`` (the number of independent quantities).
    """
    M = _check_quantities(A, b, "simplest_basis")
    if not (isinstance(tol, (int, float)) and 0.0 < tol < 1.0):
        raise ValueError(f"simplest_basis: tol must be a number in (0, 1), got {tol!r}")
    coefficients = quantity_coefficients(A.detach().to(_F64), b.detach().to(_F64))
    weights = torch.ones(coefficients.shape[-1], dtype=_F64) if scale is None else (
        monomial_scales(scale).to(coefficients.device))
    weighted = coefficients * weights
    size = weighted.abs().amax(dim=-1, keepdim=True)
    rows = weighted[size[:, 0] > 0] / size[size[:, 0] > 0]
    reduced, pivots = _rref(rows, float(tol))
    reduced = reduced / weights
    if pivots:  # pivot coefficients back to exactly 1
        reduced = reduced / reduced[torch.arange(len(pivots)), pivots][:, None]
    A_r, b_r = quantity_from_coefficients(reduced, M)
    return A_r.to(A), b_r.to(A), reduced.shape[0]


# ---------------------------------------------------------------------------- formatting


def format_coefficient(value: float, precision: int) -> str:
    """``|value|`` as text by the module's rule (fixed point or scientific), no sign."""
    magnitude = abs(value)
    if 10.0 ** -min(precision, 2) <= magnitude < 1e4:
        text = f"{magnitude:.{precision}f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    mantissa, exponent = f"{magnitude:.{precision}e}".split("e")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def format_quantity(
    coefficients: torch.Tensor,
    names: Sequence[str] | None = None,
    precision: int = 2,
    label: str = "C1",
    scale: torch.Tensor | None = None,
) -> str:
    """One quantity as a formula, e.g. ``"C1 = q1² + p1²"`` (rule in the module docstring).

    Args:
        coefficients: ``(n_monomials,)`` coefficients in :func:`monomials` order, with
            ``n_monomials = M (M + 3) / 2``.
        names: ``M`` coordinate names, positions first; ``None`` gives ``q1..qd, p1..pd``.
        precision: decimals shown (an int in ``[0, 15]``); terms below ``0.5 * 10^-precision``
            times the largest ``|coefficient|`` are dropped.
        label: the left-hand side.
        scale: ``(M,)`` typical coordinate sizes: terms are then dropped by their typical
            contribution ``|c| * size(monomial)`` relative to the largest (see
            :func:`simplest_basis`), not by the raw coefficient.

    Returns:
        ``"<label> = <terms>"``.
    """
    c = coefficients
    if not isinstance(c, torch.Tensor) or c.dim() != 1:
        got = tuple(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__
        raise ValueError(f"format_quantity: coefficients must have shape (n_monomials,), got {got}")
    M = int(round((math.sqrt(9 + 8 * c.shape[0]) - 3) / 2))
    if M <= 0 or M % 2 != 0 or _monomial_count(M) != c.shape[0]:
        raise ValueError(
            f"format_quantity: {c.shape[0]} coefficients is not M (M + 3) / 2 for an even M "
            "(e.g. 14 for M = 4); pass one coefficient per monomial"
        )
    if not bool(torch.isfinite(c).all()):
        raise ValueError("format_quantity: coefficients contain NaN or inf")
    if not isinstance(precision, int) or isinstance(precision, bool) or not 0 <= precision <= 15:
        raise ValueError(f"format_quantity: precision must be an int in [0, 15], got {precision!r}")
    labels = monomials(_check_names(names, M, "format_quantity"))
    values = c.detach().to(device="cpu", dtype=_F64).tolist()
    sizes = [1.0] * len(values) if scale is None else monomial_scales(scale).tolist()
    largest = max(abs(v) * w for v, w in zip(values, sizes, strict=True))
    terms = []
    for value, size, monomial in zip(values, sizes, labels, strict=True):
        if value == 0.0 or abs(value) * size < 0.5 * 10.0**-precision * largest:
            continue
        number = format_coefficient(value, precision)
        body = monomial if number == "1" else f"{number} {monomial}"
        terms.append((value < 0, body))
    if not terms:
        return f"{label} = 0"
    text = (MINUS if terms[0][0] else "") + terms[0][1]
    for negative, body in terms[1:]:
        text += f" {MINUS if negative else '+'} {body}"
    return f"{label} = {text}"


def format_quantities(
    A: torch.Tensor,
    b: torch.Tensor,
    names: Sequence[str] | None = None,
    precision: int = 2,
    tol: float | None = None,
) -> list[str]:
    """Formulas ``C1 .. Cr`` of the :func:`simplest_basis` of a set of quantities.

    Args:
        A: ``(K, M, M)`` symmetric matrices.
        b: ``(K, M)`` vectors.
        names: ``M`` coordinate names, positions first (``None``: ``q1..qd, p1..pd``).
        precision: decimals shown, as in :func:`format_quantity`.
        tol: rank tolerance of :func:`simplest_basis`; ``None`` means ``10^-precision``:
            directions weaker than what the formulas can show count as noise.

    Returns:
        ``r`` strings, ``"C1 = ..."`` to ``"Cr = ..."``.
    """
    M = _check_quantities(A, b, "format_quantities")
    names = _check_names(names, M, "format_quantities")
    if not isinstance(precision, int) or isinstance(precision, bool) or not 0 <= precision <= 15:
        raise ValueError(
            f"format_quantities: precision must be an int in [0, 15], got {precision!r}"
        )
    tol = min(10.0**-precision, 0.5) if tol is None else tol
    A_r, b_r, r = simplest_basis(A, b, tol=tol)
    coefficients = quantity_coefficients(A_r, b_r)
    return [format_quantity(coefficients[k], names, precision, label=f"C{k + 1}") for k in range(r)]
