r"""The implicit-midpoint flow of a polynomial quantity and its tangent-linear Jacobian, as pure
tensor functions (issue 24, point 2).

:class:`~pyro_razor.models.polynomial_quantities.PolynomialQuantities` holds the coefficients
and the monomial bookkeeping; this module does the arithmetic of its flows on plain tensors, so
that one function can be handed to ``torch.compile``:

- :func:`indexed_monomials` monomials by their exponents, e.g. ``psi(x)``, those of degree
  ``0..D-1`` (``grad C = L psi``);
- :func:`flow_field` ``f = J grad C`` with the optional speed limit ``v``;
- :func:`field_and_jacobian` ``f`` and ``Df = J Hess C`` (with the limit,
  ``d(r f) = r Df - (r^3 / v^2) f (f^T Df)``, ``r = (1 + |f|^2 / v^2)^(-1/2)``), where
  ``Hess C(x)[i, j] = sum_h Hc[i, j, h] psi_h(x)``;
- :func:`midpoint_flow` ``Phi(x)``: ``n`` implicit-midpoint sub-steps ``y = x + h f((x + y) / 2)``,
  ``h = 1/n``, each an explicit-Euler predictor and ``iterations`` fixed-point corrections;
- :func:`midpoint_flow_and_jacobian` the same and ``DPhi(x)``, carried beside it through the
  same operations (``Y = T + h Df(m) (T + Y) / 2``), so that ``grad (F o Phi) = DPhi^T grad F``
  needs no backward pass through the flow.

:func:`flow_and_jacobian` runs :func:`midpoint_flow_and_jacobian` eagerly, or (``compiled=True``,
while grad is enabled: the training step, whose shapes do not change) through
``torch.compile`` — one fused graph for the whole flow instead of ~30 small operations per field
evaluation. Compilation happens once per shape and process (cached on disk by inductor); if it
fails, a warning says so and the eager function is used from then on.

Shapes: ``(..., M)`` points, ``L`` ``(..., M, F')`` and ``Hc`` ``(..., M, M, F')``
broadcastable against the points' batch dims.
"""

from __future__ import annotations

import warnings
from functools import reduce
from operator import mul

import torch

__all__ = [
    "field_and_jacobian",
    "flow_and_jacobian",
    "flow_field",
    "indexed_monomials",
    "midpoint_flow",
    "midpoint_flow_and_jacobian",
    "powers_table",
]


def powers_table(x: torch.Tensor, degree: int) -> torch.Tensor:
    """``(..., M (D+1))`` table of ``x_i^e``, ``e = 0..D``, flattened coordinate-major."""
    powers = [torch.ones_like(x)]
    for _ in range(degree):
        powers.append(powers[-1] * x)
    return torch.stack(powers, dim=-1).flatten(-2)


def indexed_monomials(x: torch.Tensor, index: torch.Tensor, degree: int) -> torch.Tensor:
    """The monomials whose exponents, offset into :func:`powers_table`, are ``index (G, M)``:
    ``(..., M)`` -> ``(..., G)`` (``index_select``, whose backward is a fast ``index_add``,
    rather than advanced indexing, whose backward is a serial accumulate)."""
    table = torch.index_select(powers_table(x, degree), -1, index.flatten())
    return reduce(mul, table.unflatten(-1, tuple(index.shape)).unbind(-1))


def _symplectic(v: torch.Tensor, dim: int) -> torch.Tensor:
    """``J v`` along ``dim`` (``J = [[0, I], [-I, 0]]``): exact (a signed permutation), so it
    may be applied to ``L`` and ``Hc`` once per flow instead of to every field value."""
    d = v.shape[dim] // 2
    return torch.cat([v.narrow(dim, d, d), -v.narrow(dim, 0, d)], dim=dim)


def _field(psi, JL, max_speed: float | None) -> torch.Tensor:
    f = torch.einsum("...g,...ig->...i", psi, JL)
    if max_speed is None:
        return f
    return f * torch.rsqrt(1.0 + f.square().sum(-1, keepdim=True) / max_speed**2)


def _field_and_jacobian(psi, JL, JHc, max_speed: float | None):
    # einsum contracts the monomial axis without materialising the broadcast product
    f = torch.einsum("...g,...ig->...i", psi, JL)
    Df = torch.einsum("...h,...ijh->...ij", psi, JHc)
    if max_speed is None:
        return f, Df
    r = torch.rsqrt(1.0 + f.square().sum(-1, keepdim=True) / max_speed**2)
    f_Df = (f[..., :, None] * Df).sum(-2, keepdim=True)  # (..., 1, M)
    Df = r[..., None] * Df - (r.pow(3)[..., None] / max_speed**2) * f[..., None] * f_Df
    return f * r, Df


