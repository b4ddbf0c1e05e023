r"""The input gradient of ``F_theta`` with a hand-written backward pass: the training fast path.

Hamiltonian dynamics need ``v = grad_z F_theta(z)`` at every symmetrised point of every
integrator step, and training backpropagates through it. For hidden layers
``a_j = W_j h_{j-1} + b_j``, ``h_j = sigma(a_j)`` (``h_{-1} = z``, ``j = 0..L-1``) and the linear
output ``F = w . h_{L-1} + b``, the gradient pass is

.. math:: c_{L-1} = w, \qquad g_j = c_j \odot \sigma'(a_j), \qquad c_{j-1} = W_j^T g_j,
          \qquad v = W_0^T g_0 .

Autograd through that expression stores every intermediate and runs each elementwise product
and its backward as separate passes over ``P x N x H`` tensors. :class:`MLPInputGradient`
stores only the pre-activations ``a_j`` (``j >= 1``) and the back-propagated ``c_j``
(``j <= L-2``), recomputes the cheap first layer from ``z`` (its inner dimension is ``M``), and
computes the backward of ``v`` with respect to ``z`` and every weight in closed form: given
``u = dL/dv``,

.. math::
    e_0 = W_0 u, \qquad t_j = e_j \odot \sigma'(a_j), \qquad e_{j+1} = W_{j+1} t_j, \qquad
    q_j = e_j \odot c_j \odot \sigma''(a_j),

    \bar a_{L-1} = q_{L-1}, \qquad \bar a_{j-1} = q_{j-1} + (W_j^T \bar a_j) \odot \sigma'(a_{j-1}),

    \frac{dL}{dW_j} = \bar a_j h_{j-1}^T + g_j t_{j-1}^T \;(j \ge 1), \quad
    \frac{dL}{dW_0} = \bar a_0 z^T + g_0 u^T, \quad \frac{dL}{db_j} = \bar a_j, \quad
    \frac{dL}{dw} = t_{L-1}, \quad \frac{dL}{dz} = W_0^T \bar a_0,

summed over the points. That is six GEMMs per hidden-to-hidden layer and step (forward, the
gradient pass and their two backward passes each), the minimum, and no ``F`` value (the
likelihood needs only the vector field). The gradients equal those of plain autograd through
:func:`~pyro_razor.models.networks.mlp_value_and_input_gradient` to floating-point rounding
(tested). No double backward is ever needed.

Shapes: ``P`` weight samples, ``N`` points per sample, ``M`` input (phase) dimension, ``H_j``
widths.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pyro_razor.models.networks import Activation

__all__ = ["MLPInputGradient", "mlp_input_gradient"]


def _split(weights: Sequence[torch.Tensor]) -> tuple[list, list, torch.Tensor, torch.Tensor]:
    """``(W_j (P, out, in), b_j (P, 1, out))`` of the hidden layers, and the output's
    ``w (P, 1, H)``, ``b (P, 1)``."""
    Ws = [w[:, :, :-1] for w in weights[:-1]]
    bs = [w[:, None, :, -1] for w in weights[:-1]]
    return Ws, bs, weights[-1][:, :, :-1], weights[-1][:, :, -1]


class MLPInputGradient(torch.autograd.Function):
    """``v = grad_z F_theta(z)`` for ``(P, N, M)`` points, with the backward of the module
    docstring. Call through :func:`mlp_input_gradient`."""

    @staticmethod
    def forward(ctx, activation: Activation, z: torch.Tensor, *weights: torch.Tensor):
        Ws, bs, w_out, _ = _split(weights)
        L = len(Ws)
        ctx.activation, ctx.num_layers = activation, L
        if L == 0:  # a linear F: the gradient is w everywhere
            ctx.save_for_backward(z, *weights)
            return w_out.expand(-1, z.shape[1], -1).clone()
        pre, layers = [], []  # a_j for j >= 1 (a_0 is recomputed from z in backward)
        h = z
        for j in range(L):
            a = torch.baddbmm(bs[j], h, Ws[j].transpose(1, 2))
            h = activation.fn(a)
            layers.append((a, h))
            if j >= 1:
                pre.append(a)
        cs = [None] * L  # c_j, the back-propagated output weights
        cs[L - 1] = w_out
        for j in range(L - 1, 0, -1):
            cs[j - 1] = torch.bmm(activation.scale_by_derivative(cs[j], *layers[j]), Ws[j])
        v = torch.bmm(activation.scale_by_derivative(cs[0], *layers[0]), Ws[0])
        ctx.save_for_backward(z, *weights, *pre, *cs[: L - 1])
        return v

    @staticmethod
    def backward(ctx, u: torch.Tensor):
        activation, L = ctx.activation, ctx.num_layers
        saved = ctx.saved_tensors
        z, weights = saved[0], saved[1 : 2 + L]
        if L == 0:
            return (None, None, *_linear_weight_grads(weights, u))
        pre, cs = list(saved[2 + L : 1 + 2 * L]), list(saved[1 + 2 * L :])
        Ws, bs, w_out, _ = _split(weights)
        a0 = torch.baddbmm(bs[0], z, Ws[0].transpose(1, 2))
        pre = [a0, *pre]
        cs = [*cs, w_out]
        hs = [activation.fn(a) for a in pre]
        e = torch.bmm(u, Ws[0].transpose(1, 2))  # e_0 = dL/dg_0
        grad_W = [None] * L
        grad_b = [None] * L
        q, t_prev = [], None
        for j in range(L):
            g = activation.scale_by_derivative(cs[j], pre[j], hs[j])
            t = activation.scale_by_derivative(e, pre[j], hs[j])
            q.append(activation.scale_by_second_derivative(e * cs[j], pre[j], hs[j]))
            grad_W[j] = torch.bmm(g.transpose(1, 2), u if j == 0 else t_prev)
            if j + 1 < L:
                e = torch.bmm(t, Ws[j + 1].transpose(1, 2))
            t_prev = t
        grad_w_out = t_prev.sum(dim=1, keepdim=True)
        abar = q[L - 1]
        for j in range(L - 1, -1, -1):
            h_in = z if j == 0 else hs[j - 1]
            grad_W[j] += torch.bmm(abar.transpose(1, 2), h_in)
            grad_b[j] = abar.sum(dim=1)
            back = torch.bmm(abar, Ws[j])
            if j > 0:
                abar = q[j - 1] + activation.scale_by_derivative(back, pre[j - 1], hs[j - 1])
        grad_z = back
        grads = [torch.cat([gW, gb[:, :, None]], dim=-1)
                 for gW, gb in zip(grad_W, grad_b, strict=True)]
        last = torch.cat([grad_w_out, torch.zeros_like(weights[-1][:, :, -1:])], dim=-1)
        return (None, grad_z, *grads, last)


def _linear_weight_grads(weights, u):
    """A network without hidden layer: ``v = w`` everywhere, so only ``w`` gets a gradient."""
    w = weights[-1]
    grad = torch.zeros_like(w)
    grad[:, :, :-1] = u.sum(dim=1, keepdim=True)
    return [grad]


def mlp_input_gradient(
    weights: Sequence[torch.Tensor], z: torch.Tensor, activation: Activation
) -> torch.Tensor:
    """``grad_z F_theta(z)``, shape ``(P, N, M)``, for per-layer weights ``(P, out, in+1)``
    and points ``(P, N, M)``, differentiable in ``z`` and the weights with the hand-written
    backward of :class:`MLPInputGradient`."""
    return MLPInputGradient.apply(activation, z, *weights)
