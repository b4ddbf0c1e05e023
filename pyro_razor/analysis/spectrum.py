r"""The singular-value spectrum of learned generators and their parallelness to a known span
(paper section 5.1).

Stack the ``K`` flattened learned generators as the rows of
``\hat G = [vec G_1; ...; vec G_K] in R^{K x D}``, ``D = (M+1)^2``, and take the SVD
``\hat G = U diag(sigma) V^T``. Normalised singular values ``lambda_i = sigma_i / sigma_1``
count the directions of the learned span; the parallelness ``||P v_i||`` of each right singular
vector to the span of ground-truth generators says whether a direction is a true symmetry.

Shapes: ``K`` learned generators, ``L`` ground-truth generators, ``D = (M+1)^2`` entries,
``r = min(K, D)`` singular values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from pyro_razor.symmetry import check_phase_dim

__all__ = [
    "GeneratorSpectrum",
    "chance_parallelness",
    "check_generators",
    "check_tensor",
    "generator_spectrum",
    "learnable_dimension",
    "orthonormal_basis",
    "parallelness",
    "rank_tolerance",
]

F64 = torch.float64


def check_tensor(x: object, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a real floating-point tensor, got dtype {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf; check the training run that produced it")
    return x.detach()


def check_generators(G: object, name: str) -> torch.Tensor:
    """Validate a ``(K, M+1, M+1)`` generator stack (``M`` positive and even)."""
    G = check_tensor(G, name)
    if G.dim() != 3 or G.shape[-1] != G.shape[-2]:
        raise ValueError(
            f"{name} must be a 3-d tensor of shape (K, M+1, M+1) (one square generator per "
            f"quantity), got shape {tuple(G.shape)}; stack single generators with "
            "torch.stack or G[None]"
        )
    M = G.shape[-1] - 1
    try:
        check_phase_dim(M)
    except ValueError:
        raise ValueError(
            f"{name} has generators of size {G.shape[-1]} x {G.shape[-1]}, so M = {M}; generators "
            "act on homogeneous coordinates (x, 1) and must be (M+1) x (M+1) with M even"
        ) from None
    return G


def rank_tolerance(S: torch.Tensor, shape: tuple[int, int], dtype: torch.dtype) -> float:
    """Numerical-rank cut-off ``sigma_max * max(shape) * eps(dtype)`` (as numpy.matrix_rank)."""
    if S.numel() == 0:
        return 0.0
    return float(S.max()) * max(shape) * torch.finfo(dtype).eps


def orthonormal_basis(basis: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``(D, r)`` orthonormal columns spanning the rows of ``basis`` (``r`` its numerical rank)."""
    L, D = basis.shape
    if L == 0:
        return basis.new_zeros(D, 0)
    _, S, Vh = torch.linalg.svd(basis, full_matrices=False)
    r = int((S > rank_tolerance(S, (L, D), dtype)).sum())
    return Vh[:r].transpose(0, 1)


def parallelness(vectors: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    r"""Relative length of each vector's projection onto the span of ``basis``.

    .. math:: \mathrm{par}(v_i) = \frac{\|P v_i\|}{\|v_i\|}, \qquad
              P = Q Q^T,\; Q \text{ orthonormal columns spanning the rows of } B,

    with ``Q`` from an SVD of ``B`` keeping only singular values above
    ``sigma_max * max(L, D) * eps`` (so a rank-deficient or redundant basis is fine). For unit
    ``v_i`` this is the paper's parallelness ``||v_i^par||`` (section 5.1). A zero vector, an
    empty basis (``L = 0``) or an all-zero basis gives 0.

    Args:
        vectors: ``(n, D)`` vectors, e.g. right singular vectors of the learned generators.
        basis: ``(L, D)`` spanning set, e.g. the flattened ground-truth generators.

    Returns:
        ``(n,)`` values in ``[0, 1]``, in the promoted dtype of the inputs.
    """
    vectors = check_tensor(vectors, "parallelness: vectors")
    basis = check_tensor(basis, "parallelness: basis")
    if vectors.dim() != 2 or basis.dim() != 2:
        raise ValueError(
            "parallelness needs vectors of shape (n, D) and basis of shape (L, D), got "
            f"{tuple(vectors.shape)} and {tuple(basis.shape)}; flatten generators with "
            ".reshape(K, -1)"
        )
    if vectors.shape[1] != basis.shape[1]:
        raise ValueError(
            f"parallelness: vectors have dimension D = {vectors.shape[1]} but the basis has "
            f"D = {basis.shape[1]}; both must be flattened from generators of the same size"
        )
    dtype = torch.promote_types(vectors.dtype, basis.dtype)
    vectors = vectors.to(dtype)
    basis = basis.to(device=vectors.device, dtype=dtype)
    Q = orthonormal_basis(basis, dtype)
    lengths = vectors.norm(dim=1)
    projected = (vectors @ Q).norm(dim=1)
    ratio = projected / lengths.clamp_min(torch.finfo(dtype).tiny)
    return torch.where(lengths > 0, ratio, torch.zeros_like(ratio)).clamp(0.0, 1.0)



@dataclass(frozen=True)
class GeneratorSpectrum:
    """The SVD of flattened learned generators (float64).

    Attributes:
        U: ``(K, r)`` left singular vectors (how each learned generator mixes the directions).
        sigma: ``(r,)`` singular values, descending.
        lam: ``(r,)`` normalised ``sigma_i / sigma_1`` (zeros if every generator is ~0).
        V: ``(r, D)`` right singular vectors as rows.
        generator_norms: ``(K,)`` Frobenius norms of the learned generators.
    """

    U: torch.Tensor
    sigma: torch.Tensor
    lam: torch.Tensor
    V: torch.Tensor
    generator_norms: torch.Tensor


def generator_spectrum(flat: torch.Tensor, input_dtype: torch.dtype) -> GeneratorSpectrum:
    """SVD of ``(K, D)`` float64 flattened generators (``K = 0`` allowed).

    ``input_dtype`` is the dtype the generators were learned in: a largest singular value
    below its smallest normal number means a zero learned set (no direction).
    """
    K, D = flat.shape
    if K == 0:
        U, S, V = flat.new_zeros(0, 0), flat.new_zeros(0), flat.new_zeros(0, D)
    else:
        U, S, V = torch.linalg.svd(flat, full_matrices=False)  # V: (r, D) rows v_i
    sigma_max = float(S[0]) if S.numel() else 0.0
    # Below numerical noise the learned set is zero: no direction, no division by ~0.
    lam = torch.zeros_like(S) if sigma_max <= torch.finfo(input_dtype).tiny else S / sigma_max
    return GeneratorSpectrum(U=U, sigma=S, lam=lam, V=V, generator_norms=flat.norm(dim=1))


def learnable_dimension(M: int) -> int:
    """Dimension of the space of quadratic-quantity generators on an ``M``-dim phase space:
    ``M (M + 1) / 2`` (symmetric ``A``) ``+ M`` (``b``), e.g. 90 for ``M = 12``."""
    return M * (M + 1) // 2 + M


def chance_parallelness(true_dim: int, M: int) -> float:
    """Parallelness of a random direction among the learnable ones to a ``true_dim``-dim span:
    ``sqrt(E |P v|^2) = sqrt(L / d)`` with ``d`` = :func:`learnable_dimension` (e.g. 0.28 for
    the 7 true directions of the 2d 3-body system among 90)."""
    return math.sqrt(min(true_dim, learnable_dimension(M)) / learnable_dimension(M))