def flow_field(x, L, index, degree: int, max_speed: float | None) -> torch.Tensor:
    """``f = J L psi(x)``, speed-limited: ``(..., M)``."""
    return _field(indexed_monomials(x, index, degree), _symplectic(L, -2), max_speed)


def field_and_jacobian(x, L, Hc, index, degree: int, max_speed: float | None):
    """``(f, Df)``: :func:`flow_field` and its Jacobian ``(..., M, M)``."""
    return _field_and_jacobian(indexed_monomials(x, index, degree), _symplectic(L, -2),
                               _symplectic(Hc, -3), max_speed)


def midpoint_flow(x, L, index, degree: int, max_speed: float | None, steps: int,
                  iterations: int) -> torch.Tensor:
    """``Phi(x)``, the time-1 implicit-midpoint flow of the field ``J L psi``."""
    JL, h = _symplectic(L, -2), 1.0 / steps

    def field(z):
        return _field(indexed_monomials(z, index, degree), JL, max_speed)

    for _ in range(steps):
        y = x + h * field(x)
        for _ in range(iterations):
            y = x + h * field(0.5 * (x + y))
        x = y
    return x


def midpoint_flow_and_jacobian(x, L, Hc, index, degree: int, max_speed: float | None,
                               steps: int, iterations: int):
    """``(Phi(x), DPhi(x))``: :func:`midpoint_flow` (the same values) and ``(..., M, M)``
    Jacobians ``DPhi[i, j] = d Phi_i / d x_j``."""
    M = x.shape[-1]
    T = torch.eye(M, dtype=x.dtype, device=x.device).expand(*x.shape, M)
    JL, JHc, h = _symplectic(L, -2), _symplectic(Hc, -3), 1.0 / steps

    def field(z):
        return _field_and_jacobian(indexed_monomials(z, index, degree), JL, JHc, max_speed)

    for _ in range(steps):
        f, Df = field(x)
        y, Y = x + h * f, T + h * (Df @ T)
        for _ in range(iterations):
            f, Df = field(0.5 * (x + y))
            y, Y = x + h * f, T + h * (Df @ (0.5 * (T + Y)))
        x, T = y, Y
    return x, T


_COMPILED = {"function": None, "failed": False, "verified": set()}


def _compiled():
    if _COMPILED["function"] is None:
        _COMPILED["function"] = torch.compile(midpoint_flow_and_jacobian, dynamic=False,
                                              fullgraph=True)
    return _COMPILED["function"]


def _signature(args) -> tuple:
    return tuple((tuple(a.shape), a.dtype, a.device, a.requires_grad)
                 if isinstance(a, torch.Tensor) else a for a in args)


def _run_compiled(args):
    """The compiled function on ``args``; the first time for a signature (shapes, dtypes,
    which inputs need gradients) it is first run on detached copies and differentiated, so
    that a failure to compile the *backward* (compiled lazily, inside the caller's
    ``backward()``, where it could not be caught) shows here."""
    function, key = _compiled(), _signature(args)
    if key not in _COMPILED["verified"]:
        probe = [a.detach().requires_grad_(a.requires_grad) if isinstance(a, torch.Tensor)
                 else a for a in args]
        z, D = function(*probe)
        if z.requires_grad or D.requires_grad:
            (z.sum() + D.sum()).backward()
        _COMPILED["verified"].add(key)
    return function(*args)


def flow_and_jacobian(x, L, Hc, index, degree: int, max_speed: float | None, steps: int,
                      iterations: int, compiled: bool = False):
    """:func:`midpoint_flow_and_jacobian`, through ``torch.compile`` when ``compiled`` and grad
    is enabled (module docstring); the eager function otherwise or after a failed
    compilation (forward or backward)."""
    args = (x, L, Hc, index, degree, max_speed, steps, iterations)
    if compiled and torch.is_grad_enabled() and not _COMPILED["failed"]:
        try:
            return _run_compiled(args)
        except Exception as exc:  # noqa: BLE001 - any compiler failure falls back to eager
            _COMPILED["failed"] = True
            warnings.warn(f"torch.compile of the polynomial flow failed ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:160]}); using the eager flow",
                          RuntimeWarning, stacklevel=2)
    return midpoint_flow_and_jacobian(*args)
