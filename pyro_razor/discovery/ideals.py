r"""Ideals and direct-sum decompositions of a real Lie algebra given by its structure constants.

Input: ``(d, d, d)`` constants ``c`` in an orthonormal basis (``[E_i, E_j] = sum_k c_ijk E_k``),
``(ad_x)_{kj} = sum_i x_i c_ijk``; subspaces are ``(d, m)`` matrices ``V`` with orthonormal
columns, in ``E``-coordinates. These are the building blocks with which
:mod:`~pyro_razor.discovery.naming` names an algebra; nothing here names anything.

* :func:`restrict`: the constants ``(m, m, m)`` of a subalgebra ``span V``,
  ``c'_abc = sum V_ia V_jb c_ijk V_kc`` (exact when ``span V`` is closed under the bracket);
  :func:`restrict_rep` the matching ``(m, n, n)`` slice of a representation ``(d, n, n)``.
* :func:`ad`: ``ad_x``, ``(d, d)``; :func:`unit`: a seeded random unit vector, the "generic
  element" of the rank-style arguments (fixed seeds, so results are reproducible).
* :func:`simple_ideals`: a semisimple ideal split into simple ones. The commutant of ``ad``
  (the centroid) on a sum of absolutely simple ideals is spanned by the projectors onto them,
  so a generic commutant element has one real eigenvalue per ideal; its eigenspaces are the
  ideals. Commuting with ``ad`` of three generic elements suffices (they generate).
* :func:`centre_split`: ``g = H ⊕ z_1``, with ``z_1`` a complement of ``z ∩ [g, g]`` in the
  centre ``z`` and ``H = [g, g] + (z + [g, g])^perp``, an ideal since it holds ``[g, g]``.
* :func:`ideal_split`: the remaining ideal split by the idempotents of its centroid: the real
  generalised eigenspaces of a generic commutant element (eigenvalues closer than
  ``sqrt(tol)`` of its spectral radius, or to a conjugate, merged into one cluster), kept only
  if they are independent ideals that commute pairwise; the finest such split over
  ``_TRIALS`` draws. Only for ``d <= 24`` (the commutant's linear system is ``d^3 x d^2``).

Tolerances (module docstring of :mod:`~pyro_razor.discovery.algebra`): ``thr = tol * scale``
is the absolute threshold for brackets and singular values of bracket matrices (commutant,
centre, ideal and commuting tests); ``tol`` alone, relative, for eigenvalue gaps (relative to
the spectral radius) and for the independence of unit-norm bases (least singular value).
"""

from __future__ import annotations

import math

import torch

from pyro_razor.discovery.algebra import _TRIALS, DT, _centre, _spaces

__all__ = [
    "ad",
    "centre_split",
    "ideal_split",
    "restrict",
    "restrict_rep",
    "simple_ideals",
    "unit",
]

_MAX_SPLIT = 24  # largest dimension split by the centroid (its linear system is d^3 x d^2)


