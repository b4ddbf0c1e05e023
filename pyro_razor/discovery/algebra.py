r"""The real Lie algebra spanned by a set of symmetry generators, and its name.

A quadratic quantity ``C = 1/2 x^T A x + b^T x`` has the generator ``G = [[J A, J b], [0, 0]]``
of shape ``(M+1, M+1)``; generators bracket by the commutator ``[G1, G2] = G1 G2 - G2 G1`` (the
Poisson bracket up to sign, modulo constants). For ``K`` generators we take an orthonormal basis
``E_1..E_d`` of their span (Frobenius inner product) and, by least squares,

.. math:: [E_i, E_j] \approx \sum_k c_{ijk} E_k, \qquad \mathrm{closure} =
    \Big(\sum_{ij} \|[E_i,E_j] - \sum_k c_{ijk} E_k\|^2 \big/ \sum_{ij} \|[E_i,E_j]\|^2\Big)^{1/2}.

The rest uses ``c`` alone, with ``(ad_x)_{kj} = sum_i x_i c_ijk`` for ``x in R^d``: the centre
``{x : ad_x = 0}``, the derived algebra ``[g, g]``, the derived series ``g^(k+1) = [g^(k), g^(k)]``
(solvable iff it reaches 0), the lower central series ``g_(k+1) = [g, g_k]`` (nilpotent iff it
reaches 0), the Killing form ``B(x, y) = tr(ad_x ad_y)`` and the rank (the dimension of the
centraliser of a generic, random, element). The names (:func:`identify`, rules in
:mod:`~pyro_razor.discovery.naming`) use ``c`` and, from :func:`lie_algebra`, the action on
phase space (the linear blocks ``G[:M, :M]``), which tells ``u(n)`` from ``so(3) ⊕ u(1)``.

Quantities, not generators. The generator of ``{C_1, C_2}`` (``{f, g} = grad f^T J grad g``,
``{q, p} = 1``) is exactly ``[G_1, G_2]``, but the bracket also has a constant,
``b_1^T J b_2``, that the generator (of a constant: 0) drops; so ``{q, p}`` commute as
generators but span the Heisenberg algebra as quantities. :func:`lie_algebra` keeps these
constants by default (:func:`poisson_constants`): the constant function joins the algebra,
as a central element, when they are not removable by shifting the quantities by constants.

Tolerance: a singular value counts as zero below ``tol * scale``, a Killing eigenvalue below
``tol * scale^2``; ``scale`` is the largest ``|ad_x|_F`` over unit ``x`` (at least 1e-6), floored
by :func:`lie_algebra` at ``1 / sqrt(M+1)`` (the bracket of two unrelated unit-norm generators) so
that a noisy abelian algebra stays abelian. ``tol = 1e-2`` suits entries accurate to ~1e-3;
for noisy data :func:`tolerance_from_noise` sets it from the noise floor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from pyro_razor.symmetry import symplectic_matrix

__all__ = [
    "LieAlgebraReport",
    "closure_error",
    "identify",
    "invariants",
    "killing_form",
    "lie_algebra",
    "poisson_cocycle",
    "poisson_constants",
    "span_basis",
    "structure_constants",
    "tolerance_from_noise",
]

DT = torch.float64
_TRIALS = 5  # random draws of "generic" elements (rank, commutant)
_FLOOR = 1e-6  # least default scale: constants below 1e-8 in an orthonormal basis are rounding


def _check_fraction(name: str, value: float) -> float:
    if not (0.0 < float(value) < 1.0):
        raise ValueError(f"{name} must be a relative tolerance in (0, 1), got {value}")
    return float(value)


def _as_stack(generators, caller: str) -> torch.Tensor:
    G = torch.as_tensor(generators).to(DT)
    if G.dim() != 3 or G.shape[1] != G.shape[2]:
        raise ValueError(
            f"{caller}: generators must have shape (K, M+1, M+1), got "
            f"{tuple(G.shape)}; stack K square generator matrices on a first axis"
        )
    M = G.shape[1] - 1
    if M <= 0 or M % 2 != 0:
        raise ValueError(
            f"{caller}: generators of size {M + 1} x {M + 1} give phase dimension "
            f"M = {M}, but M must be positive and even; pass M = 2d"
        )
    if not bool(torch.isfinite(G).all()):
        raise ValueError(f"{caller}: generators contain NaN or inf; repair or drop them first")
    return G


def _as_constants(c, caller: str) -> torch.Tensor:
    c = torch.as_tensor(c).to(DT)
    if c.dim() != 3 or not (c.shape[0] == c.shape[1] == c.shape[2]):
        raise ValueError(
            f"{caller}: structure constants must have shape (d, d, d), got "
            f"{tuple(c.shape)}; compute them with structure_constants(basis)"
        )
    if not bool(torch.isfinite(c).all()):
        raise ValueError(f"{caller}: structure constants contain NaN or inf; recompute them")
    return c


def span_basis(generators, rtol: float = 1e-8) -> torch.Tensor:
    """Orthonormal basis (Frobenius inner product) of the span of ``generators``.

    Args:
        generators: ``(K, M+1, M+1)``; ``K = 0`` is allowed.
        rtol: singular values below ``rtol`` times the largest are dropped (numerical rank).

    Returns:
        ``(d, M+1, M+1)`` float64, ``d`` the numerical rank of the stack.
    """
    G = _as_stack(generators, "span_basis")
    rtol = _check_fraction("rtol", rtol)
    K, n, _ = G.shape
    if K == 0:
        return G.new_zeros(0, n, n)
    _, S, Vh = torch.linalg.svd(G.reshape(K, n * n), full_matrices=False)
    d = int((S > rtol * S[0]).sum()) if S[0] > 0 else 0
    return Vh[:d].reshape(d, n, n)


def _brackets(E: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
    """``(d, d, n, n)`` commutators ``[E_i, E_j]``, minus ``sum_k c_ijk E_k`` if ``c`` given."""
    br = E[:, None] @ E[None] - E[None] @ E[:, None]
    return br if c is None else br - torch.einsum("ijk,kab->ijab", c, E)


def structure_constants(basis) -> torch.Tensor:
    """Structure constants ``c`` with ``[E_i, E_j] ~ sum_k c[i, j, k] E_k`` (least squares).

    Args:
        basis: ``(d, M+1, M+1)`` linearly independent generators (e.g. from :func:`span_basis`).

    Returns:
        ``(d, d, d)`` float64; the orthogonal projection when ``basis`` is orthonormal.
    """
    E = _as_stack(basis, "structure_constants")
    d, n, _ = E.shape
    if d == 0:
        return E.new_zeros(0, 0, 0)
    br = _brackets(E).reshape(d * d, n * n)
    coef = torch.linalg.lstsq(E.reshape(d, n * n).T, br.T).solution  # (d, d*d)
    return coef.T.reshape(d, d, d).contiguous()


def closure_error(basis, c=None) -> float:
    """Relative part of the brackets ``[E_i, E_j]`` outside the span of ``basis``.

    Args:
        basis: ``(d, M+1, M+1)``; c: its ``(d, d, d)`` constants (None: computed here).

    Returns:
        The closure error of the module docstring; 0 when every bracket vanishes to rounding
        (norm below ``1e-12 * sum_i |E_i|_F^2``).
    """
    E = _as_stack(basis, "closure_error")
    c = structure_constants(E) if c is None else _as_constants(c, "closure_error")
    if c.shape[0] != E.shape[0]:
        raise ValueError(
            f"closure_error: {E.shape[0]} basis elements but constants of dimension "
            f"{c.shape[0]}; pass the constants computed from this basis"
        )
    den = float(_brackets(E).norm())
    return 0.0 if den <= 1e-12 * float((E**2).sum()) else float(_brackets(E, c).norm()) / den


def killing_form(c) -> torch.Tensor:
    """Killing form ``B[i, j] = tr(ad_{E_i} ad_{E_j})`` of ``(d, d, d)`` constants; ``(d, d)``."""
    c = _as_constants(c, "killing_form")
    return torch.einsum("ilk,jkl->ij", c, c)


def _scale(c: torch.Tensor) -> float:
    """Largest ``|ad_x|_F`` over unit ``x``."""
    d = c.shape[0]
    return float(torch.linalg.matrix_norm(c.reshape(d, d * d), ord=2)) if d else 0.0


def _spaces(A: torch.Tensor, thr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthonormal bases ``(p, r)`` of the row space and ``(p, p - r)`` of the null space of
    ``(n, p)`` ``A``, counting singular values ``<= thr`` as zero."""
    pad = A.new_zeros(max(A.shape[1] - A.shape[0], 0), A.shape[1])  # so that Vh is (p, p)
    _, S, Vh = torch.linalg.svd(torch.cat([A, pad]), full_matrices=False)
    r = int((S > thr).sum())
    return Vh[:r].T, Vh[r:].T


