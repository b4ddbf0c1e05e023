r"""The non-symmetrised Hamiltonian network ``F_theta`` (paper section 4.1) as a Bayesian MLP.

Every layer ``l`` maps ``h -> act(W_l h + b_l)`` (the last layer is linear with one output);
its weight matrix with the bias as an extra column, ``theta_l = [W_l  b_l]`` of shape
``(out_l, in_l + 1)``, is one Pyro sample site ``"<module path>.weight<l>"`` with the prior
given by a swappable prior object (:mod:`pyro_razor.models.priors`).

Hamiltonian dynamics need ``grad_x F_theta(x)``. We compute it alongside the value with an
explicit backward pass through the layers,

.. math:: \nabla_x F = W_0^T \mathrm{diag}(\sigma'(a_0)) W_1^T \cdots
          \mathrm{diag}(\sigma'(a_{L-1})) w_L^T,

so the vector field is an ordinary differentiable tensor expression: training backpropagates
through it once (no ``create_graph`` double backward) and evaluation runs under ``no_grad``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from pyro.nn import PyroModule, PyroSample

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "BayesianMLP",
    "get_activation",
    "gradient_pass",
    "mlp_value_and_input_gradient",
]


@dataclass(frozen=True)
class Activation:
    """An elementwise activation ``h = fn(a)``, its derivative ``derivative(a, h)`` and second
    derivative ``second_derivative(a, h)``.

    The derivatives receive the output ``h`` as well, so that they can reuse it (ELU:
    ``alpha e^a = h + alpha`` for ``a <= 0``; tanh: ``1 - h^2``) instead of recomputing
    exponentials: elementwise work is about half the cost of a symmetrised step. The second
    derivative is what the hand-written backward of the input gradient needs
    (:mod:`pyro_razor.models.fast_gradient`).
    """

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    derivative: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    second_derivative: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    times_derivative: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = (
        None)
    times_second_derivative: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] \
        | None = None

    def scale_by_derivative(self, g: torch.Tensor, a: torch.Tensor, h: torch.Tensor):
        """``g * derivative(a, h)``, in one fused kernel where the activation has one (ELU:
        ATen's own ``elu_backward``, an order of magnitude faster on the CPU than a masked
        ``where`` followed by a product); ``g`` broadcasts against ``a``."""
        if self.times_derivative is not None:
            return self.times_derivative(g, a, h)
        return g * self.derivative(a, h)

    def scale_by_second_derivative(self, g: torch.Tensor, a: torch.Tensor, h: torch.Tensor):
        """``g * second_derivative(a, h)``, fused where the activation allows it."""
        if self.times_second_derivative is not None:
            return self.times_second_derivative(g, a, h)
        return g * self.second_derivative(a, h)


# The activations' pieces are module-level functions (bound with functools.partial), so that
# an Activation, and every network or Hamiltonian holding one, pickles: a run's variants can
# train in worker processes and send their results back (pyro_razor.runs.parallel).


def _elu_fn(a, alpha):
    return F.elu(a, alpha=alpha)


def _elu_derivative(a, h, alpha):
    return torch.where(a > 0, 1.0, h + alpha)


def _elu_second(a, h, alpha):
    return torch.where(a > 0, 0.0, h + alpha)


def _elu_times_derivative(g, a, h, alpha):
    return torch.ops.aten.elu_backward(g, alpha, 1.0, 1.0, True, h)


def _elu_times_second(g, a, h, alpha):
    # alpha e^a = h + alpha on a <= 0, 0 on a > 0: elu's slope minus the relu mask
    return (torch.ops.aten.elu_backward(g, alpha, 1.0, 1.0, True, h)
            - torch.ops.aten.threshold_backward(g, h, 0.0))


def _elu(alpha: float) -> Activation:
    return Activation(
        f"elu({alpha:g})",
        partial(_elu_fn, alpha=alpha),
        partial(_elu_derivative, alpha=alpha),
        partial(_elu_second, alpha=alpha),
        partial(_elu_times_derivative, alpha=alpha),
        partial(_elu_times_second, alpha=alpha),
    )


def _tanh_derivative(a, h):
    return 1.0 - h * h


def _tanh_second(a, h):
    return -2.0 * h * (1.0 - h * h)


def _tanh() -> Activation:
    return Activation("tanh", torch.tanh, _tanh_derivative, _tanh_second)


def _softplus_derivative(a: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(a)


def _softplus_second(a: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(a)
    return s * (1.0 - s)


def _softplus() -> Activation:
    return Activation("softplus", F.softplus, _softplus_derivative, _softplus_second)


def _silu_derivative(a: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(a)
    return s * (1.0 + a * (1.0 - s))


def _silu_second(a: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(a)
    return s * (1.0 - s) * (2.0 + a * (1.0 - 2.0 * s))


def _silu() -> Activation:
    return Activation("silu", F.silu, _silu_derivative, _silu_second)


ACTIVATIONS: dict[str, Callable[..., Activation]] = {
    "elu": _elu,
    "tanh": _tanh,
    "softplus": _softplus,
    "silu": _silu,
}


def get_activation(name: str, alpha: float = 1.0) -> Activation:
    """Look up an activation by name (``alpha`` is used by ``"elu"`` only)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name](alpha) if name == "elu" else ACTIVATIONS[name]()


