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
centraliser of a generic, random, element). Names:

* reductive, ``g = z + [g, g]`` with ``B`` nondegenerate on ``[g, g]``: ``u(1)^dim z`` and the
  simple ideals, the eigenspaces of a generic element of the commutant of ``ad`` on ``[g, g]``;
  a compact simple ideal is named by (dim, rank), e.g. ``su(n)`` by ``(n^2 - 1, n - 1)``.
* ``u(1)^k + (so(2) x| R^m)``: ``[g, g] = R^m`` abelian, ``k + m + 1 = d`` and the remaining
  element rotates ``R^m`` (eigenvalues ``+-i w_j``, weights ``w_j / min w``). ``m = 2`` is
  ``se(2)``; ``k = 2`` with weights ``(1, 2)`` is the 2d n-body orbit algebra (RABS - RCOM and
  ``T_x^2 + T_y^2`` central; weight 1 on ``(T_x, T_y)``, 2 on ``(T_x T_y, T_x^2 - T_y^2)``).

Tolerance: a singular value counts as zero below ``tol * scale``, a Killing eigenvalue below
``tol * scale^2``; ``scale`` is the largest ``|ad_x|_F`` over unit ``x`` (at least 1e-6), floored
by :func:`lie_algebra` at ``1 / sqrt(M+1)`` (the bracket of two unrelated unit-norm generators) so
that a noisy abelian algebra stays abelian. ``tol = 1e-2`` suits entries accurate to ~1e-4.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

__all__ = [
    "LieAlgebraReport",
    "closure_error",
    "identify",
    "invariants",
    "killing_form",
    "lie_algebra",
    "span_basis",
    "structure_constants",
]

DT = torch.float64
_TRIALS = 5  # random draws of "generic" elements (rank, commutant)
_FLOOR = 1e-6  # least default scale: constants below 1e-8 in an orthonormal basis are rounding
_EXCEPTIONAL = {(14, 2): "g2", (52, 4): "f4", (78, 6): "e6", (133, 7): "e7", (248, 8): "e8"}


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


def _compact_simple_name(dim: int, r: int) -> str | None:
    """Name of the compact simple real Lie algebra of dimension ``dim`` and rank ``r``."""
    if dim == r * (r + 2):
        return {1: "su(2)", 3: "su(4) ≅ so(6)"}.get(r, f"su({r + 1})")
    names = []
    if r >= 2 and dim == r * (2 * r + 1):
        names += ["so(5) ≅ sp(2)"] if r == 2 else [f"so({2 * r + 1})", f"sp({r})"]
    if r >= 4 and dim == r * (2 * r - 1):
        names.append(f"so({2 * r})")
    if (dim, r) in _EXCEPTIONAL:
        names.append(_EXCEPTIONAL[(dim, r)])
    return " or ".join(names) if names else None


def _simple_ideals(c: torch.Tensor, D: torch.Tensor, tol: float, thr: float) -> list | None:
    """Split the semisimple ideal ``span D`` into simple ideals, ``(d, m_i)`` bases, or None.

    The commutant of ``ad`` on a sum of absolutely simple ideals is spanned by the projectors
    onto them, so a generic commutant element has one real eigenvalue per ideal. Commuting
    with ``ad`` of three generic elements suffices: they generate the algebra.
    """
    m = D.shape[1]
    ad = torch.einsum("ia,jb,ijk,kc->acb", D, D, c, D)  # ad[a] acting on D-coordinates
    eye, gen = torch.eye(m, dtype=DT), torch.Generator().manual_seed(0)
    x = torch.randn(3, m, dtype=DT, generator=gen)
    ads = torch.einsum("na,abc->nbc", x / x.norm(dim=1, keepdim=True), ad)
    N = _spaces(
        torch.cat([torch.kron(A, eye) - torch.kron(eye, A.T.contiguous()) for A in ads]), thr
    )[1]
    for _ in range(_TRIALS):
        T = (N @ torch.randn(N.shape[1], dtype=DT, generator=gen)).reshape(m, m)
        ev = torch.linalg.eigvals(T)
        top = float(ev.abs().max())
        lam = torch.sort(ev.real).values
        cuts = [0] + [i + 1 for i in range(m - 1) if lam[i + 1] - lam[i] > tol * top] + [m]
        if float(ev.imag.abs().max()) > tol * top or len(cuts) - 1 != N.shape[1]:
            continue  # complex eigenvalues or clusters that merged: draw again
        ideals = []
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            Vh = torch.linalg.svd(T - lam[a:b].mean() * eye).Vh  # eigenspace of lam[a:b]
            ideals.append(D @ Vh[m - (b - a) :].T)
        return ideals
    return None