def _centre(c: torch.Tensor, thr: float) -> torch.Tensor:
    d = c.shape[0]
    return _spaces(c.permute(1, 2, 0).reshape(d * d, d), thr)[1]


def _bracket_span(c: torch.Tensor, V: torch.Tensor, W: torch.Tensor, thr: float) -> torch.Tensor:
    """Orthonormal ``(d, r)`` basis of ``[span V, span W]``."""
    return _spaces(torch.einsum("ia,jb,ijk->abk", V, W, c).reshape(-1, c.shape[0]), thr)[0]


def _series(c: torch.Tensor, thr: float, lower: bool) -> list[int]:
    """Dimensions of the derived (``lower=False``) or lower central series, from ``dim g``."""
    full = torch.eye(c.shape[0], dtype=DT)
    V, dims = full, [c.shape[0]]
    while V.shape[1] > 0:
        W = _bracket_span(c, full if lower else V, V, thr)
        if W.shape[1] >= V.shape[1]:
            break
        V = W
        dims.append(W.shape[1])
    return dims


def _generic_nullity(c: torch.Tensor, Q: torch.Tensor, thr: float) -> int:
    """Least nullity of ``ad_x`` restricted to ``span Q`` over random unit ``x in span Q``."""
    gen = torch.Generator().manual_seed(0)
    best = Q.shape[1]
    for _ in range(_TRIALS if best else 0):
        x = Q @ torch.randn(Q.shape[1], dtype=DT, generator=gen)
        S = torch.linalg.svdvals(Q.T @ torch.einsum("i,ijk->kj", x / x.norm(), c) @ Q)
        best = min(best, Q.shape[1] - int((S > thr).sum()))
    return best


