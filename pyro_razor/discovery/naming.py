r"""Names of real Lie algebras from structure constants, as a physicist would give them.

Input: ``(d, d, d)`` constants ``c`` in an orthonormal basis (``[E_i, E_j] = sum_k c_ijk E_k``)
and, optionally, a representation ``rep`` ``(d, n, n)`` with ``[R_i, R_j] = sum_k c_ijk R_k``:
the linear blocks ``G[:M, :M]`` of the generators, i.e. the action on phase space (zero for
the constant function). Without ``rep`` the names are those of the abstract algebra.
``(ad_x)_{kj} = sum_i x_i c_ijk``; ``z`` the centre, ``[g, g]`` the derived algebra.

Rules, tried in this order (the first that applies names the algebra):

1. ``[g, g] = 0``: ``u(1)^d``.
2. Reductive, ``g = z + [g, g]`` with the Killing form nondegenerate on ``[g, g]``: ``u(1)^z``
   and the simple ideals (eigenspaces of a generic element of the commutant of ``ad``); a
   compact simple ideal is named by (dim, rank), e.g. ``su(n)`` by ``(n^2 - 1, n - 1)``.
   With ``rep``: an ``su(2)`` ideal whose weights on its support (the span of the images of
   its ``R``) are integers, i.e. eigenvalues of a generic ``R_x`` are ``i m w`` with ``m`` in
   ``Z``, ``w`` from the adjoint eigenvalues ``0, +-i w``, is ``so(3)`` (rotations of
   ``R^3`` on ``q`` and on ``p``). ``u(1) + su(n)`` is ``u(n)`` only when the support of
   ``su(n)`` has real dimension ``2n`` and the central ``R_z`` maps it to itself as a scaled
   complex structure (``R_z^2 = -lambda^2`` there): ``n`` oscillators. Otherwise
   ``u(1) ⊕ su(n)``, or, with an ``so(3)``, e.g. ``so(3) ⊕ u(1)`` (the 3-d isotropic
   oscillator's ``L`` and ``H``). Without ``rep``, or with ``z = 0`` or ``z > 1`` and no
   ``so(3)``, the names are the abstract ones: ``u(n)``, ``su(2) ≅ so(3)``, ``u(1)^2 ⊕ su(2)``.
3. ``u(1)^k ⊕ (so(2) ⋉ ℝ^m)``: ``[g, g] = ℝ^m`` abelian, ``k + m + 1 = d``, and the remaining
   element rotates ``ℝ^m`` (weights ``w_j / min w``); ``se(2)`` for ``m = 2``; ``k = 2``,
   weights ``(1, 2)``: the 2d n-body orbit algebra.
4. Direct sums. (a) The centre's part outside ``[g, g]`` is a direct summand: with
   ``z_1`` a complement of ``z ∩ [g, g]`` in ``z`` and ``R`` the orthogonal complement of
   ``z + [g, g]``, ``g = (([g, g] + R)) ⊕ z_1``, the first an ideal since it holds ``[g, g]``.
   (b) The remaining ideal is split by the idempotents of its centroid (the commutant of
   ``ad``): the generalised eigenspaces of a generic commutant element (clusters closer than
   ``sqrt(tol)`` of its spectral radius merged), kept only if they are ideals that commute
   pairwise. Summands are listed largest first (ties by name), ``u(1)^k`` last, names with a
   comma in parentheses: ``se(2) ⊕ su(2)``, ``h(3) ⊕ u(1)``, ``se(3) ⊕ u(1)``.
5. Indecomposable pieces, besides rules 1-3 (where ``su(2)`` is ``so(3)`` or ``su(2)`` by
   its weights): ``h(2n+1)``, the Heisenberg algebra (``[g, g]`` one-dimensional and central,
   ``dim g / z = 2n``, e.g. ``{q, p, 1}``); ``so(3) ⋉ ℝ^m``, the Killing kernel an abelian
   ideal ``ℝ^m`` with a compact ``su(2)`` quotient acting without invariants, named ``se(3)``
   for the vector representation and otherwise ``so(3) ⋉ ℝ^m, spins (j_1, ...)`` (``su(2)``
   if a spin is half-integer); ``n(4)``, the 4-dim filiform nilpotent algebra
   (``[e1, e2] = e3, [e1, e3] = e4``: lower central series ``4, 2, 1, 0``; e.g.
   ``{q, p, p^2/2, 1}``, the 1-d Galilei algebra with central mass).

Order: the older names of rules 2-3 keep ``u(1)^k`` first (``u(1)^2 ⊕ su(2)``, the orbit
algebra), as results rely on them; names that come from the action or from a split list it
last (``so(3) ⊕ u(1)``, ``se(3) ⊕ u(1)``). Anything else is ``"unrecognised"``.
Thresholds: module docstring of :mod:`~pyro_razor.discovery.algebra`; weights are integers
when within 1/4 of one. The ideals, the simple ideals of rule 2 and the splits of rule 4 are
computed in :mod:`~pyro_razor.discovery.ideals`; this module names them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch

from pyro_razor.discovery.algebra import (
    DT,
    _bracket_span,
    _centre,
    _generic_nullity,
    _series,
    _setup,
    _signature,
    _spaces,
    killing_form,
)
from pyro_razor.discovery.ideals import (
    ad,
    centre_split,
    ideal_split,
    restrict,
    restrict_rep,
    simple_ideals,
    unit,
)

__all__ = ["name_algebra"]

_EXCEPTIONAL = {(14, 2): "g2", (52, 4): "f4", (78, 6): "e6", (133, 7): "e7", (248, 8): "e8"}


@dataclass(frozen=True)
class _Tol:
    """``tol`` relative; ``thr = tol * scale`` for brackets, ``thr_b = tol * scale^2``."""

    tol: float
    thr: float
    thr_b: float


def _abelian_name(k: int) -> str:
    return "0" if k == 0 else ("u(1)" if k == 1 else f"u(1)^{k}")


# ---------------------------------------------------------------- semisimple (rule 2)


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


def _simple_name(c: torch.Tensor, Q: torch.Tensor, t: _Tol) -> str | None:
    """Name of the simple ideal ``span Q`` (compact by (dim, rank), or ``sl(2,ℝ)``)."""
    pos, neg, _ = _signature(Q.T @ killing_form(c) @ Q, t.thr_b)
    dim = Q.shape[1]
    if (dim, pos, neg) == (3, 2, 1):
        return "sl(2,ℝ)"
    return _compact_simple_name(dim, _generic_nullity(c, Q, t.thr)) if neg == dim else None


# -------------------------------------------------------- the action on phase space (rule 2)


def _support(R: torch.Tensor, tol: float) -> torch.Tensor:
    """Orthonormal ``(n, s)`` basis of ``sum_a image(R_a)`` for ``R`` ``(k, n, n)``."""
    U, S, _ = torch.linalg.svd(torch.cat(list(R), dim=1), full_matrices=False)
    return U[:, : int((S > tol * S[0]).sum())] if float(S[0]) > 0 else U[:, :0]


def _is_so3(c: torch.Tensor, Q: torch.Tensor, rep: torch.Tensor, t: _Tol) -> bool:
    """Whether the ``su(2)`` ideal ``span Q`` acts with integer weights on its support.

    ``ad_x`` on the ideal has eigenvalues ``0, +-i w``; a spin-``j`` representation gives
    ``R_x`` the eigenvalues ``i m w``, ``m = -j..j``: all ``m`` integers iff it factors
    through ``SO(3)``.
    """
    R = restrict_rep(rep, Q)
    S = _support(R, t.tol)
    if S.shape[1] == 0:
        return False
    x = unit(3, 1)
    w = float(torch.linalg.eigvals(ad(restrict(c, Q), x)).imag.abs().max())
    m = torch.linalg.eigvals(S.T @ torch.einsum("a,anm->nm", x, R) @ S).imag / w
    return bool(((m - m.round()).abs() < 0.25).all())


def _is_unitary(Q: torch.Tensor, z: torch.Tensor, rep: torch.Tensor, n: int, t: _Tol) -> bool:
    """Whether ``u(1) + su(n)`` acts as ``u(n)`` on ``C^n``: the support of ``su(n)`` (basis
    ``Q``) has real dimension ``2n`` and ``R_z`` (``z`` ``(d,)`` central) preserves it as a
    scaled complex structure, ``K = S^T R_z S`` with ``K^2 = -lambda^2 I``."""
    S = _support(restrict_rep(rep, Q), t.tol)
    if S.shape[1] != 2 * n:
        return False
    Rz = torch.einsum("a,anm->nm", z, rep)
    K = S.T @ Rz @ S
    size = float(K.norm())
    if size == 0.0 or float((Rz @ S - S @ K).norm()) > t.tol * size:
        return False
    eye = torch.eye(2 * n, dtype=DT)
    return float((K @ K + size**2 / (2 * n) * eye).norm()) <= t.tol * size**2


def _reductive_name(c, Z, D, rep, t: _Tol, details: dict) -> str | None:
    """Name of the reductive ``span Z + span D`` (``Z`` central, ``D`` semisimple), or None."""
    ideals = simple_ideals(c, D, t.tol, t.thr)
    if ideals is None:
        return None
    names = [_simple_name(c, Q, t) for Q in ideals]
    if None in names:
        return None
    order = sorted(range(len(names)), key=lambda i: (ideals[i].shape[1], names[i]))
    simple = details["simple_ideals"] = [names[i] for i in order]
    z = Z.shape[1]
    if rep is not None and z >= 1:
        so3 = [names[i] == "su(2)" and _is_so3(c, ideals[i], rep, t) for i in order]
        if any(so3):
            parts = ["so(3)" if s else n for s, n in zip(so3, simple, strict=True)]
            return " ⊕ ".join(sorted(parts, key=lambda n: n != "so(3)") + [_abelian_name(z)])
    if z == 1 and len(simple) == 1 and simple[0].startswith("su("):
        n = int(simple[0][3:].split(")")[0])
        if rep is None or _is_unitary(ideals[0], Z[:, 0], rep, n, t):
            return f"u({n})"
        return f"u(1) ⊕ su({n})"
    if z == 0 and simple in (["su(2)"], ["su(2)", "su(2)"]):
        return " ⊕ ".join(simple) + (" ≅ so(3)" if len(simple) == 1 else " ≅ so(4)")
    return " ⊕ ".join(([_abelian_name(z)] if z else []) + simple)


# ------------------------------------------------------------ rotations of ℝ^m (rule 3)


def _rotation_weights(c, Z, D, tol: float) -> list[float] | None:
    """Weights ``w_j / min w`` of the rotation on the abelian ideal ``span D``, or None."""
    r = _spaces(torch.cat([Z, D], dim=1).T, tol)[1][:, 0]  # unit, orthogonal to z + [g, g]
    R = D.T @ ad(c, r) @ D  # ad_r on [g, g]
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


def _whole(c, rep, t: _Tol, details: dict) -> str | None:
    """Rules 1-3 on the whole algebra, or None."""
    d = c.shape[0]
    Z, D = _centre(c, t.thr), _spaces(c.reshape(d * d, d), t.thr)[0]
    z, m = Z.shape[1], D.shape[1]
    if m == 0:
        return _abelian_name(d)
    independent = float(torch.linalg.svdvals(torch.cat([Z, D], dim=1))[-1]) > t.tol
    if independent and z + m == d:
        if _signature(D.T @ killing_form(c) @ D, t.thr_b)[2] == 0:  # [g, g] semisimple
            name = _reductive_name(c, Z, D, rep, t, details)
            if name is not None:
                return name
    if independent and z + m + 1 == d and _bracket_span(c, D, D, t.thr).shape[1] == 0:
        details["rotation_weights"] = _rotation_weights(c, Z, D, t.tol)
        if details["rotation_weights"] is not None:
            return _rotation_name(details["rotation_weights"], z)
    return None


# ------------------------------------------------------------- indecomposables (rule 5)


def _heisenberg(c, t: _Tol) -> str | None:
    """``h(2n+1)`` (``⊕ u(1)^k``) when ``[g, g]`` is one-dimensional and central."""
    d = c.shape[0]
    D = _spaces(c.reshape(d * d, d), t.thr)[0]
    if D.shape[1] != 1 or float(ad(c, D[:, 0]).norm()) > t.thr:
        return None
    z = _centre(c, t.thr).shape[1]
    if (d - z) <= 0 or (d - z) % 2:
        return None
    return f"h({d - z + 1})" + (f" ⊕ {_abelian_name(z - 1)}" if z > 1 else "")


def _spins(weights: torch.Tensor) -> list[float] | None:
    """Spins of the ``su(2)`` module with these weights (multiples of 1/2), or None."""
    twice = (2 * weights).round()
    if float((2 * weights - twice).abs().max()) > 0.25:
        return None
    counts, spins = Counter(int(k) for k in twice.tolist()), []
    while sum(counts.values()):
        top = max(k for k, n in counts.items() if n > 0)
        if top <= 0:
            return None  # an invariant (spin 0) or an unbalanced set of weights
        for k in range(-top, top + 1, 2):
            counts[k] -= 1
            if counts[k] < 0:
                return None
        spins.append(top / 2)
    return sorted(spins)


def _so3_semidirect(c, t: _Tol) -> str | None:
    """``se(3)`` or ``so(3) ⋉ ℝ^m, spins (...)``: the Killing kernel ``ℝ^m`` is an abelian
    ideal and the quotient, ``su(2)``, acts on it without invariants."""
    d = c.shape[0]
    ev, U = torch.linalg.eigh(killing_form(c))
    K, Q = U[:, ev.abs() <= t.thr_b], U[:, ev.abs() > t.thr_b]
    if Q.shape[1] != 3 or K.shape[1] == 0:
        return None
    adK = torch.einsum("ia,ijk->ajk", K, c).reshape(-1, d)  # [K, g], rows in g-coordinates
    if float((adK - adK @ K @ K.T).norm()) > t.thr or float(restrict(c, K).norm()) > t.thr:
        return None  # not an ideal, or not abelian
    cq = restrict(c, Q)
    if _signature(killing_form(cq), t.thr_b)[1] != 3:
        return None  # the quotient is not su(2)
    x = unit(3, 2)
    w = float(torch.linalg.eigvals(ad(cq, x)).imag.abs().max())
    spins = _spins(torch.linalg.eigvals(K.T @ ad(c, Q @ x) @ K).imag / w)
    if spins is None or spins == [1.0]:
        return None if spins is None else "se(3)"
    text = ", ".join(f"{int(2 * j)}/2" if j % 1 else str(int(j)) for j in spins)
    quotient = "so(3)" if all(j % 1 == 0 for j in spins) else "su(2)"
    return f"{quotient} ⋉ ℝ^{K.shape[1]}, spins ({text})"


def _piece(c, rep, t: _Tol) -> str | None:
    """Name of an (expected indecomposable) ideal by rules 1-3 and 5, or None."""
    if c.shape[0] == 3 and _signature(killing_form(c), t.thr_b)[1] == 3:  # compact su(2)
        eye = torch.eye(3, dtype=DT)
        return "so(3)" if rep is not None and _is_so3(c, eye, rep, t) else "su(2)"
    name = _whole(c, rep, t, {"simple_ideals": [], "rotation_weights": None})
    if name is None and c.shape[0] == 4 and _series(c, t.thr, lower=True) == [4, 2, 1, 0]:
        return "n(4)"
    return name or _heisenberg(c, t) or _so3_semidirect(c, t)


# ------------------------------------------------------------------ direct sums (rule 4)


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else " ⊕ ".join(f"({n})" if "," in n else n for n in names)


def _summands(c, rep, t: _Tol, depth: int = 0) -> list[tuple[int, str]] | None:
    """``(dim, name)`` of the summands of ``g`` (rule 4), non-abelian ones first; or None."""
    Z1, H = centre_split(c, t.tol, t.thr)
    central = [(Z1.shape[1], _abelian_name(Z1.shape[1]))] if Z1.shape[1] else []
    if central:
        c, rep = restrict(c, H), restrict_rep(rep, H)
    if c.shape[0] == 0:
        return central
    name = _piece(c, rep, t)
    if name is not None:
        return [(c.shape[0], name)] + central
    ideals = ideal_split(c, t.tol, t.thr) if depth < 3 else None
    if ideals is None:
        return None
    parts = []
    for V in ideals:
        sub = _summands(restrict(c, V), restrict_rep(rep, V), t, depth + 1)
        if sub is None:
            return None
        parts += sub
    abelian = sum(k for k, n in parts if n == _abelian_name(k)) + Z1.shape[1]
    parts = sorted(((k, n) for k, n in parts if n != _abelian_name(k)), key=lambda p: (-p[0], p[1]))
    return parts + ([(abelian, _abelian_name(abelian))] if abelian else [])


def name_algebra(c, tol: float = 1e-2, scale: float | None = None, rep=None):
    """Name of the real Lie algebra with constants ``c`` (module docstring), with details.

    Args:
        c: ``(d, d, d)`` structure constants in an orthonormal basis.
        tol, scale: relative tolerance and its reference (None: from ``c``).
        rep: None, or ``(d, n, n)`` matrices representing the basis (the phase-space action).

    Returns:
        ``(name, details)``; ``details`` has ``simple_ideals`` (names, reductive algebras),
        ``rotation_weights`` (rule 3, else None) and ``summands`` (the direct summands' names).
    """
    c, thr, thr_b = _setup(c, tol, scale, "identify")
    if rep is not None:
        rep = torch.as_tensor(rep).to(DT)
        if rep.dim() != 3 or rep.shape[0] != c.shape[0] or rep.shape[1] != rep.shape[2]:
            raise ValueError(f"identify: rep must have shape ({c.shape[0]}, n, n), got "
                             f"{tuple(rep.shape)}; pass one matrix per basis element")
    t = _Tol(tol, thr, thr_b)
    details: dict = {"simple_ideals": [], "rotation_weights": None, "summands": []}
    name = _whole(c, rep, t, details)
    if name is not None:
        details["summands"] = [name]
        return name, details
    parts = _summands(c, rep, t)
    if parts is None:
        return "unrecognised", details
    details["summands"] = [n for _, n in parts]
    return _join(details["summands"]), details
