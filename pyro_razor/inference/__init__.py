"""Inference: SVI training, posterior draws, evaluation, predictive draws, rollouts, checkpoints.

- :mod:`.config`: :class:`TrainConfig`, the optimisation settings.
- :mod:`.training`: :func:`train` and :class:`TrainingStep` (one SVI step with the
  empirical-Bayes updates), ELBO and optimiser factories.
- :mod:`.checkpoints`: one atomic save, load and restore of a run's full state.
- :mod:`.posterior`: weight draws from the guide or the prior and the model replayed against
  them — the one loop behind evaluation, predictive checks and rollouts.
- :mod:`.evaluation`: predictive NLL/MSE and the KL term of the paper's tables.
- :mod:`.predictive`: one-step posterior predictive draws.
- :mod:`.rollouts`: the learned Hamiltonian's flow and multi-step predictive rollouts.
"""

from pyro_razor.inference.checkpoints import (
    CHECKPOINT_FORMAT,
    load_checkpoint,
    restore_checkpoint,
    save_checkpoint,
)
from pyro_razor.inference.config import TrainConfig
from pyro_razor.inference.evaluation import evaluate, kl_divergence_estimate
from pyro_razor.inference.posterior import (
    draw_weights,
    posterior_second_moments,
    replay_transitions,
    weight_trace,
)
from pyro_razor.inference.predictive import RngScope, posterior_predictive
from pyro_razor.inference.rollouts import (
    hamiltonian_energy,
    hamiltonian_rollout,
    posterior_hamiltonian,
    predictive_rollout,
)
from pyro_razor.inference.training import (
    StepRecord,
    TrainingStep,
    TrainResult,
    make_elbo,
    make_optimizer,
    train,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "RngScope",
    "StepRecord",
    "TrainConfig",
    "TrainResult",
    "TrainingStep",
    "draw_weights",
    "evaluate",
    "hamiltonian_energy",
    "hamiltonian_rollout",
    "kl_divergence_estimate",
    "load_checkpoint",
    "make_elbo",
    "make_optimizer",
    "posterior_hamiltonian",
    "posterior_predictive",
    "posterior_second_moments",
    "predictive_rollout",
    "replay_transitions",
    "restore_checkpoint",
    "save_checkpoint",
    "train",
    "weight_trace",
]
