r"""SVI on the ELBO with empirical Bayes (paper section 4.3, eq. 8): the training loop.

The ELBO ``E_q[log p(X | theta, eta)] - KL(q || p)`` is maximised jointly over the guide's
parameters, the conserved quantities ``eta`` and (where learned) the prior variances, with
:class:`pyro.infer.SVI`, ``Trace_ELBO`` (default) or ``TraceMeanField_ELBO`` (analytic KL), and
Adam with per-group learning rates, cosine-annealed to 0 over all steps. Between steps the
closed-form prior variance (appendix D.3) and the empirical output noise (D.2) are updated when
the model uses them. :class:`TrainingStep` is one such step (the benchmark times it);
:func:`train` runs epochs of them with checkpoints (:mod:`pyro_razor.inference.checkpoints`).

All figures are reported per transition, ``/N`` with ``N = trajectories x transitions``.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import pyro
import pyro.poutine as poutine
import torch
from tqdm.auto import tqdm

from pyro_razor.inference.checkpoints import resume_checkpoint, save_checkpoint
from pyro_razor.inference.config import TrainConfig
from pyro_razor.inference.diagnostics import (
    capped_scale_layers,
    capped_scale_message,
    posterior_log_std,
)
from pyro_razor.inference.optim import make_elbo, make_optimizer
from pyro_razor.inference.step import StepRecord, TrainingDiverged, TrainingStep
from pyro_razor.models.razor import NoetherRazorModel

__all__ = [
    "StepRecord",
    "TrainResult",
    "TrainingDiverged",
    "TrainingStep",
    "make_elbo",
    "make_optimizer",
    "train",
]


@dataclass
class TrainResult:
    """What :func:`train` returns: per-epoch history, timing, and the training diagnostic of
    :func:`~pyro_razor.inference.diagnostics.capped_scale_layers` (``scale_warning``: one line,
    or ``None``)."""

    history: list[dict[str, float]] = field(default_factory=list)
    steps: int = 0
    wall_time_s: float = 0.0
    seconds_per_step: float = float("nan")
    scale_warning: str | None = None


def _check_training_data(model, states, next_states) -> None:
    model.check_data(states, next_states)
    for name, tensor in (("states", states), ("next_states", next_states)):
        if not torch.isfinite(tensor).all():
            raise ValueError(f"{name} contains NaN or inf values; clean the data first")


def train(
    model: NoetherRazorModel,
    guide,
    states: torch.Tensor,
    next_states: torch.Tensor,
    config: TrainConfig,
    *,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    warm_start: bool = False,
    progress: bool = True,
    description: str = "",
    callback: Callable[[int, dict], None] | None = None,
) -> TrainResult:
    """Maximise the ELBO over the guide, ``eta`` and hyper-parameters with SVI.

    Args:
        model: the Pyro model (its parameters must already be on the data's device/dtype).
        guide: any guide for it (``MatrixNormalGuide``, ``AutoNormal``, ``AutoDelta``, ...).
        states, next_states: ``(T, n, M)`` training transitions.
        config: optimisation settings.
        checkpoint: path of the checkpoint file (written every ``checkpoint_every`` epochs and
            at the end); with ``resume=True`` training continues from it (its training config
            must equal ``config``; the run is then bit-identical to an uninterrupted one).
        warm_start: with ``resume=True``: continue from the checkpoint's parameters, buffers,
            RNG states and history under ``config``'s (changed) settings, with a fresh
            optimiser whose schedules restart at ``config``'s learning rates and run over the
            remaining epochs (the ``eta`` warm-up over what is left of it).
        progress: show a progress bar with ``-ELBO/N``, ``NLL/N``, ``KL/N`` and train MSE.
        callback: called as ``callback(epoch, record)`` after every epoch (after its checkpoint).

    Returns:
        :class:`TrainResult` with one history record per epoch (``epoch``,
        ``neg_elbo_per_n``, ``nll_per_n``, ``kl_per_n``, ``train_mse``, ``lr``, ``seconds``).

    Under ``torchrun`` (a process group of ``R > 1`` ranks, see
    :mod:`pyro_razor.inference.distributed`) every rank calls it with the same arguments: each
    evaluates its share of every minibatch, the gradients are averaged, and rank 0 alone
    writes the checkpoint; ``R`` may differ from the run that wrote a resumed checkpoint.

    Raises:
        TrainingDiverged: the loss or a parameter became non-finite; the checkpoint file
            keeps the last good state (its epoch is ``checkpoint_epoch``).
        DistributedError: under ``torchrun``: more ranks than the smallest minibatch has
            trajectories, or a rank failed (the message names it and the kept checkpoint).
    """
    from pyro_razor.inference import distributed  # lazy: it builds on this module

    _check_training_data(model, states, next_states)
    T, n, _ = states.shape
    N = T * n
    B = config.batch_trajectories(T)
    steps_per_epoch = config.steps_per_epoch(T)
    # ELU's exp() of very negative pre-activations produces subnormal floats, which slow CPU
    # arithmetic by orders of magnitude late in training; flushing them changes no result
    # beyond 1e-38 (float32) / 1e-308 (float64).
    torch.set_flush_denormal(True)
    pyro.set_rng_seed(config.seed)
    batch_rng = torch.Generator().manual_seed(config.seed)
    step, start_epoch, history, schedule_start = _prepared_step(
        model, guide, states, next_states, config, steps_per_epoch, batch_rng, checkpoint, resume,
        warm_start)
    saved_epoch = start_epoch if resume else None

    main_rank = distributed.is_main_process()
    t0 = time.perf_counter()
    bar = tqdm(range(start_epoch, config.epochs), initial=start_epoch, total=config.epochs,
               desc=description or "train", disable=not progress or not main_rank,
               dynamic_ncols=True)
    for epoch in bar:
        epoch_start = time.perf_counter()
        order = torch.randperm(T, generator=batch_rng).to(states.device)
        try:
            records = [step(states, next_states,
                            subsample=None if B == T else order[i * B : (i + 1) * B])
                       for i in range(steps_per_epoch)]
        except (FloatingPointError, distributed.DistributedError) as exc:
            raise _stopped(exc, epoch + 1, checkpoint, saved_epoch, description) from None
        record = _epoch_record(epoch, records, N, time.perf_counter() - epoch_start)
        record.update(_schedule_and_scales(step.optimizer, config, guide, model))
        history.append(record)
        bar.set_postfix(_postfix(record), refresh=False)
        last = epoch + 1 == config.epochs
        due = config.checkpoint_every and (epoch + 1) % config.checkpoint_every == 0
        if checkpoint is not None and (last or due):
            if main_rank:
                save_checkpoint(checkpoint, model=model, guide=guide, optimizer=step.optimizer,
                                epoch=epoch + 1, history=history, config=config,
                                batch_rng=batch_rng, schedule_start=schedule_start)
            saved_epoch = epoch + 1
        if callback is not None:
            callback(epoch + 1, record)
    bar.close()
    wall = time.perf_counter() - t0
    steps_done = (config.epochs - start_epoch) * steps_per_epoch
    scale_warning = capped_scale_message(capped_scale_layers(history, steps_per_epoch))
    if scale_warning is not None and main_rank:
        warnings.warn(f"{description or 'train'}: {scale_warning}", RuntimeWarning, stacklevel=2)
    return TrainResult(history=history, steps=steps_done, wall_time_s=wall,
                       seconds_per_step=wall / steps_done if steps_done else float("nan"),
                       scale_warning=scale_warning)


def _prepared_step(model, guide, states, next_states, config: TrainConfig,
                   steps_per_epoch: int, batch_rng, checkpoint, resume: bool, warm_start: bool):
    """The SVI step of :func:`train` and where it starts: ``(step, start_epoch, history,
    schedule_start)``, from scratch or (``resume``) from ``checkpoint``, with the guide's
    parameters built and the RNG state where the interrupted run left it."""
    from pyro_razor.inference import distributed

    T = states.shape[0]
    step_class = TrainingStep
    if distributed.is_distributed():
        distributed.check_world_size(T, config)
        step_class = distributed.DistributedTrainingStep
    step = step_class(model, guide, config, config.epochs * steps_per_epoch,
                      config.eta_warmup_epochs * steps_per_epoch)
    start_epoch, history, ckpt, schedule_start = 0, [], None, 0
    if resume:
        ckpt = resume_checkpoint(checkpoint, config, model, guide, step.optimizer, batch_rng,
                                 states.device, warm_start)
        start_epoch, history = ckpt["epoch"], list(ckpt["history"])
        # A warm start restarts the schedules over the remaining epochs; a later resume of it
        # rebuilds the same schedules from the checkpoint's ``schedule_start``.
        schedule_start = start_epoch if warm_start else ckpt.get("schedule_start", 0)
        if schedule_start:
            remaining = max(config.epochs - schedule_start, 1) * steps_per_epoch
            warmup = max(config.eta_warmup_epochs - schedule_start, 0) * steps_per_epoch
            step = step_class(model, guide, config, remaining, warmup)
            if not warm_start:
                step.optimizer.set_state(ckpt["optimizer"])
    # Build the guide's parameters before (re)storing RNG state, so a resumed run's random
    # stream matches the uninterrupted run's.
    with poutine.block():
        guide(states[:1], next_states[:1])
    if ckpt is not None:
        pyro.util.set_rng_state(ckpt["rng"])
    distributed.check_same_on_every_rank((start_epoch, tuple(states.shape), asdict(config)),
                                         "the start epoch, data shape and training config")
    return step, start_epoch, history, schedule_start


def _schedule_and_scales(optimizer, config: TrainConfig, guide, model) -> dict:
    """The history's per-epoch learning rates (``lr``, ``lr_scale``) and the posterior's mean
    log standard deviation per layer (``log_std<l>``)."""
    record = {"lr": _current_lr(optimizer, config),
              "lr_scale": _current_lr(optimizer, config, "scale")}
    for l, value in enumerate(posterior_log_std(guide, model.weight_sites) or []):
        record[f"log_std{l}"] = value
    return record


def _stopped(exc: Exception, epoch: int, checkpoint, saved_epoch: int | None,
             description: str) -> Exception:
    """What ends training when a step of ``epoch`` fails with ``exc``: a divergence
    (``FloatingPointError``, under ``torchrun`` raised by every rank together) becomes
    :class:`TrainingDiverged`, a rank's failure under ``torchrun`` a one-line
    ``DistributedError`` that also names the kept checkpoint."""
    from pyro_razor.inference import distributed

    if isinstance(exc, FloatingPointError):
        diverged = TrainingDiverged(epoch, str(exc), saved_epoch)
        return distributed.mark_every_rank(diverged) if distributed.is_distributed() else diverged
    return distributed.DistributedError(
        distributed.failure_message(exc, description or "train", epoch, checkpoint, saved_epoch),
        all_ranks=distributed.raised_on_every_rank(exc),
    )


def _epoch_record(epoch: int, records: list[StepRecord], N: int, seconds: float) -> dict:
    steps = len(records)
    record = {
        "epoch": epoch + 1,
        "neg_elbo_per_n": sum(r.loss for r in records) / steps / N,
        "nll_per_n": sum(r.nll for r in records) / steps / N,
        "train_mse": sum(r.mse for r in records) / steps,
        "seconds": seconds,
    }
    record["kl_per_n"] = record["neg_elbo_per_n"] - record["nll_per_n"]
    return record


def _postfix(record: dict) -> dict[str, str]:
    return {
        "-ELBO/N": f"{record['neg_elbo_per_n']:.3f}",
        "NLL/N": f"{record['nll_per_n']:.3f}",
        "KL/N": f"{record['kl_per_n']:.3f}",
        "MSE": f"{record['train_mse']:.2e}",
    }


def _current_lr(optimizer, config: TrainConfig, group: str = "theta") -> float:
    """The learning rate of ``group`` (``"theta"`` or ``"scale"``) now, on its schedule, for
    the history (the scale parameters run at theta's rate unless ``lr_scale`` is set)."""
    base = config.lr if group == "theta" or config.lr_scale is None else config.lr_scale
    wanted = group if group == "theta" or config.lr_scale is not None else "theta"
    for scheduler in optimizer.optim_objs.values():
        if scheduler.optimizer.group == wanted:
            return float(scheduler.get_last_lr()[0]) / scheduler.base_lrs[0] * base
    return base
