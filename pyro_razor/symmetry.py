r"""Quadratic conserved quantities, their symmetry generators and flows (paper section 3).

Conventions (DESIGN.md section 1): phase space ``x = (q, p) in R^M``, positions first,
``J = [[0, I], [-I, 0]]`` so that ``x' = J grad H(x)``.

A quadratic observable ``C(x) = 1/2 x^T A x + b^T x`` (``A`` symmetric) generates the affine
vector field ``x' = J grad C(x) = J A x + J b``, which is linear on homogeneous coordinates
``(x, 1)`` with generator (paper eq. 4)

.. math:: G = \begin{bmatrix} J A & J b \\ 0 & 0 \end{bmatrix} \in R^{(M+1)\times(M+1)}.

A set of generators ``G_1..G_K`` and symmetry times ``tau in R^K`` give the group element
``expm(scale * sum_k tau_k G_k)``; its top ``M`` rows act on ``(x, 1)`` (eq. 4 and section 3.2).
The transform matrices depend on ``tau`` and the generators only, never on ``x``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

__all__ = [
    "MEASURE_KINDS",
    "QuadraticQuantity",
    "SymmetryMeasure",
    "apply_flow",
    "check_phase_dim",
    "flow_matrices",
    "generator_from_quantity",
    "generator_matrix",
    "generators_of",
    "lie_bracket",
    "phase_labels",
    "poisson_bracket",
    "poisson_bracket_quadratic",
    "quadratic_value",
    "quantity_from_generator",
    "symmetric_from_unconstrained",
    "symplectic_matrix",
]


def check_phase_dim(M: int) -> int:
    """Return ``M`` if it is a valid (positive, even) phase dimension, else raise ``ValueError``."""
    if not isinstance(M, int) or isinstance(M, bool):
        raise TypeError(f"phase dimension must be an int, got {type(M).__name__}")
    if M <= 0 or M % 2 != 0:
        raise ValueError(
            f"phase dimension must be a positive even number (positions then momenta), got {M}; "
            "a system with d positions has phase dimension M = 2d"
        )
    return M


def phase_labels(M: int) -> list[str]:
    """Default names of the phase coordinates, positions first: ``q1..qd, p1..pd``."""
    check_phase_dim(M)
    d = M // 2
    return [f"q{i + 1}" for i in range(d)] + [f"p{i + 1}" for i in range(d)]


def symplectic_matrix(
    M: int, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """The canonical symplectic form ``J = [[0, I], [-I, 0]]`` of shape ``(M, M)``."""
    check_phase_dim(M)
    d = M // 2
    J = torch.zeros(M, M, dtype=dtype, device=device)
    eye = torch.eye(d, dtype=dtype, device=device)
    J[:d, d:] = eye
    J[d:, :d] = -eye
    return J


def symmetric_from_unconstrained(W: torch.Tensor) -> torch.Tensor:
    """Map an unconstrained ``(..., M, M)`` parameter to a symmetric ``A = (W + W^T) / 2``."""
    return 0.5 * (W + W.transpose(-1, -2))


def quadratic_value(A: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Evaluate ``C(x) = 1/2 x^T A x + b^T x``.

    Args:
        A: ``(M, M)`` symmetric matrix.
        b: ``(M,)`` vector.
        x: ``(..., M)`` points.

    Returns:
        ``(...)`` values.
    """
    return 0.5 * torch.einsum("...i,ij,...j->...", x, A, x) + x @ b