def _abelian_name(k: int) -> str:
    return "0" if k == 0 else ("u(1)" if k == 1 else f"u(1)^{k}")


def _reductive_name(c, z: int, D, tol: float, thr: float, thr_b: float, details: dict):
    """Name of the reductive ``u(1)^z + span D`` (``D`` semisimple), or None."""
    ideals = _simple_ideals(c, D, tol, thr)
    if ideals is None:
        return None
    B, names = killing_form(c), []
    for Q in ideals:
        pos, neg, _ = _signature(Q.T @ B @ Q, thr_b)
        dim = Q.shape[1]
        name = _compact_simple_name(dim, _generic_nullity(c, Q, thr)) if neg == dim else None
        name = "sl(2,ℝ)" if (dim, pos, neg) == (3, 2, 1) else name
        if name is None:
            return None
        names.append((dim, name))
    simple = details["simple_ideals"] = [n for _, n in sorted(names)]
    if z == 1 and len(simple) == 1 and simple[0].startswith("su("):
        return "u(" + simple[0][3:].split(")")[0] + ")"
    if z == 0 and simple in (["su(2)"], ["su(2)", "su(2)"]):
        return " ⊕ ".join(simple) + (" ≅ so(3)" if len(simple) == 1 else " ≅ so(4)")
    return " ⊕ ".join(([_abelian_name(z)] if z else []) + simple)


def _rotation_weights(c, Z, D, tol: float) -> list[float] | None:
    """Weights ``w_j / min w`` of the rotation on the abelian ideal ``span D``, or None."""
    r = _spaces(torch.cat([Z, D], dim=1).T, tol)[1][:, 0]  # unit, orthogonal to z + [g, g]
    R = D.T @ torch.einsum("i,ijk->kj", r, c) @ D  # ad_r on [g, g]
    ev = torch.linalg.eigvals(R)
    top = float(ev.abs().max())
    omega = torch.sort(ev.imag[ev.imag > 0]).values
    if 2 * len(omega) != D.shape[1] or float(ev.real.abs().max()) > tol * top:
        return None  # not a rotation (a real eigenvalue, or one off the imaginary axis)
    P = eye = torch.eye(D.shape[1], dtype=DT)
    for w in torch.unique(torch.round(omega / (tol * top))) * (tol * top):
        P = P @ (R @ R + w**2 * eye) / top**2
    if float(P.norm()) > 10 * tol:  # R is not diagonalisable: not a rotation
        return None
    weights = (omega / omega[0]).tolist()
    return [float(round(w)) if abs(w - round(w)) <= tol * w else w for w in weights]


def _rotation_name(weights: list[float], z: int) -> str:
    m, prefix = 2 * len(weights), (_abelian_name(z) + " ⊕ " if z else "")
    if m == 2:
        return prefix + "se(2)"
    text = ", ".join(str(int(w)) if w == int(w) else f"{w:.3g}" for w in weights)
    name = prefix + (f"(so(2) ⋉ ℝ^{m})" if z else f"so(2) ⋉ ℝ^{m}") + f", weights ({text})"
    return name + (": the 2d n-body orbit algebra" if z == 2 and weights == [1, 2] else "")


