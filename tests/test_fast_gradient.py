"""The blocked fast input gradient (``models/fast_gradient.py``) against plain autograd through
``mlp_value_and_input_gradient``: values and every gradient, across block layouts, depths,
activations and dtypes."""

from __future__ import annotations

import math

import pytest
import torch

import pyro_razor.models.fast_gradient as fast_gradient
from pyro_razor.models.fast_gradient import mlp_input_gradient
from pyro_razor.models.hamiltonian import SymmetrisedHamiltonian
from pyro_razor.models.networks import get_activation, mlp_value_and_input_gradient
from pyro_razor.symmetry import flow_matrices, generator_matrix

DT = torch.float64


def _weights(widths, P, dtype=DT, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(P, widths[i + 1], widths[i] + 1, generator=g, dtype=dtype)
             / math.sqrt(widths[i])).requires_grad_() for i in range(len(widths) - 1)]


@pytest.fixture(autouse=True)
def _always_blocked(monkeypatch):
    """Every size takes the blocked path here (its own size rule is tested below)."""
    monkeypatch.setattr(fast_gradient, "BLOCKED_FROM_BYTES", 0)


def _both(weights, z, act, u):
    """``(v, dL/dz, dL/dW...)`` of ``L = <v, u>`` by plain autograd and by the fast path."""
    out = []
    for fast in (False, True):
        v = (mlp_input_gradient(weights, z, act) if fast
             else mlp_value_and_input_gradient(weights, z, act)[1])
        out.append([v.detach(), *torch.autograd.grad((v * u).sum(), [z, *weights])])
    return out


@pytest.mark.parametrize("P, N, block", [(3, 11, 2048), (5, 7, 16), (2, 45, 16), (1, 1, 16)])
@pytest.mark.parametrize("name", ["elu", "tanh", "softplus", "silu"])
def test_fast_gradient_equals_autograd_for_every_block_layout(monkeypatch, P, N, block, name):
    """float64: one block, several weight samples per block, row chunks with a ragged last
    chunk, and a single point all agree with autograd to 1e-12 relative."""
    monkeypatch.setattr(fast_gradient, "BLOCK_ROWS", block)
    act = get_activation(name, alpha=2.0)
    weights = _weights((4, 9, 7, 1), P)
    g = torch.Generator().manual_seed(1)
    z = torch.randn(P, N, 4, generator=g, dtype=DT, requires_grad=True)
    u = torch.randn(P, N, 4, generator=g, dtype=DT)
    plain, fast = _both(weights, z, act, u)
    for a, b in zip(plain, fast, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("widths", [(2, 1), (2, 8, 1), (3, 6, 5, 4, 1)])
def test_fast_gradient_equals_autograd_for_every_depth(monkeypatch, widths):
    monkeypatch.setattr(fast_gradient, "BLOCK_ROWS", 8)
    act = get_activation("elu", alpha=1.0)
    weights = _weights(widths, 2)
    z = torch.randn(2, 13, widths[0], dtype=DT, requires_grad=True)
    u = torch.randn(2, 13, widths[0], dtype=DT)
    if len(widths) == 2:  # linear F: z gets no gradient from either path
        v = mlp_input_gradient(weights, z, act)
        torch.testing.assert_close(v, weights[0][:, :, :-1].expand(2, 13, -1))
        (gw,) = torch.autograd.grad((v * u).sum(), weights)
        torch.testing.assert_close(gw[:, :, :-1], u.sum(1, keepdim=True))
        return
    plain, fast = _both(weights, z, act, u)
    for a, b in zip(plain, fast, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)


def test_fast_gradient_float32_agrees_to_rounding_at_table1_width():
    """The paper's Table 1 network (2-200-200-1, ELU alpha 2) in float32 over several blocks:
    the fast path's gradients equal float64 autograd's as closely as float32 autograd's do
    (within 4x its error, and 1e-4 relative)."""
    act = get_activation("elu", alpha=2.0)
    w64 = _weights((2, 200, 200, 1), 2)
    z64 = torch.randn(2, 3000, 2, dtype=DT, generator=torch.Generator().manual_seed(2))
    u64 = torch.randn(2, 3000, 2, dtype=DT, generator=torch.Generator().manual_seed(3))
    exact = _both(w64, z64.requires_grad_(), act, u64)[0]
    w32 = [w.detach().float().requires_grad_() for w in w64]
    plain32, fast32 = _both(w32, z64.detach().float().requires_grad_(), act, u64.float())
    for e, p, f in zip(exact, plain32, fast32, strict=True):
        scale = e.abs().max()
        err_plain = (p.double() - e).abs().max() / scale
        err_fast = (f.double() - e).abs().max() / scale
        assert err_fast < max(4 * err_plain, 1e-6) and err_fast < 1e-4, (err_fast, err_plain)


def test_symmetrised_gradient_fast_path_equals_the_plain_expression():
    """``SymmetrisedHamiltonian.gradient`` (fast) equals ``energy_and_gradient`` (plain) in
    value and in the gradients with respect to the weights and the generators' parameters."""
    act = get_activation("elu", alpha=2.0)
    weights = _weights((2, 16, 16, 1), 3)
    g = torch.Generator().manual_seed(4)
    W = (0.3 * torch.randn(2, 2, 2, dtype=DT, generator=g)).requires_grad_()
    b = (0.3 * torch.randn(2, 2, dtype=DT, generator=g)).requires_grad_()
    tau = torch.rand(3, 5, 2, dtype=DT, generator=torch.Generator().manual_seed(5))
    x = torch.randn(7, 2, dtype=DT, generator=torch.Generator().manual_seed(6))
    grads = []
    for fast in (False, True):
        T = flow_matrices(generator_matrix(W + W.transpose(1, 2), b), tau)
        H = SymmetrisedHamiltonian(weights, act, T)
        v = H.gradient(x) if fast else H.energy_and_gradient(x)[1]
        grads.append([v.detach(), *torch.autograd.grad(v.square().sum(), [W, b, *weights])])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)