def generator_matrix(A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Generator ``G = [[J A, J b], [0, 0]]`` of the flow of ``C = 1/2 x^T A x + b^T x`` (eq. 4).

    Args:
        A: ``(..., M, M)`` symmetric matrices.
        b: ``(..., M)`` vectors.

    Returns:
        ``(..., M+1, M+1)`` generators on homogeneous coordinates.
    """
    M = A.shape[-1]
    if A.shape[-2] != M or b.shape[-1] != M:
        raise ValueError(
            f"generator_matrix needs A of shape (..., M, M) and b of shape (..., M); "
            f"got A {tuple(A.shape)} and b {tuple(b.shape)}"
        )
    J = symplectic_matrix(M, dtype=A.dtype, device=A.device)
    batch = torch.broadcast_shapes(A.shape[:-2], b.shape[:-1])
    G = A.new_zeros(*batch, M + 1, M + 1)
    G[..., :M, :M] = J @ A
    G[..., :M, M] = b @ J.T
    return G


def quantity_from_generator(G: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Invert :func:`generator_matrix`: ``A = -J G[:M, :M]``, ``b = -J G[:M, M]`` (``J^{-1} = -J``).

    Args:
        G: ``(..., M+1, M+1)`` generators.

    Returns:
        ``(A, b)`` of shapes ``(..., M, M)`` and ``(..., M)``.
    """
    M = G.shape[-1] - 1
    J = symplectic_matrix(M, dtype=G.dtype, device=G.device)
    A = -J @ G[..., :M, :M]
    b = -(G[..., :M, M] @ J.T)
    return A, b


@dataclass(frozen=True)
class QuadraticQuantity:
    """A named quadratic observable ``C(x) = 1/2 x^T A x + b^T x`` on an ``M``-dim phase space.

    Attributes:
        name: human-readable label, e.g. ``"H_1"`` or ``"RABS_01"``.
        A: ``(M, M)`` symmetric matrix.
        b: ``(M,)`` vector.
    """

    name: str
    A: torch.Tensor
    b: torch.Tensor

    def __post_init__(self) -> None:
        M = self.A.shape[-1]
        if self.A.shape != (M, M) or self.b.shape != (M,):
            raise ValueError(
                f"QuadraticQuantity {self.name!r}: A must be (M, M) and b (M,), "
                f"got {tuple(self.A.shape)} and {tuple(self.b.shape)}"
            )
        if not torch.allclose(self.A, self.A.T):
            raise ValueError(f"QuadraticQuantity {self.name!r}: A must be symmetric")

    @property
    def phase_dim(self) -> int:
        return self.A.shape[-1]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluate at ``x`` of shape ``(..., M)``; returns ``(...)``."""
        return quadratic_value(self.A.to(x), self.b.to(x), x)

    def generator(self) -> torch.Tensor:
        """The ``(M+1, M+1)`` generator of this quantity's flow."""
        return generator_matrix(self.A, self.b)


def generators_of(
    quantities: Sequence[QuadraticQuantity],
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Stack the generators of ``quantities`` into a ``(K, M+1, M+1)`` tensor."""
    if len(quantities) == 0:
        raise ValueError("generators_of needs at least one quantity")
    return torch.stack([q.generator() for q in quantities]).to(dtype=dtype, device=device)


def generator_from_quantity(
    C: Callable[[torch.Tensor], torch.Tensor],
    M: int,
    dtype: torch.dtype = torch.float64,
    atol: float = 1e-8,
) -> torch.Tensor:
    """Generator of any quadratic observable given as a function.

    ``A`` is the Hessian of ``C`` and ``b`` its gradient at the origin (both by autograd). The
    function is checked to be quadratic: its gradient at two random points must be affine with
    that Hessian.

    Args:
        C: maps ``(..., M)`` points to ``(...)`` values.
        M: phase dimension.

    Returns:
        ``(M+1, M+1)`` generator.
    """
    check_phase_dim(M)
    zero = torch.zeros(M, dtype=dtype)
    A = torch.autograd.functional.hessian(lambda x: C(x).sum(), zero)
    A = symmetric_from_unconstrained(A)
    b = torch.autograd.functional.jacobian(lambda x: C(x).sum(), zero)
    x = torch.randn(3, M, dtype=dtype, generator=torch.Generator().manual_seed(0))
    grad = torch.autograd.functional.jacobian(lambda z: C(z).sum(), x)
    if not torch.allclose(grad, x @ A + b, atol=atol, rtol=1e-6):
        raise ValueError(
            "generator_from_quantity: the observable is not quadratic (its gradient is not "
            "affine); only quadratic conserved quantities have linear generators"
        )
    return generator_matrix(A, b)


def poisson_bracket(
    f: Callable[[torch.Tensor], torch.Tensor],
    g: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
) -> torch.Tensor:
    """Poisson bracket ``{f, g}(x) = grad f(x) . J grad g(x)`` (paper eq. 2) by autograd.

    Args:
        f, g: observables mapping ``(..., M)`` to ``(...)``.
        x: ``(..., M)`` points.

    Returns:
        ``(...)`` bracket values.
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        gf = torch.autograd.grad(f(x).sum(), x)[0]
        gg = torch.autograd.grad(g(x).sum(), x)[0]
    J = symplectic_matrix(x.shape[-1], dtype=x.dtype, device=x.device)
    return torch.einsum("...i,ij,...j->...", gf, J, gg)


def poisson_bracket_quadratic(
    A1: torch.Tensor, b1: torch.Tensor, A2: torch.Tensor, b2: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Poisson bracket of two quadratics, again quadratic: ``{C1, C2} = 1/2 x^T A x + b^T x + c``.

    With ``grad C_i = A_i x + b_i``: ``A = A1 J A2 - A2 J A1``, ``b = A1 J b2 - A2 J b1``,
    ``c = b1^T J b2``.

    Returns:
        ``(A, b, c)`` with shapes ``(M, M)``, ``(M,)``, ``()``.
    """
    J = symplectic_matrix(A1.shape[-1], dtype=A1.dtype, device=A1.device)
    A = A1 @ J @ A2 - A2 @ J @ A1
    b = A1 @ J @ b2 - A2 @ J @ b1
    c = b1 @ J @ b2
    return A, b, c


def lie_bracket(G1: torch.Tensor, G2: torch.Tensor) -> torch.Tensor:
    """Commutator ``[G1, G2] = G1 G2 - G2 G1`` of ``(..., M+1, M+1)`` generators."""
    return G1 @ G2 - G2 @ G1


def flow_matrices(generators: torch.Tensor, tau: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Group elements ``expm(scale * sum_k tau_k G_k)`` for a batch of symmetry times.

    Args:
        generators: ``(K, M+1, M+1)``.
        tau: ``(..., K)`` symmetry times (e.g. ``(S, K)`` for S Monte-Carlo samples).
        scale: multiplies ``tau`` (the reference code uses ``pi``).

    Returns:
        ``(..., M+1, M+1)`` transform matrices, one ``matrix_exp`` per sample, batched.
    """
    if generators.dim() != 3 or generators.shape[-1] != generators.shape[-2]:
        raise ValueError(f"generators must have shape (K, M+1, M+1), got {tuple(generators.shape)}")
    if tau.shape[-1] != generators.shape[0]:
        raise ValueError(
            f"tau has {tau.shape[-1]} symmetry times per sample but there are "
            f"{generators.shape[0]} generators; tau must have shape (..., K)"
        )
    lie = torch.einsum("...k,kij->...ij", scale * tau, generators)
    return torch.linalg.matrix_exp(lie)


def apply_flow(transforms: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Apply affine transforms on homogeneous coordinates: ``Phi(x) = [T (x, 1)]_{:M}``.

    Args:
        transforms: ``(*S, M+1, M+1)`` (e.g. ``(S, M+1, M+1)`` from :func:`flow_matrices`).
        x: ``(..., M)`` points.

    Returns:
        ``(*S, ..., M)``: every transform applied to every point.
    """
    M = x.shape[-1]
    if transforms.dim() < 2 or transforms.shape[-2:] != (M + 1, M + 1):
        raise ValueError(
            f"transforms must have shape (..., {M + 1}, {M + 1}) to act on points with M = {M}, "
            f"got {tuple(transforms.shape)}"
        )
    R = transforms[..., :M, :M]
    t = transforms[..., :M, M]
    out = torch.einsum("...mk,nk->...nm", R, x.reshape(-1, M)) + t[..., None, :]
    return out.reshape(*transforms.shape[:-2], *x.shape[:-1], M)


MEASURE_KINDS = ("ball", "cube", "normal")
"""Names of the measures :class:`SymmetryMeasure` offers."""


@dataclass(frozen=True)
class SymmetryMeasure:
    """The measure ``mu(tau)`` over symmetry times (paper section 3.2 and eq. 5).

    Attributes:
        kind: ``"ball"`` (uniform in the unit L2 ball of ``R^K``), ``"cube"`` (uniform on
            ``[-1, 1]^K``) or ``"normal"`` (standard normal).
        scale: multiplies the sampled ``tau`` (the reference code uses ``pi``).
    """

    kind: str = "ball"
    scale: float = math.pi

    def __post_init__(self) -> None:
        if self.kind not in MEASURE_KINDS:
            raise ValueError(
                f"unknown symmetry measure {self.kind!r}; choose one of {MEASURE_KINDS}"
            )
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise ValueError(
                f"symmetry measure scale must be positive and finite, got {self.scale}"
            )

    def sample(
        self,
        num_samples: int,
        K: int,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Draw ``(num_samples, K)`` symmetry times ``scale * tau``, ``tau ~ mu``."""
        if num_samples < 1 or K < 0:
            raise ValueError(f"need num_samples >= 1 and K >= 0, got {num_samples} and {K}")
        kw = dict(dtype=dtype, device=device, generator=generator)
        if K == 0:
            return torch.zeros(num_samples, 0, dtype=dtype, device=device)
        if self.kind == "cube":
            tau = 2.0 * torch.rand(num_samples, K, **kw) - 1.0
        elif self.kind == "normal":
            tau = torch.randn(num_samples, K, **kw)
        else:  # uniform in the unit ball: direction uniform on the sphere, radius ~ U^(1/K)
            direction = torch.randn(num_samples, K, **kw)
            radius = torch.rand(num_samples, 1, **kw) ** (1.0 / K)
            tau = _in_ball(direction, radius)
        return self.scale * tau

    def sample_stratified(
        self,
        num_samples: int,
        K: int,
        num_sets: int = 1,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        r"""``num_sets`` independent Latin-hypercube sets of ``S = num_samples`` times each,
        ``(num_sets, S, K)``, every time distributed as ``scale * tau, tau ~ mu``.

        Each set stratifies the ``d`` uniforms a time is made from (``d = K``; ``K + 1`` for
        the ball: ``K`` normals for the direction, one for the radius): in every coordinate
        each of the ``S`` intervals ``[i/S, (i+1)/S)`` holds exactly one point, at a uniform
        place inside it and in a random order per coordinate. Every single time is still
        exactly ``mu``-distributed, so an orbit average over a set is unbiased, like eq. 5's;
        its variance is lower — for ``K = 1`` the error of a smooth orbit average falls like
        ``S^{-3/2}`` instead of ``S^{-1/2}`` (measured in RESULTS.md: 16 stratified times beat
        256 independent ones on the SHO). The uniforms become normals through the inverse
        normal CDF.
        """
        if num_samples < 1 or K < 0 or num_sets < 1:
            raise ValueError(f"need num_samples >= 1, K >= 0 and num_sets >= 1, got "
                             f"{num_samples}, {K} and {num_sets}")
        if K == 0:
            return torch.zeros(num_sets, num_samples, 0, dtype=dtype, device=device)
        d = K + 1 if self.kind == "ball" else K
        kw = dict(dtype=dtype, device=device, generator=generator)
        order = torch.rand(num_sets, num_samples, d, **kw).argsort(dim=1)
        u = (order.to(dtype=dtype) + torch.rand(num_sets, num_samples, d, **kw)) / num_samples
        if self.kind == "cube":
            return self.scale * (2.0 * u - 1.0)
        tiny = torch.finfo(u.dtype).eps
        normal = math.sqrt(2.0) * torch.erfinv((2.0 * u[..., :K] - 1.0).clamp(-1 + tiny,
                                                                                1 - tiny))
        if self.kind == "normal":
            return self.scale * normal
        return self.scale * _in_ball(normal, u[..., K:] ** (1.0 / K))


def _in_ball(direction: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """Points ``radius * direction / |direction|`` (``(..., K)`` and ``(..., 1)``)."""
    return direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-30) * radius
