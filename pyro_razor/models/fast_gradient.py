r"""The input gradient of ``F_theta`` with a hand-written, cache-blocked backward: the fast path
every symmetrised vector field goes through.

Hamiltonian dynamics need ``v = grad_z F_theta(z)`` at every symmetrised point of every
integrator step, and training backpropagates through it. For hidden layers
``a_j = W_j h_{j-1} + b_j``, ``h_j = sigma(a_j)`` (``h_{-1} = z``, ``j = 0..L-1``) and the linear
output ``F = w . h_{L-1} + b``, the gradient pass is

.. math:: c_{L-1} = w, \qquad g_j = c_j \odot \sigma'(a_j), \qquad c_{j-1} = W_j^T g_j,
          \qquad v = W_0^T g_0 .

Given ``u = dL/dv`` the backward of ``v`` with respect to ``z`` and every weight is, in closed
form,

.. math::
    e_0 = W_0 u, \qquad t_j = e_j \odot \sigma'(a_j), \qquad e_{j+1} = W_{j+1} t_j, \qquad
    q_j = e_j \odot c_j \odot \sigma''(a_j),

    \bar a_{L-1} = q_{L-1}, \qquad \bar a_{j-1} = q_{j-1} + (W_j^T \bar a_j) \odot \sigma'(a_{j-1}),

    \frac{dL}{dW_j} = \bar a_j h_{j-1}^T + g_j t_{j-1}^T \;(j \ge 1), \quad
    \frac{dL}{dW_0} = \bar a_0 z^T + g_0 u^T, \quad \frac{dL}{db_j} = \bar a_j, \quad
    \frac{dL}{dw} = t_{L-1}, \quad \frac{dL}{dz} = W_0^T \bar a_0,

summed over the points. No double backward is needed and no ``F`` value is computed (the
likelihood needs only the vector field).

**Why it is fast.** A paper-scale step pushes ~10^5 rows through 200-wide layers, and between
its GEMMs sit about a dozen elementwise passes over ``rows x width`` tensors. Over tensors of
that size every pass runs at memory bandwidth, ~5x slower on a 2-core CPU than the same pass
over a block that stays in cache, and autograd through the plain expression
(:func:`~pyro_razor.models.networks.mlp_value_and_input_gradient`) adds the backward of each
fused ``elu_backward`` as several more such passes. :class:`MLPInputGradient` instead works on
blocks of about :data:`BLOCK_ROWS` rows: the forward keeps only ``v``; the backward recomputes,
block by block, the block's activations (two GEMMs per hidden-to-hidden layer) and runs the
formulas above while the block is in cache. That is eight GEMMs per hidden-to-hidden layer and
step instead of six, every elementwise pass in cache, and memory ``O(z)`` per integrator step
instead of ``O(rows x width x layers)``: activation checkpointing is no longer needed. The
gradients equal those of plain autograd to floating-point rounding (tested).

Shapes: ``P`` weight samples, ``N`` points per sample, ``M`` input (phase) dimension, ``H_j``
widths.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.autograd.function import once_differentiable

from pyro_razor.models.networks import Activation, gradient_pass

__all__ = [
    "BLOCKED_FROM_BYTES",
    "BLOCK_ROWS",
    "MLPInputGradient",
    "mlp_input_gradient",
    "takes_blocked_path",
]

#: Rows (weight samples x points) per block: 2048 rows of a 200-wide layer are 1.6 MB in
#: float32, so the dozen live block tensors stay in a 2-4 MB L2 / the L3 cache while GEMMs on
#: them still run near their large-matrix speed.
BLOCK_ROWS = 2048

#: Below this size of one ``rows x width`` layer tensor the whole problem already stays in
#: cache, the blocked path's recomputation is pure cost, and :func:`mlp_input_gradient` uses
#: plain autograd instead (the quick configs' 3-body step: 0.20 s plain vs 0.28 s blocked).
BLOCKED_FROM_BYTES = 16 * 2**20


def takes_blocked_path(rows: int, width: int, itemsize: int) -> bool:
    """Whether :func:`mlp_input_gradient` uses the blocked path for ``rows`` points (all weight
    samples together) through layers at most ``width`` wide (:data:`BLOCKED_FROM_BYTES`)."""
    return rows * width * itemsize >= BLOCKED_FROM_BYTES


def _blocks(P: int, N: int) -> list[tuple[slice, slice]]:
    """``(weight samples, points)`` slices that tile ``(P, N)`` in blocks of about
    :data:`BLOCK_ROWS` rows: row chunks of one weight sample when ``N`` is large, several
    whole weight samples when it is small."""
    if N >= BLOCK_ROWS:
        return [(slice(p, p + 1), slice(n, min(n + BLOCK_ROWS, N)))
                for p in range(P) for n in range(0, N, BLOCK_ROWS)]
    step = max(1, BLOCK_ROWS // max(N, 1))
    return [(slice(p, min(p + step, P)), slice(0, N)) for p in range(0, P, step)]


def _block_backward(activation: Activation, z, u, weights, grad_W, grad_b, grad_w_out):
    """Recompute one block (``weights`` sliced to its weight samples) and return ``dL/dz``;
    add its weight gradients into ``grad_W[j]`` ``(p, out, in)``, ``grad_b[j]`` ``(p, out)``
    and ``grad_w_out`` ``(p, 1, H)`` (views of the full accumulators)."""
    _, layers = gradient_pass(weights, z, activation)
    Ws = [w[:, :, :-1] for w in weights[:-1]]
    L = len(Ws)
    e, q, t_prev = torch.bmm(u, Ws[0].transpose(1, 2)), [], u
    for j, (a, h, c, g) in enumerate(layers):
        t = activation.scale_by_derivative(e, a, h)
        q.append(activation.scale_by_second_derivative(e * c, a, h))
        grad_W[j].baddbmm_(g.transpose(1, 2), t_prev)
        if j + 1 < L:
            e = torch.bmm(t, Ws[j + 1].transpose(1, 2))
        t_prev = t
    grad_w_out += t_prev.sum(dim=1, keepdim=True)
    abar = q[L - 1]
    for j in range(L - 1, -1, -1):
        grad_W[j].baddbmm_(abar.transpose(1, 2), z if j == 0 else layers[j - 1][1])
        grad_b[j] += abar.sum(dim=1)
        back = torch.bmm(abar, Ws[j])
        if j > 0:
            a, h = layers[j - 1][:2]
            abar = q[j - 1] + activation.scale_by_derivative(back, a, h)
    return back


class MLPInputGradient(torch.autograd.Function):
    """``v = grad_z F_theta(z)`` for ``(P, N, M)`` points, with the blocked backward of the
    module docstring. Call through :func:`mlp_input_gradient`."""

    @staticmethod
    def forward(ctx, activation: Activation, z: torch.Tensor, *weights: torch.Tensor):
        ctx.activation = activation
        ctx.save_for_backward(z, *weights)
        P, N, _ = z.shape
        if len(weights) == 1:  # a linear F: the gradient is w everywhere
            return weights[0][:, :, :-1].expand(-1, N, -1).clone()
        v = z.new_empty(z.shape)
        for ps, ns in _blocks(P, N):
            v[ps, ns] = gradient_pass([w[ps] for w in weights], z[ps, ns], activation)[0]
        return v

    @staticmethod
    @once_differentiable
    def backward(ctx, u: torch.Tensor):
        z, *weights = ctx.saved_tensors
        if len(weights) == 1:
            return (None, None, *_linear_weight_grads(weights, u))
        P, N, _ = z.shape
        grad_W = [torch.zeros_like(w[:, :, :-1]) for w in weights[:-1]]
        grad_b = [torch.zeros_like(w[:, :, -1]) for w in weights[:-1]]
        grad_w_out = torch.zeros_like(weights[-1][:, :, :-1])
        grad_z = torch.empty_like(z)
        for ps, ns in _blocks(P, N):
            grad_z[ps, ns] = _block_backward(
                ctx.activation, z[ps, ns], u[ps, ns], [w[ps] for w in weights],
                [g[ps] for g in grad_W], [g[ps] for g in grad_b], grad_w_out[ps],
            )
        grads = [torch.cat([gW, gb[:, :, None]], dim=-1)
                 for gW, gb in zip(grad_W, grad_b, strict=True)]
        last = torch.cat([grad_w_out, torch.zeros_like(weights[-1][:, :, -1:])], dim=-1)
        return (None, grad_z, *grads, last)


def _linear_weight_grads(weights, u):
    """A network without hidden layer: ``v = w`` everywhere, so only ``w`` gets a gradient."""
    grad = torch.zeros_like(weights[-1])
    grad[:, :, :-1] = u.sum(dim=1, keepdim=True)
    return [grad]


def mlp_input_gradient(
    weights: Sequence[torch.Tensor], z: torch.Tensor, activation: Activation
) -> torch.Tensor:
    """``grad_z F_theta(z)``, shape ``(P, N, M)``, for per-layer weights ``(P, out, in+1)``
    and points ``(P, N, M)``, differentiable (once) in ``z`` and the weights with the blocked
    backward of :class:`MLPInputGradient` when a layer tensor is at least
    :data:`BLOCKED_FROM_BYTES`, else by plain autograd through
    :func:`~pyro_razor.models.networks.gradient_pass` (the gradient of
    :func:`~pyro_razor.models.networks.mlp_value_and_input_gradient` without its value; the
    two paths agree to rounding)."""
    if z.dim() != 3 or weights[0].shape[0] != z.shape[0]:
        raise ValueError(
            f"expected points (P, N, M) with P = {weights[0].shape[0]} weight samples, got "
            f"{tuple(z.shape)}"
        )
    width = max(w.shape[1] for w in weights)
    if not takes_blocked_path(z.shape[0] * z.shape[1], width, z.element_size()):
        return gradient_pass(weights, z, activation)[0]  # the value is not needed here
    return MLPInputGradient.apply(activation, z, *weights)