def _signature(B: torch.Tensor, thr: float) -> tuple[int, int, int]:
    ev = torch.linalg.eigvalsh(0.5 * (B + B.T))
    pos, neg = int((ev > thr).sum()), int((ev < -thr).sum())
    return pos, neg, B.shape[0] - pos - neg


def _setup(c, tol: float, scale, caller: str) -> tuple[torch.Tensor, float, float]:
    c = _as_constants(c, caller)
    tol = _check_fraction("tol", tol)
    scale = max(_scale(c), _FLOOR) if scale is None else float(scale)
    if not (scale >= 0 and math.isfinite(scale)):
        raise ValueError(f"{caller}: scale must be finite and >= 0, got {scale}")
    return c, tol * scale, tol * scale**2


def invariants(c, tol: float = 1e-2, scale: float | None = None) -> dict:
    """Basis-independent invariants of the Lie algebra with constants ``c``.

    Args:
        c: ``(d, d, d)`` structure constants in an orthonormal basis.
        tol: relative tolerance and ``scale`` its reference (None: from ``c``); module docstring.

    Returns:
        Plain dict: ``dimension``, ``centre_dimension``, ``derived_dimension``,
        ``derived_series`` and ``lower_central_series`` (dims from ``d`` until 0 or stable),
        ``is_abelian``, ``is_nilpotent``, ``is_solvable``, ``killing_signature``
        ``[n_positive, n_negative, n_zero]`` and ``rank`` (generic centraliser dimension).
    """
    c, thr, thr_b = _setup(c, tol, scale, "invariants")
    d = c.shape[0]
    derived, lower = _series(c, thr, lower=False), _series(c, thr, lower=True)
    derived_dim = derived[1] if len(derived) > 1 else derived[0]
    return {
        "dimension": d,
        "centre_dimension": int(_centre(c, thr).shape[1]),
        "derived_dimension": derived_dim,
        "derived_series": derived,
        "lower_central_series": lower,
        "is_abelian": derived_dim == 0,
        "is_nilpotent": lower[-1] == 0,
        "is_solvable": derived[-1] == 0,
        "killing_signature": list(_signature(killing_form(c), thr_b)),
        "rank": _generic_nullity(c, torch.eye(d, dtype=DT), thr),
    }


def poisson_cocycle(basis) -> torch.Tensor:
    r"""Constant parts of the Poisson brackets of the quantities of ``basis``, ``(d, d)``.

    ``E_i`` is the generator of ``C_i = 1/2 x^T A_i x + b_i^T x`` (``C_i(0) = 0``, translation
    part ``v_i = E_i[:M, M] = J b_i``). With ``{f, g} = grad f^T J grad g`` (so ``{q, p} = 1``)
    the generator of ``{C_i, C_j}`` is ``[E_i, E_j]`` exactly, and

    .. math:: \{C_i, C_j\} = C_{[E_i, E_j]} + \sigma_{ij}, \qquad
              \sigma_{ij} = b_i^T J b_j = v_i^T J v_j,

    the constant that commutators of generators drop (a constant has the generator 0).
    """
    E = _as_stack(basis, "poisson_cocycle")
    M = E.shape[-1] - 1
    v = E[:, :M, M]
    return v @ symplectic_matrix(M, dtype=DT) @ v.T