def restrict(c: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """Constants of the subalgebra ``span V`` (``V`` ``(d, m)`` orthonormal), ``(m, m, m)``."""
    return torch.einsum("ia,jb,ijk,kc->abc", V, V, c, V)


def restrict_rep(rep: torch.Tensor | None, V: torch.Tensor) -> torch.Tensor | None:
    """``rep`` ``(d, n, n)`` on the basis ``V`` ``(d, m)``: ``(m, n, n)``; None stays None."""
    return None if rep is None else torch.einsum("ia,inm->anm", V, rep)


def ad(c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``ad_x``, ``(d, d)``."""
    return torch.einsum("i,ijk->kj", x, c)


def unit(m: int, seed: int) -> torch.Tensor:
    """A random unit vector in ``R^m``, ``(m,)``, from a generator seeded with ``seed``."""
    x = torch.randn(m, dtype=DT, generator=torch.Generator().manual_seed(seed))
    return x / x.norm()


def _commutant(ads: list[torch.Tensor], thr: float) -> torch.Tensor:
    """``(m^2, k)`` orthonormal basis of ``{T : T A = A T for A in ads}`` (``(m, m)`` each)."""
    eye, ads = torch.eye(ads[0].shape[0], dtype=DT), [A.contiguous() for A in ads]
    return _spaces(torch.cat([torch.kron(A, eye) - torch.kron(eye, A.T.contiguous())
                              for A in ads]), thr)[1]


def simple_ideals(c: torch.Tensor, D: torch.Tensor, tol: float, thr: float) -> list | None:
    """Split the semisimple ideal ``span D`` into simple ideals, ``(d, m_i)`` bases, or None.

    The commutant of ``ad`` on a sum of absolutely simple ideals is spanned by the projectors
    onto them, so a generic commutant element has one real eigenvalue per ideal. Commuting
    with ``ad`` of three generic elements suffices: they generate the algebra.
    """
    m = D.shape[1]
    ads = torch.einsum("ia,jb,ijk,kc->acb", D, D, c, D)  # ad of D[:, a] on D-coordinates
    eye, gen = torch.eye(m, dtype=DT), torch.Generator().manual_seed(0)
    x = torch.randn(3, m, dtype=DT, generator=gen)
    N = _commutant(list(torch.einsum("na,abc->nbc", x / x.norm(dim=1, keepdim=True), ads)), thr)
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


def centre_split(c, tol: float, thr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Z1, H)``: orthonormal bases of a central summand ``z_1`` (complement of
    ``z ∩ [g, g]`` in ``z``) and of the ideal ``[g, g] + (z + [g, g])^perp``."""
    d = c.shape[0]
    Z, D = _centre(c, thr), _spaces(c.reshape(d * d, d), thr)[0]
    null = _spaces(torch.cat([Z, D], dim=1), tol)[1]  # (z + m, k0): Z a = -D b
    Z0 = _spaces((Z @ null[: Z.shape[1]]).T, tol)[0]  # row space = span(Z a), (d, k0)
    U = torch.linalg.svd(Z - Z0 @ (Z0.T @ Z), full_matrices=False)[0]
    Z1 = U[:, : Z.shape[1] - Z0.shape[1]]
    R = _spaces(torch.cat([D, Z], dim=1).T, tol)[1]  # orthogonal to [g, g] and z
    return Z1, torch.cat([D, R], dim=1)


def _eigenspaces(T: torch.Tensor, tol: float) -> list[torch.Tensor] | None:
    """Real generalised eigenspaces of ``T`` ``(d, d)``, ``(d, m_i)`` orthonormal each; a
    cluster of eigenvalues within ``sqrt(tol) * |T|`` and its conjugate count as one."""
    ev = torch.linalg.eigvals(T)
    top, d = float(ev.abs().max()), T.shape[0]
    if top == 0.0:
        return None
    near = (ev[:, None] - ev[None]).abs() <= math.sqrt(tol) * top
    near |= (ev[:, None] - ev[None].conj()).abs() <= math.sqrt(tol) * top
    for _ in range(d):  # transitive closure: clusters by single linkage
        near = near | ((near.to(DT) @ near.to(DT)) > 0)
    label = [int(row.nonzero()[0]) for row in near]  # smallest index in the cluster
    groups = sorted(set(label))
    if len(groups) < 2:
        return None
    eye, spaces = torch.eye(d, dtype=ev.dtype), []
    for g in groups:
        P = eye
        for j in (j for j in range(d) if label[j] != g):
            P = P @ (T.to(ev.dtype) - ev[j] * eye) / top
        U = torch.linalg.svd(P.real, full_matrices=False)[0]
        spaces.append(U[:, : label.count(g)])
    return spaces


def _is_direct_sum(c, parts: list[torch.Tensor], tol: float, thr: float) -> bool:
    """Whether the spans of ``parts`` are ideals, independent, and commute pairwise."""
    if float(torch.linalg.svdvals(torch.cat(parts, dim=1))[-1]) <= tol:
        return False
    for i, V in enumerate(parts):
        br = torch.einsum("jb,ijk->ibk", V, c).reshape(-1, c.shape[0])  # [g, V]
        if float(torch.linalg.matrix_norm(br - br @ V @ V.T, ord=2)) > thr:
            return False
        for W in parts[i + 1 :]:
            if float(torch.einsum("ia,jb,ijk->abk", V, W, c).norm()) > thr:
                return False
    return True


def ideal_split(c, tol: float, thr: float) -> list[torch.Tensor] | None:
    """Finest verified split of ``g`` into ideals by the centroid (module docstring), or None."""
    d, gen, best = c.shape[0], torch.Generator().manual_seed(3), None
    N = _commutant([c[i].T for i in range(d)], thr) if d <= _MAX_SPLIT else c.new_zeros(0, 0)
    for _ in range(_TRIALS if N.shape[1] > 1 else 0):
        T = (N @ torch.randn(N.shape[1], dtype=DT, generator=gen)).reshape(d, d)
        parts = _eigenspaces(T, tol)
        finer = parts and (best is None or len(parts) > len(best))
        if finer and _is_direct_sum(c, parts, tol, thr):
            best = parts
    return best
