r"""One SVI step with the empirical-Bayes updates that follow it, and how a diverged step is
told apart from a bug.

:class:`TrainingStep` runs ``svi.step`` on a minibatch, advances every learning-rate schedule,
sets the closed-form prior variances (appendix D.3) from the guide's second moments and
updates the output noise (appendix D.2) from the step's residuals, which it reads through the
:class:`ObservationRecorder` poutine (the model keeps no side channel).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pyro
import torch
from pyro.infer import SVI
from pyro.poutine.messenger import Messenger

from pyro_razor.inference.config import TrainConfig
from pyro_razor.inference.optim import make_elbo, make_optimizer
from pyro_razor.inference.posterior import posterior_second_moments
from pyro_razor.models.likelihood import OBSERVATION_SITE
from pyro_razor.models.priors import ClosedFormVariancePrior
from pyro_razor.models.razor import NoetherRazorModel

__all__ = ["ObservationRecorder", "StepRecord", "TrainingDiverged", "TrainingStep"]


@dataclass(frozen=True)
class StepRecord:
    """One SVI step: the loss (``-ELBO`` estimate for the full data set), the NLL estimate for
    the full data set and the mean squared residual of the minibatch."""

    loss: float
    nll: float
    mse: float


class TrainingDiverged(FloatingPointError):
    """Training diverged: the loss, a parameter or a prediction became non-finite.

    :func:`train` raises it before writing any checkpoint of the diverged state, so the file
    keeps the last good one.

    Attributes:
        epoch: the (1-based) epoch in which it happened.
        reason: what became non-finite, one line.
        checkpoint_epoch: the epoch of the last good checkpoint (kept), or ``None`` if none was
            written (or loaded on resume) yet.
    """

    def __init__(self, epoch: int, reason: str, checkpoint_epoch: int | None) -> None:
        self.epoch, self.reason, self.checkpoint_epoch = epoch, reason, checkpoint_epoch
        super().__init__(f"epoch {epoch}: {reason}")


_TORCH_INVALID = re.compile(r"Expected parameter (\w+) .*?of distribution (\w+)")


def _divergence_reason(exc: ValueError) -> str | None:
    """What became non-finite, if ``exc`` (raised inside an SVI step) comes from an invalid
    parameter, a distribution handed invalid values or the integrator a non-finite state;
    ``None`` for other errors."""
    invalid = _invalid_parameter()
    if invalid is not None:
        return f"parameter {invalid!r} became non-finite or left its constraint"
    text = str(exc)
    found = _TORCH_INVALID.search(text)
    if found and "invalid values" in text:
        return f"the {found.group(1)} of a {found.group(2)} distribution became invalid"
    if "NaN or inf" in text or "must be finite" in text:
        return f"a value became non-finite ({text.splitlines()[0][:160]})"
    return None


def _invalid_parameter() -> str | None:
    """The first param-store entry that is non-finite or outside its constraint, or ``None``."""
    store = pyro.get_param_store()
    constraints = store.get_state()["constraints"]
    with torch.no_grad():
        for name, value in store.items():
            constraint = constraints[name]
            if not bool(torch.isfinite(value).all()) or not bool(constraint.check(value).all()):
                return name
    return None


class ObservationRecorder(Messenger):
    """Keeps the observed ``"obs"`` sites of the model runs inside its context (a poutine).

    Each entry is ``(fn, value, scale)``: the likelihood's distribution, the observed next
    states and the subsampling scale ``T / B`` of the ``"trajectories"`` plate.
    """

    def __init__(self) -> None:
        super().__init__()
        self.sites: list[tuple] = []

    def _pyro_post_sample(self, msg) -> None:
        if msg["name"] == OBSERVATION_SITE and msg["is_observed"]:
            self.sites.append((msg["fn"], msg["value"], float(msg["scale"])))


BLOW_UP_RATIO = 1e6
"""A step diverges when its mean squared residual exceeds this multiple of the data's mean
square: predictions a thousand times the data's size are no fit that training recovers from,
even while they are still finite (a 3-body run at ``lr_eta = 0.1`` reached NLL/N 1.6e25)."""


def _check_blow_up(mse: float, states: torch.Tensor) -> None:
    """``FloatingPointError`` if the predictions blew up (:data:`BLOW_UP_RATIO`)."""
    scale = float(states.detach().square().mean())
    if scale > 0 and mse > BLOW_UP_RATIO * scale:
        raise FloatingPointError(
            f"the predictions blew up: mean squared residual {mse:.3g} is more than "
            f"{BLOW_UP_RATIO:g}x the data's mean square {scale:.3g}"
        )


class TrainingStep:
    """One SVI step with the empirical-Bayes updates that follow it.

    ``step(states, next_states, subsample)`` runs ``svi.step``, advances the cosine schedule,
    sets the closed-form prior variances (appendix D.3) and updates the output noise (D.2)
    from the step's residuals, and returns a :class:`StepRecord`. It raises
    ``FloatingPointError`` (one line: what became non-finite) when the step diverges: the
    loss is not finite, a parameter is non-finite or outside its constraint afterwards, a
    distribution or the integrator was handed non-finite values during the step, or the
    predictions blew up while finite (:data:`BLOW_UP_RATIO`).

    Args:
        model, guide: the Pyro model and any guide for it.
        config: the optimisation settings.
        total_steps: length of the cosine schedule.
        eta_warmup_steps: steps during which ``eta``'s learning rate is 0.
    """

    def __init__(self, model: NoetherRazorModel, guide, config: TrainConfig, total_steps: int,
                 eta_warmup_steps: int = 0):
        self.model, self.guide, self.config = model, guide, config
        self.optimizer = make_optimizer(model, config, total_steps, eta_warmup_steps)
        self.recorder = ObservationRecorder()
        self.svi = SVI(self.recorder(model), guide, self.optimizer, loss=make_elbo(config))
        self.closed_form_prior = isinstance(model.hamiltonian_net.prior, ClosedFormVariancePrior)

    def __call__(self, states, next_states, subsample=None) -> StepRecord:
        self.recorder.sites.clear()
        try:
            loss = self.svi.step(states, next_states, subsample=subsample)
        except ValueError as exc:
            reason = _divergence_reason(exc)
            if reason is None:
                raise
            raise FloatingPointError(reason) from None
        if not math.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss}")
        invalid = _invalid_parameter()
        if invalid is not None:
            raise FloatingPointError(
                f"parameter {invalid!r} became non-finite or left its constraint"
            )
        self.optimizer.step()  # advance every parameter's learning-rate schedule
        nll, mse = self._fit_statistics()
        _check_blow_up(mse, states)
        if self.closed_form_prior:
            self.model.hamiltonian_net.prior.update(
                posterior_second_moments(self.guide, self.model.weight_sites, states[:1])
            )
        self.model.noise.update(torch.tensor(mse))
        return StepRecord(loss=loss, nll=nll, mse=mse)

    @torch.no_grad()
    def _fit_statistics(self) -> tuple[float, float]:
        """Full-data NLL estimate and mean squared residual, averaged over the model runs."""
        nll = mse = 0.0
        likelihood = self.model.likelihood
        for fn, obs, scale in self.recorder.sites:
            mean = fn.base_dist.loc.detach()
            log_lik = likelihood.log_likelihood(mean, obs)  # (*particles, B, n)
            nll -= float(log_lik.sum((-2, -1)).mean()) * scale
            mse += float((likelihood.residuals(mean, obs) ** 2).mean())
        runs = len(self.recorder.sites)
        return nll / runs, mse / runs