def _identify(c, tol: float, scale) -> tuple[str, dict]:
    c, thr, thr_b = _setup(c, tol, scale, "identify")
    d = c.shape[0]
    details: dict = {"simple_ideals": [], "rotation_weights": None}
    Z, D = _centre(c, thr), _spaces(c.reshape(d * d, d), thr)[0]
    z, m = Z.shape[1], D.shape[1]
    if m == 0:
        return _abelian_name(d), details
    independent = float(torch.linalg.svdvals(torch.cat([Z, D], dim=1))[-1]) > tol
    if independent and z + m == d:
        if _signature(D.T @ killing_form(c) @ D, thr_b)[2] == 0:  # [g, g] semisimple
            name = _reductive_name(c, z, D, tol, thr, thr_b, details)
            if name is not None:
                return name, details
    if independent and z + m + 1 == d and _bracket_span(c, D, D, thr).shape[1] == 0:
        details["rotation_weights"] = _rotation_weights(c, Z, D, tol)
        if details["rotation_weights"] is not None:
            return _rotation_name(details["rotation_weights"], z), details
    return "unrecognised", details


def identify(c, tol: float = 1e-2, scale: float | None = None) -> str:
    """Name of the real Lie algebra with ``(d, d, d)`` structure constants ``c``.

    Recognises ``0``, ``u(1)^k``, compact semisimple sums (``su(n)``, ``so(n)``, ...,
    ``su(2) ≅ so(3)``), ``sl(2,ℝ)``, ``u(n)``, their sums with ``u(1)^k``, ``se(2)`` and
    ``u(1)^k ⊕ (so(2) ⋉ ℝ^m), weights (...)``; anything else is ``"unrecognised"``. Invariant
    under orthogonal changes of basis (so under any mixing of generators, via span_basis).
    """
    return _identify(c, tol, scale)[0]


@dataclass
class LieAlgebraReport:
    """The Lie algebra spanned by some generators (see :func:`lie_algebra`).

    Attributes: ``basis`` ``(d, M+1, M+1)`` orthonormal; ``structure_constants`` ``(d, d, d)``;
    ``closure_error``; ``invariants`` (the dict of :func:`invariants`); ``name`` (of
    :func:`identify`, or ``"not closed"``); ``simple_ideals`` (names, for a reductive algebra);
    ``rotation_weights`` (of an ``so(2) ⋉ ℝ^m`` algebra, else None).
    """

    basis: torch.Tensor
    structure_constants: torch.Tensor
    closure_error: float
    invariants: dict
    name: str
    simple_ideals: list[str] = field(default_factory=list)
    rotation_weights: list[float] | None = None

    def to_json(self) -> dict:
        """Plain-Python dict (int, float, str, bool, nested lists), without the basis."""
        return {
            **self.invariants,
            "name": self.name,
            "closure_error": float(self.closure_error),
            "structure_constants": self.structure_constants.tolist(),
            "simple_ideals": list(self.simple_ideals),
            "rotation_weights": self.rotation_weights,
        }


def lie_algebra(generators, rtol: float = 1e-8, tol: float = 1e-2) -> LieAlgebraReport:
    """Describe the real Lie algebra spanned by ``generators`` (name, invariants, constants).

    If some bracket leaves the span by more than ``sqrt(tol) * scale`` the set is no Lie algebra
    and is named ``"not closed"`` (the invariants are those of the projected constants).

    Args:
        generators: ``(K, M+1, M+1)``, e.g. the significant learned directions; ``K = 0`` ok.
        rtol: rank tolerance of :func:`span_basis`; tol: that of the invariants.

    Returns:
        :class:`LieAlgebraReport` of the ``d``-dimensional span.
    """
    basis = span_basis(generators, rtol)
    c = structure_constants(basis)
    scale = max(_scale(c), 1.0 / math.sqrt(basis.shape[-1]))
    name, details = _identify(c, tol, scale)
    residual = _brackets(basis, c).flatten(2).norm(dim=-1)
    if basis.shape[0] and float(residual.max()) > math.sqrt(tol) * scale:
        name = "not closed"
    inv, err = invariants(c, tol, scale), closure_error(basis, c)
    return LieAlgebraReport(basis, c, err, inv, name, **details)
