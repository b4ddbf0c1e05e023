r"""The optimiser of a run: Adam per parameter group with explicit learning-rate schedules,
and the ELBO estimator.

Parameters fall into three groups (:meth:`~pyro_razor.models.NoetherRazorModel.param_group`):
the guide's (``theta``), the conserved quantities ``eta`` and the hyper-parameters, each with
its own learning rate; with ``lr_scale`` set, the guide's scale parameters
(:func:`is_scale_parameter`) form a fourth group, ``scale``. Every group runs on one
:class:`torch.optim.lr_scheduler.LambdaLR` schedule, :func:`learning_rate_factor`:
cosine-annealed to 0 over all steps (or constant), with an optional warm-up of ``eta`` at
learning rate 0.
"""

from __future__ import annotations

import math

import pyro
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from pyro_razor.inference.config import TrainConfig
from pyro_razor.models.razor import MAX_PLATE_NESTING, NoetherRazorModel

__all__ = [
    "GroupAdam",
    "is_scale_parameter",
    "learning_rate_factor",
    "make_elbo",
    "make_optimizer",
]


def make_elbo(config: TrainConfig):
    """The ELBO estimator of ``config`` with the model's plate nesting."""
    cls = Trace_ELBO if config.elbo == "trace" else TraceMeanField_ELBO
    return cls(
        num_particles=config.num_particles,
        vectorize_particles=config.vectorize_particles and config.num_particles > 1,
        max_plate_nesting=MAX_PLATE_NESTING,
    )


class GroupAdam(torch.optim.Adam):
    """``torch.optim.Adam`` that remembers which optimiser group (theta / eta / hyper) its
    parameter belongs to, so that its learning-rate schedule can depend on it."""

    def __init__(self, params, group: str, **kwargs) -> None:
        super().__init__(params, **kwargs)
        self.group = group


def learning_rate_factor(step: int, total_steps: int, cosine: bool, warmup_steps: int = 0) -> float:
    """Multiplier of the base learning rate at ``step``: 0 during a warm-up, then 1 or a cosine
    from 1 to 0 over the remaining steps, ``(1 + cos(pi t / T)) / 2``."""
    if step < warmup_steps:
        return 0.0
    if not cosine:
        return 1.0
    span = max(total_steps - warmup_steps, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup_steps, span) / span))


SCALE_PREFIXES = ("scale", "cov_factor")
"""Name parts that mark a guide's scale parameters: ``scale_tril_rows`` / ``scale_tril_cols``
(:class:`~pyro_razor.guides.MatrixNormalGuide`), ``scales`` (AutoNormal), ``scale`` and
``cov_factor`` (AutoDiagonalNormal, AutoLowRankMultivariateNormal), ``scale_tril``
(AutoMultivariateNormal)."""


def is_scale_parameter(name: str) -> bool:
    """Whether the param-store ``name`` is one of a guide's scale parameters (a dot-separated
    part starts with one of :data:`SCALE_PREFIXES`)."""
    return any(part.startswith(SCALE_PREFIXES) for part in name.split("."))


def make_optimizer(model: NoetherRazorModel, config: TrainConfig, total_steps: int,
                   eta_warmup_steps: int = 0):
    """Adam with per-group learning rates (theta / eta / hyper), each on the schedule of
    :func:`learning_rate_factor` (stepped by ``optimizer.step()`` after every SVI step); ``eta``
    waits ``eta_warmup_steps`` before it moves; with ``config.lr_scale`` the guide's scale
    parameters run at that rate (group ``scale``)."""
    rates = {"theta": config.lr, "eta": config.lr_eta, "hyper": config.lr_hyper,
             "scale": config.lr if config.lr_scale is None else config.lr_scale}

    def per_param(name: str) -> dict:
        group = model.param_group(name)
        if group == "theta" and config.lr_scale is not None and is_scale_parameter(name):
            group = "scale"
        return {"lr": rates[group], "betas": (0.9, 0.999), "group": group}

    def schedule(optimizer: GroupAdam) -> torch.optim.lr_scheduler.LambdaLR:
        warmup = eta_warmup_steps if optimizer.group == "eta" else 0
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: learning_rate_factor(
            t, total_steps, config.cosine_annealing, warmup))

    return pyro.optim.PyroLRScheduler(schedule, {"optimizer": GroupAdam, "optim_args": per_param})
