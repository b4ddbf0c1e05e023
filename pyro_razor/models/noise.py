r"""Output (observation) noise ``sigma^2_data`` of the trajectory likelihood (appendix D.2).

- :class:`FixedNoise`: a constant variance (the paper uses ``sigma^2_data = 0.001``).
- :class:`EmpiricalNoise`: an exponentially weighted running estimate of the empirical
  residual variance over minibatches, which maximises the marginal likelihood in ``sigma^2``
  (appendix D.2). It is a buffer updated between steps, not a gradient-trained parameter.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["EmpiricalNoise", "FixedNoise", "OutputNoise"]


class OutputNoise(nn.Module):
    """Base class: holds a scalar per-coordinate variance ``sigma^2_data`` as a buffer."""

    def __init__(self, variance: float) -> None:
        super().__init__()
        variance = float(variance)
        if not (variance > 0 and variance < float("inf")):
            raise ValueError(f"noise variance must be positive and finite, got {variance}")
        self.register_buffer("variance", torch.tensor(variance, dtype=torch.float64))

    def update(self, residual_variance: torch.Tensor) -> None:
        """Hook called by the trainer with the last minibatch's mean squared residual."""


class FixedNoise(OutputNoise):
    """A fixed ``sigma^2_data``."""


class EmpiricalNoise(OutputNoise):
    """``sigma^2 <- momentum * sigma^2 + (1 - momentum) * mean squared residual`` (D.2)."""

    def __init__(self, variance: float = 1e-3, momentum: float = 0.9, floor: float = 1e-8) -> None:
        super().__init__(variance)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = float(momentum)
        self.floor = float(floor)

    @torch.no_grad()
    def update(self, residual_variance: torch.Tensor) -> None:
        r = torch.as_tensor(residual_variance).to(self.variance).clamp_min(self.floor)
        if not torch.isfinite(r):
            raise FloatingPointError(f"empirical noise update got a non-finite residual: {r}")
        self.variance.mul_(self.momentum).add_((1.0 - self.momentum) * r)