def _affine(W: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``h W^T + b`` for ``W = [W b]`` ``(P, out, in + 1)`` and ``h`` ``(P, B, in)``."""
    return torch.baddbmm(W[:, None, :, -1], h, W[:, :, :-1].transpose(1, 2))


def _scalar_output(last: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """The scalar output layer ``last`` ``(P, 1, H + 1)`` on ``h`` ``(P, B, H)``: ``(P, B)``."""
    return (h * last[:, :, :-1]).sum(-1) + last[:, :, -1]


def gradient_pass(
    weights: Sequence[torch.Tensor], z: torch.Tensor, activation: Activation
) -> tuple[torch.Tensor, list[list[torch.Tensor]]]:
    """The forward pass through the hidden layers and the explicit gradient pass back.

    Args:
        weights: per layer ``(P, out_l, in_l + 1)`` matrices ``[W_l b_l]``; the last has
            ``out = 1``.
        z: ``(P, B, in_0)`` inputs.
        activation: hidden-layer activation.

    Returns:
        ``grad`` ``(P, B, in_0)`` (for a linear network the same at every point, a broadcast
        view) and per hidden layer ``[a_l, h_l, c_l, g_l]``: pre-activation, activation, the
        back-propagated output weights and ``g_l = c_l * act'(a_l)``.
    """
    h, layers = z, []
    for W in weights[:-1]:
        a = _affine(W, h)
        h = activation.fn(a)
        layers.append([a, h])
    grad = weights[-1][:, :, :-1]  # (P, 1, H): d value / d h, broadcast over the B points
    for W, layer in zip(reversed(weights[:-1]), reversed(layers), strict=True):
        g = activation.scale_by_derivative(grad, *layer)
        layer += [grad, g]
        grad = torch.bmm(g, W[:, :, :-1])
    return grad.expand(-1, z.shape[1], -1), layers


def mlp_value(
    weights: Sequence[torch.Tensor], z: torch.Tensor, activation: Activation
) -> torch.Tensor:
    """Value of a scalar MLP for a batch of weight samples, forward pass only (no gradient
    pass: about a third of :func:`mlp_value_and_input_gradient`'s work).

    Args:
        weights: per layer ``(P, out_l, in_l + 1)`` matrices ``[W_l b_l]``; the last has
            ``out = 1``.
        z: ``(P, B, in_0)`` inputs.
        activation: hidden-layer activation.

    Returns:
        ``(P, B)`` values, equal to :func:`mlp_value_and_input_gradient`'s to rounding.
    """
    h = z
    for W in weights[:-1]:
        h = activation.fn(_affine(W, h))
    return _scalar_output(weights[-1], h)


def mlp_value_and_input_gradient(
    weights: Sequence[torch.Tensor], z: torch.Tensor, activation: Activation
) -> tuple[torch.Tensor, torch.Tensor]:
    """Value and input gradient of a scalar MLP for a batch of weight samples.

    Args:
        weights: per layer ``(P, out_l, in_l + 1)`` matrices ``[W_l b_l]``; the last has
            ``out = 1``.
        z: ``(P, B, in_0)`` inputs (``P`` weight samples, ``B`` points each).
        activation: hidden-layer activation.

    Returns:
        ``(value, grad)`` of shapes ``(P, B)`` and ``(P, B, in_0)``.
    """
    grad, layers = gradient_pass(weights, z, activation)
    value = _scalar_output(weights[-1], layers[-1][1] if layers else z)
    return value, grad


class BayesianMLP(PyroModule):
    """``F_theta: R^M -> R``, an MLP whose layer matrices ``[W_l b_l]`` are Pyro sample sites.

    Args:
        in_dim: input (phase-space) dimension ``M``.
        hidden: hidden-layer widths, e.g. ``(200, 200)``; ``()`` gives a linear-in-theta model.
        activation: hidden activation.
        prior: a prior object (see :mod:`pyro_razor.models.priors`) that provides the
            distribution of every layer matrix; it becomes a child module (``self.prior``).
    """

    def __init__(
        self, in_dim: int, hidden: Sequence[int], activation: Activation, prior: PyroModule
    ) -> None:
        super().__init__()
        hidden = tuple(int(h) for h in hidden)
        if any(h <= 0 for h in hidden):
            raise ValueError(f"hidden widths must be positive, got {hidden}")
        widths = (in_dim, *hidden, 1)
        self.activation = activation
        self.layer_shapes = tuple((widths[i + 1], widths[i] + 1) for i in range(len(widths) - 1))
        self.prior = prior
        self.prior.setup(self.layer_shapes)
        self.register_buffer("_anchor", torch.zeros(()))  # carries device and dtype
        for l, shape in enumerate(self.layer_shapes):
            setattr(self, f"weight{l}", PyroSample(self._prior_of(l, shape)))

    @staticmethod
    def _prior_of(l: int, shape: tuple[int, int]) -> Callable[[BayesianMLP], object]:
        return lambda self: self.prior.distribution(l, shape, self._anchor)

    @property
    def device(self) -> torch.device:
        """Where the network's tensors (and its prior's) live."""
        return self._anchor.device

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype of the network's tensors."""
        return self._anchor.dtype

    @property
    def num_layers(self) -> int:
        return len(self.layer_shapes)

    def site_names(self) -> list[str]:
        """Full Pyro site names of the layer matrices, in layer order."""
        prefix = f"{self._pyro_name}." if self._pyro_name else ""
        return [f"{prefix}weight{l}" for l in range(self.num_layers)]

    def sample_weights(self) -> list[torch.Tensor]:
        """Sample (or, under a guide's replay, read) every layer matrix: ``(*batch, out, in+1)``."""
        return [getattr(self, f"weight{l}") for l in range(self.num_layers)]

    def standard_init(self, l: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """A standard (PyTorch ``nn.Linear``-style) initial value for layer ``l``'s matrix:
        ``U(-1/sqrt(in), 1/sqrt(in))`` for weights and bias."""
        out, cols = self.layer_shapes[l]
        bound = (cols - 1) ** -0.5
        u = torch.rand(out, cols, generator=generator, dtype=self._anchor.dtype)
        return ((2 * u - 1) * bound).to(self._anchor.device)