def poisson_constants(basis, c=None, tol: float = 1e-2, scale: float | None = None):
    r"""Structure constants of the quantities' Poisson algebra, the constant 1 included if needed.

    Quantities are defined up to constants: ``C_i -> C_i + f_i`` changes ``sigma`` by the
    coboundary ``sigma_ij -> sigma_ij - sum_k c_ijk f_k`` (e.g. the shift of origin that
    standardising makes). So the constant function belongs to the algebra only if ``sigma``
    is not a coboundary: ``s = sigma - P sigma``, with ``P`` the projector onto the range of
    ``f -> sum_k c_ijk f_k`` (singular values above ``tol * scale``); the constant ``1`` is
    added when ``|s|_2 > tol * scale``, as the last basis element, with
    ``[E_i, E_j] = sum_k c_ijk E_k + s_ij 1`` (a central extension; ``{q, p}`` gives ``h(3)``).

    Args:
        basis: ``(d, M+1, M+1)`` orthonormal; c: its constants (None: computed here).
        tol, scale: relative tolerance and reference (None: ``max(|ad|, 1/sqrt(M+1))``).

    Returns:
        ``(constants, central_constant)``: ``(d+1, d+1, d+1)`` and True, or ``c`` and False
        (also when ``basis`` is not of the form ``[[J A, J b], [0, 0]]``, ``A`` symmetric).
    """
    E = _as_stack(basis, "poisson_constants")
    c = structure_constants(E) if c is None else _as_constants(c, "poisson_constants")
    d = c.shape[0]
    scale = max(_scale(c), 1.0 / math.sqrt(E.shape[-1])) if scale is None else float(scale)
    thr = _check_fraction("tol", tol) * scale
    M = E.shape[-1] - 1
    A = -symplectic_matrix(M, dtype=DT) @ E[:, :M, :M]  # symmetric for a quadratic quantity
    if d == 0 or float((A - A.mT).norm() + E[:, M].norm()) > tol * float(E.norm()):
        return c, False  # not generators [[J A, J b], [0, 0]] of quantities: no constants
    sigma = poisson_cocycle(E).reshape(d * d)
    U = _spaces(c.reshape(d * d, d).T, thr)[0]  # (d*d, r): the coboundaries
    s = (sigma - U @ (U.T @ sigma)).reshape(d, d)
    if float(torch.linalg.matrix_norm(s, ord=2)) <= thr:
        return c, False
    ext = c.new_zeros(d + 1, d + 1, d + 1)
    ext[:d, :d, :d] = c
    ext[:d, :d, d] = 0.5 * (s - s.T)
    return ext, True


def tolerance_from_noise(floor: float) -> float:
    """Tolerance for :func:`lie_algebra` from a noise floor (twice the largest standardised
    noise std ``s``; 0 for exact data): ``clip(5 * floor, 1e-2, 0.1)``, i.e. ``10 s``.

    Coefficients found from data are accurate to about ``s`` relative; the spurious singular
    values of the constants come out 5 to 7 times the coefficients' relative error (brackets
    add up ``M`` terms; measured 6.5e-3 for h(5) at 1e-3), so ``10 s`` keeps them under the
    threshold. ``1e-2`` (entries accurate to ~1e-3) is kept for exact data; the cap 0.1 keeps
    apart the eigenvalue clusters (gaps ``> tol``) that split simple ideals: at 0.2 a random
    commutant element often merges the two ideals of ``su(2) ⊕ su(2)``.
    """
    return min(0.1, max(1e-2, 5.0 * float(floor)))


