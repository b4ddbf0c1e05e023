r"""The Hamiltonian symmetrised over non-linear flows (issue 24, point 2).

For ``P`` weight samples ``theta_p`` and, for each, ``S`` symmetry times ``tau_ps ~ mu``, the
unbiased ``S``-sample estimate of paper eq. 5 over the flows ``Phi^tau`` of polynomial
quantities (:class:`~pyro_razor.models.polynomial_quantities.PolynomialQuantities`) is

.. math:: \hat H_p(x) = \frac{1}{S} \sum_{s=1}^{S} F_{\theta_p}(\Phi^{\tau_{ps}}(x)),
          \qquad \nabla \hat H_p(x) = \frac{1}{S} \sum_s D\Phi^{\tau_{ps}}(x)^T\,
          \nabla F_{\theta_p}(\Phi^{\tau_{ps}}(x)).

Unlike the affine quadratic flows, ``Phi^tau`` depends on the point, so it is recomputed at
every vector-field evaluation. ``grad F`` comes from the network's fast path
(:func:`~pyro_razor.models.fast_gradient.mlp_input_gradient`) and ``DPhi`` is propagated
forward through the flow beside it (tangent-linear,
:meth:`~pyro_razor.models.polynomial_quantities.PolynomialQuantities.flow_and_jacobian`), so
the gradient is plain tensor arithmetic: training backpropagates through it once (no double
backward through the flow), and under ``torch.no_grad`` (evaluation, rollouts) no graph is
built at all; points are then taken in chunks of at most :data:`NO_GRAD_CHUNK` flowed points
(``P x S x points``), which bounds the memory of the ``(M, M)`` Jacobians.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pyro_razor.models.fast_gradient import mlp_input_gradient
from pyro_razor.models.hamiltonian import SymmetrisedHamiltonian
from pyro_razor.models.networks import Activation, mlp_value, mlp_value_and_input_gradient

__all__ = ["NO_GRAD_CHUNK", "FlowSymmetrisedHamiltonian"]

NO_GRAD_CHUNK = 2**15
"""Most flowed points (``P x S x points``) whose local graph is held at once without grad."""


class FlowSymmetrisedHamiltonian(SymmetrisedHamiltonian):
    """``H_hat`` over non-linear flows, with :class:`SymmetrisedHamiltonian`'s interface
    (``broadcast``, ``energy``, ``gradient``, ``vector_field``, ``tau_samples``).

    Args:
        weights: per layer ``(P, out_l, in_l + 1)`` matrices ``[W_l b_l]``.
        activation: the network's hidden activation.
        quantities: an object with ``phase_dim``, ``num_quantities``, ``flow(x, tau)``
            (``(..., M)``, ``(..., K)`` -> ``(..., M)``) and ``flow_and_jacobian(x, tau)``
            (the same and the ``(..., M, M)`` Jacobian).
        tau: ``(P, S, K)`` symmetry times (``(S, K)`` or ``(1, S, K)``: shared by all weight
            samples).
    """

    def __init__(
        self,
        weights: Sequence[torch.Tensor],
        activation: Activation,
        quantities,
        tau: torch.Tensor,
    ) -> None:
        super().__init__(weights, activation, None)
        K, P = quantities.num_quantities, self.num_weight_samples
        if quantities.phase_dim != self.phase_dim:
            raise ValueError(f"quantities act on M = {quantities.phase_dim} but the network on "
                             f"M = {self.phase_dim}")
        if tau.dim() == 2:
            tau = tau[None]
        if tau.dim() != 3 or tau.shape[-1] != K or tau.shape[0] not in (1, P):
            raise ValueError(f"tau must have shape ({P}, S, {K}) (one set per weight sample) or "
                             f"(S, {K}), got {tuple(tau.shape)}")
        self.quantities = quantities
        self.tau = tau.expand(P, -1, -1)

    def first_draws(self, count: int) -> FlowSymmetrisedHamiltonian:
        """The same ``H_hat`` restricted to its first ``count`` weight draws."""
        sub = super().first_draws(count)
        sub.tau = self.tau[:count]
        return sub

    @property
    def tau_samples(self) -> int:
        """``S``, symmetry samples per weight sample."""
        return self.tau.shape[1]

    def flowed_points(self, x: torch.Tensor) -> torch.Tensor:
        """``Phi^{tau_ps}(x_pn)``: ``(P, N, M)`` -> ``(P, S, N, M)``."""
        P, N, M = x.shape
        return self.quantities.flow(x[:, None].expand(P, self.tau_samples, N, M),
                                    self.tau[:, :, None, :])

    def energy_and_gradient(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(P, N)`` values and ``(P, N, M)`` gradients of ``H_hat`` at ``x`` (``(N, M)`` or
        ``(P, N, M)``), the network's value and gradient by the plain autograd-able
        expression."""
        return self._flowed_value_and_gradient(self.broadcast(x), with_value=True)

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        """``grad H_hat(x)``, ``(P, N, M)`` (the network's gradient by the fast path)."""
        return self._flowed_value_and_gradient(self.broadcast(x), with_value=False)[1]

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """``(P, N)`` values of ``H_hat`` at ``x``."""
        x = self.broadcast(x)
        P, N, M = x.shape
        z = self.flowed_points(x).reshape(P, -1, M)
        value = mlp_value(self.weights, z, self.activation)
        return value.reshape(P, self.tau_samples, N).mean(1)

    def _flowed_value_and_gradient(self, x: torch.Tensor, with_value: bool):
        """``(H_hat or None, grad H_hat)`` at ``(P, N, M)`` points, ``grad H_hat = 1/S sum_s
        DPhi_s^T grad F(Phi_s(x))`` with ``DPhi`` from the flow's tangent-linear pass
        (in chunks of points when grad is disabled)."""
        P, N, M = x.shape
        chunk = max(1, NO_GRAD_CHUNK // (P * self.tau_samples))
        if torch.is_grad_enabled() or N <= chunk:
            return self._flowed_chunk(x, with_value)
        parts = [self._flowed_chunk(x[:, i : i + chunk], with_value) for i in range(0, N, chunk)]
        value = torch.cat([v for v, _ in parts], dim=1) if with_value else None
        return value, torch.cat([g for _, g in parts], dim=1)

    def _flowed_chunk(self, x: torch.Tensor, with_value: bool):
        P, N, M = x.shape
        S = self.tau_samples
        z, D = self.quantities.flow_and_jacobian(x[:, None].expand(P, S, N, M),
                                                 self.tau[:, :, None, :])
        z = z.reshape(P, S * N, M)
        if with_value:
            value, g = mlp_value_and_input_gradient(self.weights, z, self.activation)
            value = value.reshape(P, S, N).mean(1)
        else:
            value, g = None, mlp_input_gradient(self.weights, z, self.activation)
        grad = torch.einsum("psnij,psni->pnj", D, g.reshape(P, S, N, M)) / S
        return value, grad
