r"""Swappable priors over the layer matrices ``theta_l = [W_l b_l]`` of ``F_theta``.

Every prior here is an isotropic Gaussian per layer, ``theta_l ~ N(0, v_l I)``, declared the way
Pyro expects so that closed-form KLs apply::

    Normal(0, sqrt(v_l)).expand((out_l, in_l + 1)).to_event(2)

They differ in how ``v_l`` is chosen (paper appendix D.3):

- :class:`FixedVariancePrior`: ``v_l`` is a constant.
- :class:`LearnedVariancePrior`: ``v_l`` is a ``pyro.param`` (positive), optimised by the ELBO
  gradient (empirical Bayes).
- :class:`ClosedFormVariancePrior`: ``v_l`` is set between optimisation steps to the
  KL-minimising value ``v* = (Tr Sigma_q + |m_q|^2) / D`` (eq. 17), optionally damped.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.nn import PyroModule, PyroParam

__all__ = [
    "ClosedFormVariancePrior",
    "FixedVariancePrior",
    "LayerGaussianPrior",
    "LearnedVariancePrior",
]


def _check_variance(variance: float) -> float:
    variance = float(variance)
    if not (variance > 0 and variance < float("inf")):
        raise ValueError(f"prior variance must be positive and finite, got {variance}")
    return variance


class LayerGaussianPrior(PyroModule):
    """Base class: an isotropic Gaussian prior ``N(0, v_l I)`` for each layer matrix."""

    def __init__(self, variance: float = 1.0) -> None:
        super().__init__()
        self.initial_variance = _check_variance(variance)
        self.layer_shapes: tuple[tuple[int, int], ...] = ()

    def setup(self, layer_shapes: Sequence[tuple[int, int]]) -> None:
        """Called once by the network with the ``(out, in+1)`` shape of every layer."""
        self.layer_shapes = tuple(layer_shapes)

    def variances(self) -> torch.Tensor:
        """``(L,)`` prior variances, one per layer."""
        raise NotImplementedError

    def distribution(
        self, layer: int, shape: tuple[int, int], anchor: torch.Tensor
    ) -> dist.TorchDistribution:
        """The prior of layer ``layer``: ``Normal(0, sqrt(v_l)).expand(shape).to_event(2)``.

        ``anchor`` is a scalar tensor giving the device and dtype.
        """
        scale = self.variances()[layer].to(anchor).sqrt()
        return dist.Normal(anchor, scale).expand(shape).to_event(2)


class FixedVariancePrior(LayerGaussianPrior):
    """``theta_l ~ N(0, v I)`` with a fixed variance ``v`` for every layer."""

    def setup(self, layer_shapes: Sequence[tuple[int, int]]) -> None:
        super().setup(layer_shapes)
        self.register_buffer(
            "_variances",
            torch.full((len(self.layer_shapes),), self.initial_variance, dtype=torch.float64),
        )

    def variances(self) -> torch.Tensor:
        return self._variances


class LearnedVariancePrior(LayerGaussianPrior):
    """``theta_l ~ N(0, v_l I)`` with ``v_l`` a positive ``pyro.param`` learned by gradient."""

    def setup(self, layer_shapes: Sequence[tuple[int, int]]) -> None:
        super().setup(layer_shapes)
        self.variance = PyroParam(
            torch.full((len(self.layer_shapes),), self.initial_variance), constraints.positive
        )

    def variances(self) -> torch.Tensor:
        return self.variance


class ClosedFormVariancePrior(LayerGaussianPrior):
    r"""``theta_l ~ N(0, v_l I)`` with ``v_l`` set in closed form between steps (appendix D.3).

    :meth:`update` takes each layer's posterior second moment ``E_q |theta_l|^2 =
    Tr Sigma_l + |m_l|^2`` (for a matrix normal ``Tr S Tr A + |M|^2``) and moves the prior
    precision ``1 / v_l`` towards the KL-minimising one of eq. 17,

    .. math:: \frac{1}{v_l} \leftarrow \rho\, \frac{1}{v_l}
              + (1 - \rho)\, \frac{D_l}{E_q \|\theta_l\|^2},

    with damping ``rho`` (0: the exact minimiser; the reference code damps by ``rho = 1/2`` in
    precision space after every step), and only after ``warmup_steps`` calls (before that the
    prior keeps its initial variance while the posterior settles). The variances and the
    number of updates are buffers (checkpointed), not parameters: they receive no gradient.
    """

    def __init__(
        self, variance: float = 1.0, damping: float = 0.0, warmup_steps: int = 0
    ) -> None:
        super().__init__(variance)
        if not 0.0 <= damping < 1.0:
            raise ValueError(f"damping must be in [0, 1), got {damping}")
        if not (isinstance(warmup_steps, int) and warmup_steps >= 0):
            raise ValueError(f"warmup_steps must be an int >= 0, got {warmup_steps!r}")
        self.damping = float(damping)
        self.warmup_steps = warmup_steps

    def setup(self, layer_shapes: Sequence[tuple[int, int]]) -> None:
        super().setup(layer_shapes)
        self.register_buffer(
            "_variances",
            torch.full((len(self.layer_shapes),), self.initial_variance, dtype=torch.float64),
        )
        self.register_buffer("_calls", torch.zeros((), dtype=torch.int64))

    def variances(self) -> torch.Tensor:
        return self._variances

    @torch.no_grad()
    def update(self, second_moments: Sequence[torch.Tensor]) -> None:
        """Move ``v_l`` towards ``(L,)`` posterior second moments ``E_q |theta_l|^2 / D_l``
        (eq. 17), once the warm-up is over."""
        if len(second_moments) != len(self.layer_shapes):
            raise ValueError(
                f"expected {len(self.layer_shapes)} second moments (one per layer), "
                f"got {len(second_moments)}"
            )
        sizes = torch.tensor([o * i for o, i in self.layer_shapes], dtype=self._variances.dtype)
        m2 = torch.stack([torch.as_tensor(m).to(self._variances) for m in second_moments])
        target = m2 / sizes.to(self._variances)
        if not torch.isfinite(target).all() or (target <= 0).any():
            raise FloatingPointError(f"closed-form prior variance update is invalid: {target}")
        self._calls += 1
        if int(self._calls) <= self.warmup_steps:
            return
        precision = self.damping / self._variances + (1.0 - self.damping) / target
        self._variances.copy_(1.0 / precision)
