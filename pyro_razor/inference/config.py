"""Optimisation settings of a training run (:class:`TrainConfig`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["TrainConfig"]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings.

    Attributes:
        epochs: passes over the training trajectories.
        batch_size: trajectories per step (``None``: full batch).
        num_particles: ``P``, weight samples per step (Monte-Carlo samples of ``E_q``).
        vectorize_particles: draw the particles in one batched computation.
        elbo: ``"meanfield"`` (``TraceMeanField_ELBO``: the KL in closed form where one is
            registered, e.g. the matrix-normal guide against the Gaussian prior; the same
            expectation as ``Trace_ELBO`` with less noise; Monte Carlo for sites without one)
            or ``"trace"`` (``Trace_ELBO``).
        lr: Adam learning rate of the guide (theta) parameters.
        lr_eta: learning rate of the conserved quantities ``eta``.
        lr_hyper: learning rate of learned prior variances.
        lr_scale: learning rate of the guide's scale parameters (the matrix-normal guide's
            Cholesky factors, AutoNormal's scales; see
            :func:`~pyro_razor.inference.optim.is_scale_parameter`); ``None``: ``lr``. Adam
            moves a log-scale by about its learning rate per step, so the posterior log-stds
            can move by at most ``2 sum_t lr_scale_t`` over a run: raise it when the scale-cap
            diagnostic says the KL is capped by the step budget.
        cosine_annealing: anneal every learning rate to 0 over all steps.
        eta_warmup_epochs: hold ``eta``'s learning rate at 0 for this many epochs, so the network
            is first fitted as a (near-)vanilla HNN and the conserved quantities then start
            learning on a warmed-up model (the reference code starts its Table 3 runs from a
            pre-trained HNN); ``eta``'s cosine schedule then runs over the remaining steps.
        checkpoint_every: write a checkpoint every this many epochs (0: only at the end).
        seed: seeds Pyro/torch RNGs (weights' init, tau, particles) and the minibatch order.
    """

    epochs: int = 2000
    batch_size: int | None = None
    num_particles: int = 1
    vectorize_particles: bool = True
    elbo: Literal["trace", "meanfield"] = "meanfield"
    lr: float = 1e-3
    lr_eta: float = 1e-2
    lr_hyper: float = 1e-2
    lr_scale: float | None = None
    cosine_annealing: bool = True
    eta_warmup_epochs: int = 0
    checkpoint_every: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None (full batch), got {self.batch_size}")
        if self.num_particles < 1:
            raise ValueError(f"num_particles must be >= 1, got {self.num_particles}")
        if self.elbo not in ("trace", "meanfield"):
            raise ValueError(f"elbo must be 'trace' or 'meanfield', got {self.elbo!r}")
        for name in ("lr", "lr_eta", "lr_hyper"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be positive and finite, got {value}")
        if self.lr_scale is not None and not (self.lr_scale > 0 and math.isfinite(self.lr_scale)):
            raise ValueError(f"lr_scale must be positive and finite (or unset), got "
                             f"{self.lr_scale}")
        if not 0 <= self.eta_warmup_epochs < self.epochs:
            raise ValueError(
                f"eta_warmup_epochs must be in [0, epochs = {self.epochs}), got "
                f"{self.eta_warmup_epochs}"
            )
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")

    def batch_trajectories(self, num_trajectories: int) -> int:
        """``B``: trajectories per step for a data set of ``num_trajectories``."""
        if self.batch_size is None:
            return num_trajectories
        return min(self.batch_size, num_trajectories)

    def steps_per_epoch(self, num_trajectories: int) -> int:
        """Minibatches per pass over ``num_trajectories`` trajectories."""
        return math.ceil(num_trajectories / self.batch_trajectories(num_trajectories))