def identify(c, tol: float = 1e-2, scale: float | None = None, rep=None) -> str:
    """Name of the real Lie algebra with ``(d, d, d)`` structure constants ``c``.

    Recognises (rules: :mod:`~pyro_razor.discovery.naming`) ``0``, ``u(1)^k``, compact
    semisimple sums (``su(n)``, ``so(n)``, ..., ``su(2) ≅ so(3)``), ``sl(2,ℝ)``, ``u(n)``,
    their sums with ``u(1)^k``, ``se(2)``, ``u(1)^k ⊕ (so(2) ⋉ ℝ^m), weights (...)``,
    Heisenberg ``h(2n+1)``, ``se(3)`` and ``so(3) ⋉ ℝ^m, spins (...)``, ``n(4)`` and direct
    sums of these; anything else is ``"unrecognised"``. ``rep`` (optional, ``(d, n, n)``: the
    action on phase space, e.g. the generators' linear blocks) tells ``u(n)`` from
    ``so(3) ⊕ u(1)``. Invariant under orthogonal changes of basis (so under any mixing of
    generators, via span_basis).
    """
    from pyro_razor.discovery.naming import name_algebra  # naming imports this module

    return name_algebra(c, tol, scale, rep)[0]


@dataclass
class LieAlgebraReport:
    """The Lie algebra spanned by some generators (see :func:`lie_algebra`).

    Attributes: ``basis`` ``(d, M+1, M+1)`` orthonormal; ``structure_constants``
    ``(d', d', d')``, ``d' = d + 1`` when ``central_constant`` (the constant function 1 is then
    the last basis element), else ``d``; ``closure_error`` (of the generators); ``invariants``
    (the dict of :func:`invariants`, ``dimension = d'``); ``name`` (of :func:`identify`, or
    ``"not closed"``); ``simple_ideals`` (names, for a reductive algebra); ``rotation_weights``
    (of an ``so(2) ⋉ ℝ^m`` algebra, else None); ``summands`` (names of the direct summands);
    ``central_constant`` (whether brackets of the quantities leave a constant, e.g. ``{q, p}``).
    """

    basis: torch.Tensor
    structure_constants: torch.Tensor
    closure_error: float
    invariants: dict
    name: str
    simple_ideals: list[str] = field(default_factory=list)
    rotation_weights: list[float] | None = None
    summands: list[str] = field(default_factory=list)
    central_constant: bool = False

    def to_json(self) -> dict:
        """Plain-Python dict (int, float, str, bool, nested lists), without the basis."""
        return {
            **self.invariants,
            "name": self.name,
            "closure_error": float(self.closure_error),
            "structure_constants": self.structure_constants.tolist(),
            "simple_ideals": list(self.simple_ideals),
            "rotation_weights": self.rotation_weights,
            "summands": list(self.summands),
            "central_constant": bool(self.central_constant),
            "generator_dimension": int(self.basis.shape[0]),
        }


def lie_algebra(
    generators, rtol: float = 1e-8, tol: float = 1e-2, constants: bool = True
) -> LieAlgebraReport:
    """Describe the real Lie algebra spanned by ``generators`` (name, invariants, constants).

    With ``constants`` (default) the algebra is that of the quantities under the Poisson
    bracket, the constant function included when a bracket leaves one
    (:func:`poisson_constants`); otherwise that of the generators under the commutator. The
    name uses the action on phase space (the linear blocks ``G[:M, :M]``; 0 for the constant).
    If some commutator leaves the span by more than ``sqrt(tol) * scale`` the set is no Lie
    algebra and is named ``"not closed"`` (the invariants are those of the projected constants).

    Args:
        generators: ``(K, M+1, M+1)``, e.g. the significant learned directions; ``K = 0`` ok.
        rtol: rank tolerance of :func:`span_basis`; tol: that of the invariants and the name.
        constants: whether to keep the constants of the Poisson brackets.

    Returns:
        :class:`LieAlgebraReport` of the ``d``-dimensional span (``d + 1`` with the constant).
    """
    from pyro_razor.discovery.naming import name_algebra  # naming imports this module

    basis = span_basis(generators, rtol)
    M = basis.shape[-1] - 1
    c = structure_constants(basis)
    floor = 1.0 / math.sqrt(M + 1)
    scale = max(_scale(c), floor)
    full, central = poisson_constants(basis, c, tol, scale) if constants else (c, False)
    rep = torch.cat([basis[:, :M, :M], basis.new_zeros(int(central), M, M)])
    full_scale = max(_scale(full), floor)
    name, details = name_algebra(full, tol, full_scale, rep)
    residual = _brackets(basis, c).flatten(2).norm(dim=-1)
    if basis.shape[0] and float(residual.max()) > math.sqrt(tol) * scale:
        name = "not closed"
    inv, err = invariants(full, tol, full_scale), closure_error(basis, c)
    return LieAlgebraReport(basis, full, err, inv, name, central_constant=central, **details)
