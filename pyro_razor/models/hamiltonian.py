r"""The symmetrised Hamiltonian ``H_hat`` and its vector field (paper eq. 5 and 14).

Given ``P`` weight samples ``theta_p`` of ``F_theta`` and, for each, ``S`` transform matrices
``T_ps = expm(sum_k tau_psk G_k)`` (computed once per model call, see
:func:`pyro_razor.symmetry.flow_matrices`), the unbiased ``S``-sample estimate is

.. math:: \hat H_p(x) = \frac{1}{S} \sum_{s=1}^{S} F_{\theta_p}(\Phi^{\tau_{ps}}(x)),
          \qquad \Phi^{\tau}(x) = R_\tau x + t_\tau,

and, since each ``Phi`` is affine, its gradient is
``grad H_hat_p(x) = 1/S sum_s R_ps^T grad F_theta_p(Phi^{tau_ps}(x))``. The Hamiltonian vector
field is ``x' = J grad H_hat(x)``. With no transforms (vanilla HNN) ``H_hat = F_theta``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from pyro_razor.models.fast_gradient import mlp_input_gradient
from pyro_razor.models.networks import Activation, mlp_value, mlp_value_and_input_gradient
from pyro_razor.symmetry import symplectic_matrix

__all__ = ["SymmetrisedHamiltonian"]


class SymmetrisedHamiltonian:
    """``H_hat`` for a batch of ``P`` weight samples, each with its own ``S`` transforms.

    Args:
        weights: per layer ``(P, out_l, in_l + 1)`` matrices ``[W_l b_l]``.
        activation: the network's hidden activation.
        transforms: ``(P, S, M+1, M+1)`` group elements (``(1, S, ...)`` or ``(S, ...)``:
            one set shared by all weight samples), or ``None`` for no symmetrisation.
    """

    def __init__(
        self,
        weights: Sequence[torch.Tensor],
        activation: Activation,
        transforms: torch.Tensor | None = None,
    ) -> None:
        self.weights = list(weights)
        self.activation = activation
        self.phase_dim = self.weights[0].shape[-1] - 1
        self.num_weight_samples = self.weights[0].shape[0]
        self.transforms = None if transforms is None else self._per_sample(transforms)
        self._J = symplectic_matrix(
            self.phase_dim, dtype=self.weights[0].dtype, device=self.weights[0].device
        )

    def _per_sample(self, transforms: torch.Tensor) -> torch.Tensor:
        """``(P, S, M+1, M+1)`` from ``(S, ...)``, ``(1, S, ...)`` or ``(P, S, ...)``."""
        M, P = self.phase_dim, self.num_weight_samples
        if transforms.dim() == 3:
            transforms = transforms[None]
        if transforms.dim() != 4 or transforms.shape[-2:] != (M + 1, M + 1) or (
            transforms.shape[0] not in (1, P)
        ):
            raise ValueError(
                f"transforms must have shape ({P}, S, {M + 1}, {M + 1}) (one set per weight "
                f"sample) or (S, {M + 1}, {M + 1}), got {tuple(transforms.shape)}"
            )
        return transforms.expand(P, -1, -1, -1)

    def first_draws(self, count: int) -> SymmetrisedHamiltonian:
        """The same ``H_hat`` restricted to its first ``count`` weight draws, each with its
        own transforms (e.g. to re-integrate one draw more finely)."""
        sub = copy.copy(self)
        sub.weights = [w[:count] for w in self.weights]
        sub.num_weight_samples = sub.weights[0].shape[0]
        if self.transforms is not None:
            sub.transforms = self.transforms[:count]
        return sub

    @property
    def tau_samples(self) -> int:
        """``S``, symmetry samples per weight sample (1 without symmetrisation)."""
        return 1 if self.transforms is None else self.transforms.shape[1]

    def broadcast(self, x: torch.Tensor) -> torch.Tensor:
        """Broadcast ``(N, M)`` or ``(P, N, M)`` points to ``(P, N, M)`` (``ValueError`` if
        neither)."""
        M, P = self.phase_dim, self.num_weight_samples
        if x.shape[-1] != M:
            raise ValueError(f"expected points of shape (..., {M}), got {tuple(x.shape)}")
        if x.dim() == 2:
            x = x.expand(P, *x.shape)
        if x.dim() != 3 or x.shape[0] not in (1, P):
            raise ValueError(
                f"expected points of shape (N, {M}) or ({P}, N, {M}), got {tuple(x.shape)}"
            )
        return x.expand(P, -1, -1)

    def _symmetrised_points(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``Phi^{tau_ps}(x_n)`` flattened to ``(P, S*N, M)``, and ``R`` ``(P, S, M, M)``
        (``x`` itself and ``None`` without symmetrisation)."""
        x = self.broadcast(x)
        if self.transforms is None:
            return x, None
        M = self.phase_dim
        R = self.transforms[..., :M, :M]  # (P, S, M, M)
        t = self.transforms[..., :M, M]  # (P, S, M)
        z = torch.einsum("psmk,pnk->psnm", R, x) + t[:, :, None, :]  # (P, S, N, M)
        return z.reshape(x.shape[0], -1, M), R

    def _averaged_gradient(self, grad: torch.Tensor, R: torch.Tensor | None) -> torch.Tensor:
        """``1/S sum_s R_ps^T grad_s``: ``(P, S*N, M)`` network gradients to ``(P, N, M)``."""
        if R is None:
            return grad
        P, S, M = R.shape[0], R.shape[1], self.phase_dim
        return torch.einsum("psnk,pskm->pnm", grad.reshape(P, S, -1, M), R) / S

    def energy_and_gradient(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``H_hat(x)`` and ``grad H_hat(x)`` by the plain autograd-able expression
        (:func:`~pyro_razor.models.networks.mlp_value_and_input_gradient`).

        Args:
            x: ``(N, M)`` (shared by all weight samples) or ``(P, N, M)``.

        Returns:
            ``(P, N)`` energies and ``(P, N, M)`` gradients.
        """
        z, R = self._symmetrised_points(x)
        value, grad = mlp_value_and_input_gradient(self.weights, z, self.activation)
        energy = value if R is None else value.reshape(R.shape[0], R.shape[1], -1).mean(1)
        return energy, self._averaged_gradient(grad, R)

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        """``grad H_hat(x)``, ``(P, N, M)``, by the fast path
        (:func:`~pyro_razor.models.fast_gradient.mlp_input_gradient`: cache-blocked, with a
        hand-written backward; equal to :meth:`energy_and_gradient`'s to rounding)."""
        z, R = self._symmetrised_points(x)
        return self._averaged_gradient(mlp_input_gradient(self.weights, z, self.activation), R)

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """``(P, N)`` values of ``H_hat`` at ``x`` (``(N, M)`` or ``(P, N, M)``), by the
        forward pass alone (:func:`~pyro_razor.models.networks.mlp_value`)."""
        z, R = self._symmetrised_points(x)
        value = mlp_value(self.weights, z, self.activation)
        return value if R is None else value.reshape(R.shape[0], R.shape[1], -1).mean(1)

    def vector_field(self, x: torch.Tensor) -> torch.Tensor:
        """``J grad H_hat(x)``, shape ``(P, N, M)``, by the fast path (:meth:`gradient`)."""
        return self.gradient(x) @ self._J.T
