r"""The trajectory likelihood: transitions observed with Gaussian noise (paper eq. 8, 11).

For ``B`` trajectories with ``n`` transitions ``(x_t, x_{t+dt})`` each and a predicted mean
``mu(x_t) = ODESolve(J grad H_hat, x_t, dt)``,

.. math:: x_{t+dt} \sim \mathcal N\big(\mu(x_t), \sigma^2_{data} I_M\big),

one Pyro sample site ``"obs"`` with event shape ``(M,)`` inside two plates: ``"trajectories"``
(dim ``-2``, size ``T``, optionally subsampled to a minibatch of ``B`` trajectories, which
scales the site's log-density by ``T / B``) and ``"time"`` (dim ``-1``, size ``n``). Like
TyXe's likelihoods, the object owns the observation site, its plates and their scaling; the
model only supplies predicted means.

Shapes: ``P`` weight samples (particles), ``B`` trajectories, ``n`` transitions, ``M`` phase
dimension.
"""

from __future__ import annotations

from contextlib import contextmanager

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyro_razor.models.noise import FixedNoise, OutputNoise

__all__ = ["OBSERVATION_SITE", "GaussianTransitionLikelihood"]

OBSERVATION_SITE = "obs"
"""Name of the Pyro sample site of the observed next states."""

TRAJECTORY_PLATE_DIM = -2
TIME_PLATE_DIM = -1


class GaussianTransitionLikelihood(nn.Module):
    """``x_{t+dt} ~ N(mu(x_t), sigma^2 I)`` with the output noise ``noise`` (appendix D.2).

    Args:
        noise: the output noise ``sigma^2_data`` (default fixed ``1e-3``, the paper's value).
    """

    max_plate_nesting = 2

    def __init__(self, noise: OutputNoise | None = None) -> None:
        super().__init__()
        self.noise = noise if noise is not None else FixedNoise(1e-3)

    @contextmanager
    def trajectories(self, num_trajectories: int, subsample: torch.Tensor | None = None):
        """The ``"trajectories"`` plate; yields the ``(B,)`` indices of the minibatch."""
        with pyro.plate(
            "trajectories", num_trajectories, subsample=subsample, dim=TRAJECTORY_PLATE_DIM
        ) as idx:
            yield idx

    def scale(self, like: torch.Tensor) -> torch.Tensor:
        """``sigma_data`` as a scalar tensor of ``like``'s dtype and device."""
        return self.noise.variance.to(like).sqrt()

    def distribution(self, mean: torch.Tensor) -> dist.TorchDistribution:
        """``Normal(mean, sigma).to_event(1)`` for ``(..., B, n, M)`` predicted means."""
        return dist.Normal(mean, self.scale(mean)).to_event(1)

    def forward(self, mean: torch.Tensor, obs: torch.Tensor | None = None) -> torch.Tensor:
        """Sample (or observe) the next states inside the ``"time"`` plate.

        Call it inside :meth:`trajectories`. ``mean``: ``(*particles, B, n, M)``; ``obs``:
        ``(B, n, M)`` or ``None``. Returns the sampled or observed ``(*particles, B, n, M)``.
        """
        with pyro.plate("time", mean.shape[-2], dim=TIME_PLATE_DIM):
            return pyro.sample(OBSERVATION_SITE, self.distribution(mean), obs=obs)

    def log_likelihood(self, mean: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """``log N(obs; mean, sigma^2 I)`` per transition, summed over the ``M`` coordinates:
        ``(..., B, n)``."""
        return self.distribution(mean).log_prob(obs)

    @staticmethod
    def residuals(mean: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """``obs - mean``, ``(..., B, n, M)``."""
        return obs - mean