def test_fast_gradient_rejects_points_without_a_weight_sample_axis():
    weights = _weights((2, 4, 1), 3)
    with pytest.raises(ValueError, match=r"expected points \(P, N, M\) with P = 3"):
        mlp_input_gradient(weights, torch.zeros(5, 2, dtype=DT), get_activation("elu"))


def test_small_problems_take_plain_autograd_and_large_ones_the_blocked_path(monkeypatch):
    monkeypatch.setattr(fast_gradient, "BLOCKED_FROM_BYTES", 3 * 10 * 9 * 8)
    act = get_activation("elu")
    weights = _weights((4, 9, 1), 3)
    small = mlp_input_gradient(weights, torch.randn(3, 9, 4, dtype=DT), act)
    large = mlp_input_gradient(weights, torch.randn(3, 10, 4, dtype=DT), act)
    assert "MLPInputGradient" not in type(small.grad_fn).__name__
    assert "MLPInputGradient" in type(large.grad_fn).__name__


@pytest.mark.parametrize("widths", [(4, 9, 1), (4, 1)])
def test_small_path_gradient_is_bit_identical_to_the_value_and_gradient_one(monkeypatch, widths):
    """The plain path skips the network's value (unused there): its gradient, and the weight
    gradients through it, are exactly those of ``mlp_value_and_input_gradient``; a linear
    network's is expanded to every point."""
    monkeypatch.setattr(fast_gradient, "BLOCKED_FROM_BYTES", 2**40)
    act = get_activation("elu")
    weights = _weights(widths, 3)
    z = torch.randn(3, 7, 4, dtype=DT)
    fast = mlp_input_gradient(weights, z, act)
    plain = mlp_value_and_input_gradient(weights, z, act)[1]
    assert fast.shape == (3, 7, 4)
    assert torch.equal(fast, plain)
    for a, b in zip(torch.autograd.grad(fast.square().sum(), weights),
                    torch.autograd.grad(plain.square().sum(), weights), strict=True):
        assert torch.equal(a, b)


def test_gradient_pass_layers_satisfy_their_definitions():
    """``gradient_pass``'s per-layer ``[a, h, c, g]``: ``h = act(a)``, ``g = c act'(a)``,
    ``c_{L-1} = w`` and ``c_{j-1} = g_j W_j``; its gradient is the plain path's."""
    from pyro_razor.models.networks import gradient_pass

    act = get_activation("tanh")
    weights = [w.detach() for w in _weights((3, 6, 5, 1), 2)]
    z = torch.randn(2, 4, 3, dtype=DT)
    grad, layers = gradient_pass(weights, z, act)
    for a, h, c, g in layers:
        torch.testing.assert_close(h, act.fn(a))
        torch.testing.assert_close(g, c * act.derivative(a, h))
    torch.testing.assert_close(layers[-1][2], weights[-1][:, :, :-1])
    torch.testing.assert_close(layers[0][2], layers[1][3] @ weights[1][:, :, :-1])
    torch.testing.assert_close(grad, mlp_value_and_input_gradient(weights, z, act)[1])


def test_takes_blocked_path_compares_the_layer_tensor_with_the_threshold(monkeypatch):
    from pyro_razor.models.fast_gradient import takes_blocked_path

    monkeypatch.setattr(fast_gradient, "BLOCKED_FROM_BYTES", 16 * 2**20)  # the default
    rows = 16 * 2**20 // (256 * 4)  # 16384 rows of a 256-wide float32 layer: exactly 16 MiB
    assert takes_blocked_path(rows, 256, 4) and not takes_blocked_path(rows - 1, 256, 4)
    assert not takes_blocked_path(rows, 256, 2)  # half the bytes in a 2-byte dtype
