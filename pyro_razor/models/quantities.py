r"""The conserved quantities ``C_eta`` that symmetrise the Hamiltonian (paper sections 3–4).

- :class:`LearnedQuantities`: ``K`` quadratic quantities ``C_k(x) = 1/2 x^T A_k x + b_k^T x``
  with ``A_k = W_k + W_k^T`` (the reference code's parameterisation: with ``(W + W^T)/2`` the
  quadratic part would start half as large and learn at half the speed for the same
  learning rate); ``eta = {W, b}`` are ``pyro.param`` s of the model, optimised by the ELBO
  (empirical Bayes), never sampled.
- :class:`FixedQuantities`: given generators, e.g. a system's ground truth (the "oracle").

Both return their ``(K, M+1, M+1)`` generators ``G_k = [[J A_k, J b_k], [0, 0]]`` (eq. 4),
and both decide how the model symmetrises ``H`` the same way (:class:`QuadraticFlows`): the
symmetry times become exact affine flow matrices ``expm(sum_k tau_k G_k)`` once per model call,
used by :class:`~pyro_razor.models.hamiltonian.SymmetrisedHamiltonian`. (Polynomial quantities
with numerically integrated flows: :mod:`~pyro_razor.models.polynomial_quantities`.)
"""

from __future__ import annotations

import torch
from pyro.distributions import constraints
from pyro.nn import PyroModule, PyroParam

from pyro_razor.models.hamiltonian import SymmetrisedHamiltonian
from pyro_razor.symmetry import (
    check_phase_dim,
    flow_matrices,
    generator_matrix,
    quantity_from_generator,
)

__all__ = ["FixedQuantities", "LearnedQuantities", "QuadraticFlows"]


class QuadraticFlows:
    """How quadratic quantities symmetrise ``H``: exact matrix-exponential flows.

    Mixed into a module with ``generators() -> (K, M+1, M+1)``.
    """

    family = "quadratic"

    @property
    def dtype(self) -> torch.dtype:
        return self.generators().dtype

    @property
    def device(self) -> torch.device:
        return self.generators().device

    def symmetry_elements(self, tau: torch.Tensor) -> torch.Tensor:
        """``(P, S, M+1, M+1)`` transforms ``expm(sum_k tau_psk G_k)`` of times ``(P, S, K)``
        (:func:`~pyro_razor.symmetry.flow_matrices`)."""
        return flow_matrices(self.generators(), tau)

    def hamiltonian(self, weights, activation, elements: torch.Tensor | None):
        """``H_hat`` symmetrised by the affine transforms ``elements (P, S, M+1, M+1)``."""
        return SymmetrisedHamiltonian(weights, activation, elements)


class LearnedQuantities(QuadraticFlows, PyroModule):
    """``K`` learnable quadratic conserved quantities on an ``M``-dim phase space.

    Args:
        phase_dim: ``M``.
        num_quantities: ``K >= 1``.
        init_std: ``W, b ~ N(0, init_std^2)`` at initialisation; ``0`` starts every quantity at
            zero (identity flow), as the reference code does for Tables 1–2.
        generator: optional ``torch.Generator`` for the initial values.
        init: optional initial ``(A, b)`` of shapes ``(K, M, M)`` (symmetric) and ``(K, M)``,
            e.g. the direct estimate's candidates
            (:func:`~pyro_razor.discovery.candidates.direct_start`); replaces the random draw
            (``W = A / 2``).
    """

    def __init__(
        self,
        phase_dim: int,
        num_quantities: int,
        init_std: float = 0.0,
        generator: torch.Generator | None = None,
        init: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        check_phase_dim(phase_dim)
        if num_quantities < 1:
            raise ValueError(f"num_quantities must be >= 1, got {num_quantities}")
        if init_std < 0:
            raise ValueError(f"init_std must be >= 0, got {init_std}")
        M, K = phase_dim, num_quantities
        self.phase_dim, self.num_quantities = M, K
        if init is None:
            W = init_std * torch.randn(K, M, M, generator=generator)
            b = init_std * torch.randn(K, M, generator=generator)
        else:
            W, b = _checked_init(init, K, M)
        self.W = PyroParam(W, constraints.real)
        self.b = PyroParam(b, constraints.real)

    def quadratic_forms(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A, b)`` of shapes ``(K, M, M)`` (symmetric, ``A = W + W^T``) and ``(K, M)``."""
        return self.W + self.W.transpose(-1, -2), self.b

    def generators(self) -> torch.Tensor:
        """``(K, M+1, M+1)`` generators."""
        A, b = self.quadratic_forms()
        return generator_matrix(A, b)


def _checked_init(init, K: int, M: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W, b) = (A / 2, b)`` from an initial ``(A, b)``, after checking shapes and symmetry."""
    A, b = (torch.as_tensor(t, dtype=torch.get_default_dtype()) for t in init)
    if A.shape != (K, M, M) or b.shape != (K, M):
        raise ValueError(f"LearnedQuantities: init (A, b) must have shapes {(K, M, M)} and "
                         f"{(K, M)}, got {tuple(A.shape)} and {tuple(b.shape)}")
    if not (torch.isfinite(A).all() and torch.isfinite(b).all()):
        raise ValueError("LearnedQuantities: init (A, b) must be finite")
    if not torch.allclose(A, A.transpose(-1, -2), atol=1e-6 * (1 + float(A.abs().max()))):
        raise ValueError("LearnedQuantities: init A must be symmetric")
    return 0.5 * A, b


class FixedQuantities(QuadraticFlows, torch.nn.Module):
    """Fixed generators ``(K, M+1, M+1)`` (e.g. ``system.generators()``), not learned."""

    def __init__(self, generators: torch.Tensor) -> None:
        super().__init__()
        if generators.dim() != 3 or generators.shape[1] != generators.shape[2]:
            raise ValueError(
                f"generators must have shape (K, M+1, M+1), got {tuple(generators.shape)}"
            )
        check_phase_dim(generators.shape[-1] - 1)
        self.phase_dim = generators.shape[-1] - 1
        self.num_quantities = generators.shape[0]
        self.register_buffer("_generators", generators.detach().clone())

    def quadratic_forms(self) -> tuple[torch.Tensor, torch.Tensor]:
        return quantity_from_generator(self._generators)

    def generators(self) -> torch.Tensor:
        return self._generators
