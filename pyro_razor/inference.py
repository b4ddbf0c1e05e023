r"""Training and evaluation: SVI on the ELBO with empirical Bayes (paper section 4.3, eq. 8).

The ELBO ``E_q[log p(X | theta, eta)] - KL(q || p)`` is maximised jointly over the guide's
parameters, the conserved quantities ``eta`` and (where learned) the prior variances, with
:class:`pyro.infer.SVI`, ``Trace_ELBO`` (default) or ``TraceMeanField_ELBO`` (analytic KL), and
Adam with per-group learning rates, cosine-annealed to 0 over all steps. Between steps the
closed-form prior variance (appendix D.3) and the empirical output noise (D.2) are updated when
the model uses them. Checkpoints hold the Pyro param store, the optimiser and scheduler state,
every RNG state and the model's buffers, and are written atomically: a run resumed from a
checkpoint reproduces the uninterrupted run exactly (same seed and device).

All figures are reported per transition, ``/N`` with ``N = trajectories x transitions``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO
from pyro.infer.autoguide import AutoNormal
from tqdm.auto import tqdm

from pyro_razor.atomic import atomic_path
from pyro_razor.models.priors import ClosedFormVariancePrior
from pyro_razor.models.razor import MAX_PLATE_NESTING, NoetherRazorModel

__all__ = [
    "CHECKPOINT_FORMAT",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "kl_divergence_estimate",
    "load_checkpoint",
    "make_elbo",
    "make_optimizer",
    "posterior_second_moments",
    "save_checkpoint",
    "train",
]

CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings.

    Attributes:
        epochs: passes over the training trajectories.
        batch_size: trajectories per step (``None``: full batch).
        num_particles: weight samples per step (Monte-Carlo samples of ``E_q``).
        vectorize_particles: draw the particles in one batched computation.
        elbo: ``"trace"`` (``Trace_ELBO``) or ``"meanfield"`` (``TraceMeanField_ELBO``).
        lr: Adam learning rate of the guide (theta) parameters.
        lr_eta: learning rate of the conserved quantities ``eta``.
        lr_hyper: learning rate of learned prior variances.
        cosine_annealing: anneal every learning rate to 0 over all steps.
        checkpoint_every: write a checkpoint every this many epochs (0: only at the end).
        seed: seeds Pyro/torch RNGs (weights' init, tau, particles) and the minibatch order.
    """

    epochs: int = 2000
    batch_size: int | None = None
    num_particles: int = 1
    vectorize_particles: bool = True
    elbo: Literal["trace", "meanfield"] = "trace"
    lr: float = 1e-3
    lr_eta: float = 1e-2
    lr_hyper: float = 1e-2
    cosine_annealing: bool = True
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
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")


@dataclass
class TrainResult:
    """What :func:`train` returns: per-epoch history and timing."""

    history: list[dict[str, float]] = field(default_factory=list)
    steps: int = 0
    wall_time_s: float = 0.0
    seconds_per_step: float = float("nan")


def make_elbo(config: TrainConfig):
    """The ELBO estimator of ``config`` with the model's plate nesting."""
    cls = Trace_ELBO if config.elbo == "trace" else TraceMeanField_ELBO
    return cls(
        num_particles=config.num_particles,
        vectorize_particles=config.vectorize_particles and config.num_particles > 1,
        max_plate_nesting=MAX_PLATE_NESTING,
    )


def make_optimizer(model: NoetherRazorModel, config: TrainConfig, total_steps: int):
    """Adam with per-group learning rates (theta / eta / hyper), optionally cosine-annealed."""
    rates = {"theta": config.lr, "eta": config.lr_eta, "hyper": config.lr_hyper}

    def per_param(name: str) -> dict:
        return {"lr": rates[model.param_group(name)], "betas": (0.9, 0.999)}

    if config.cosine_annealing:
        return pyro.optim.CosineAnnealingLR(
            {
                "optimizer": torch.optim.Adam,
                "optim_args": per_param,
                "T_max": total_steps,
                "eta_min": 0.0,
            }
        )
    return pyro.optim.Adam(per_param)


@torch.no_grad()
def posterior_second_moments(guide, sites: Sequence[str], *args, num_samples: int = 32):
    """``E_q |theta_l|^2`` for each site: exact for the matrix-normal guide and AutoNormal,
    Monte Carlo (``num_samples`` guide draws with the model's ``*args``) otherwise."""
    if hasattr(guide, "second_moment"):
        return [guide.second_moment(s) for s in sites]
    if isinstance(guide, AutoNormal):
        out = []
        for s in sites:
            loc, scale = guide._get_loc_and_scale(s)
            out.append((loc**2 + scale**2).sum())
        return out
    totals = [0.0] * len(sites)
    for _ in range(num_samples):
        values = guide(*args)
        for i, s in enumerate(sites):
            totals[i] = totals[i] + (values[s] ** 2).sum() / num_samples
    return totals


def _trace_pair(model, guide, *args, **kwargs):
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    return guide_trace, model_trace


@torch.no_grad()
def kl_divergence_estimate(
    model: NoetherRazorModel, guide, states: torch.Tensor, num_samples: int = 16
) -> float:
    """``KL(q || p)`` over the weights: closed form where registered (e.g. the matrix-normal
    guide against the Gaussian prior), else the Monte-Carlo mean of ``log q - log p``."""
    args = (states[:1],)
    guide_trace, model_trace = _trace_pair(model, guide, *args)
    try:
        return float(
            sum(
                torch.distributions.kl_divergence(
                    guide_trace.nodes[s]["fn"], model_trace.nodes[s]["fn"]
                ).sum()
                for s in model.weight_sites
            )
        )
    except NotImplementedError:
        pass
    total = 0.0
    for _ in range(num_samples):
        guide_trace, model_trace = _trace_pair(model, guide, *args)
        guide_trace.compute_log_prob()
        model_trace.compute_log_prob()
        log_q = sum(
            site["log_prob_sum"] for site in guide_trace.nodes.values() if site["type"] == "sample"
        )
        log_p = sum(model_trace.nodes[s]["log_prob_sum"] for s in model.weight_sites)
        total += float(log_q - log_p) / num_samples
    return total


@torch.no_grad()
def evaluate(
    model: NoetherRazorModel,
    guide,
    states: torch.Tensor,
    next_states: torch.Tensor,
    num_samples: int = 8,
    tau_samples: int | None = None,
    chunk_size: int = 64,
) -> dict[str, float]:
    """Predictive metrics on transitions ``(T, n, M)``.

    Draws ``num_samples`` weight samples from the guide; for each, predicts every transition
    (in chunks of ``chunk_size`` trajectories, same weights) with ``tau_samples`` symmetrisation
    samples (default: the model's). Returns ``nll_per_n`` (expected negative log-likelihood
    ``-E_q log p(x_{t+dt} | x_t, theta)`` per transition, summed over phase coordinates) and
    ``mse`` (mean squared error of the predictive mean, averaged over coordinates).
    """
    T, n, M = states.shape
    N = T * n
    mean_sum = torch.zeros_like(next_states)
    nll = 0.0
    with model.evaluation(tau_samples):
        for _ in range(num_samples):
            guide_trace = poutine.trace(guide).get_trace(states[:1])
            replayed = poutine.replay(model, trace=guide_trace)
            for start in range(0, T, chunk_size):
                idx = torch.arange(start, min(start + chunk_size, T), device=states.device)
                trace = poutine.trace(replayed).get_trace(states, next_states, subsample=idx)
                fn = trace.nodes["obs"]["fn"]
                obs = next_states[idx]
                nll -= float(fn.log_prob(obs).sum())
                mean_sum[idx] += fn.base_dist.loc.reshape(obs.shape)
    mean = mean_sum / num_samples
    return {
        "nll_per_n": nll / num_samples / N,
        "mse": float(((mean - next_states) ** 2).mean()),
    }


def _buffers(*modules) -> dict[str, torch.Tensor]:
    return {
        f"{i}.{name}": buf.detach().clone()
        for i, module in enumerate(modules)
        for name, buf in module.named_buffers()
    }


def save_checkpoint(path, *, model, guide, optimizer, epoch, history, config, batch_rng) -> None:
    """Write a resumable checkpoint atomically (temporary file + ``os.replace``)."""
    state = {
        "format": CHECKPOINT_FORMAT,
        "epoch": epoch,
        "history": history,
        "config": asdict(config),
        "param_store": pyro.get_param_store().get_state(),
        "optimizer": optimizer.get_state(),
        "rng": pyro.util.get_rng_state(),
        "batch_rng": batch_rng.get_state(),
        "buffers": _buffers(model, guide),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`, with clear errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - report any unreadable file the same way
        raise ValueError(f"checkpoint {path} is unreadable ({exc}); delete it to restart") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a pyro-razor checkpoint (format {CHECKPOINT_FORMAT})")
    return ckpt


def _restore(ckpt: dict, model, guide, optimizer, batch_rng, device) -> None:
    store = pyro.get_param_store()
    state = ckpt["param_store"]
    state = {
        "params": {k: v.to(device) for k, v in state["params"].items()},
        "constraints": state["constraints"],
    }
    store.set_state(state)
    optimizer.set_state(ckpt["optimizer"])
    current = dict(_buffers(model, guide))
    for i, module in enumerate((model, guide)):
        for name, buf in module.named_buffers():
            key = f"{i}.{name}"
            if key in ckpt["buffers"] and key in current:
                buf.copy_(ckpt["buffers"][key].to(buf))
    batch_rng.set_state(ckpt["batch_rng"])


def train(
    model: NoetherRazorModel,
    guide,
    states: torch.Tensor,
    next_states: torch.Tensor,
    config: TrainConfig,
    *,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
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
            at the end); with ``resume=True`` training continues from it.
        progress: show a progress bar with ``-ELBO/N``, ``NLL/N``, ``KL/N`` and train MSE.
        callback: called as ``callback(epoch, record)`` after every epoch (after its checkpoint).

    Returns:
        :class:`TrainResult` with one history record per epoch (``epoch``,
        ``neg_elbo_per_n``, ``nll_per_n``, ``kl_per_n``, ``train_mse``, ``lr``, ``seconds``).
    """
    model._check_data(states, next_states)
    for name, tensor in (("states", states), ("next_states", next_states)):
        if not torch.isfinite(tensor).all():
            raise ValueError(f"{name} contains NaN or inf values; clean the data first")
    T, n, _ = states.shape
    N = T * n
    B = T if config.batch_size is None else min(config.batch_size, T)
    steps_per_epoch = math.ceil(T / B)
    total_steps = config.epochs * steps_per_epoch
    device = states.device

    # ELU's exp() of very negative pre-activations produces subnormal floats, which slow CPU
    # arithmetic by orders of magnitude late in training; flushing them changes no result
    # beyond 1e-38 (float32) / 1e-308 (float64).
    torch.set_flush_denormal(True)
    pyro.set_rng_seed(config.seed)
    batch_rng = torch.Generator().manual_seed(config.seed)
    optimizer = make_optimizer(model, config, total_steps)
    elbo = make_elbo(config)
    svi = SVI(model, guide, optimizer, loss=elbo)
    closed_form_prior = isinstance(model.hamiltonian_net.prior, ClosedFormVariancePrior)

    start_epoch, history = 0, []
    if resume:
        if checkpoint is None:
            raise ValueError("resume=True needs a checkpoint path")
        ckpt = load_checkpoint(checkpoint)
        if ckpt["config"] != asdict(config):
            diff = sorted(k for k in asdict(config) if ckpt["config"].get(k) != asdict(config)[k])
            raise ValueError(
                f"cannot resume from {checkpoint}: its training config differs in {diff}; "
                "resume with the same settings or start a new run"
            )
        _restore(ckpt, model, guide, optimizer, batch_rng, device)
        start_epoch, history = ckpt["epoch"], list(ckpt["history"])
    # Build the guide's parameters before (re)storing RNG state, so a resumed run's random
    # stream matches the uninterrupted run's.
    with poutine.block():
        guide(states[:1], next_states[:1])
    if resume:
        pyro.util.set_rng_state(ckpt["rng"])

    t0 = time.perf_counter()
    bar = tqdm(
        range(start_epoch, config.epochs),
        initial=start_epoch,
        total=config.epochs,
        desc=description or "train",
        disable=not progress,
        dynamic_ncols=True,
    )
    steps_done = 0
    for epoch in bar:
        epoch_start = time.perf_counter()
        order = torch.randperm(T, generator=batch_rng).to(device)
        sums = {"loss": 0.0, "nll": 0.0, "mse": 0.0}
        for i in range(steps_per_epoch):
            idx = order[i * B : (i + 1) * B]
            subsample = None if B == T else idx
            loss = svi.step(states, next_states, subsample=subsample)
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"the loss became {loss} at epoch {epoch}; lower the learning rates or the "
                    "integrator step"
                )
            if config.cosine_annealing:
                optimizer.step()  # advance every parameter's cosine schedule
            diag = model.last_diagnostics
            if closed_form_prior:
                model.hamiltonian_net.prior.update(
                    posterior_second_moments(guide, model.weight_sites, states[:1])
                )
            model.noise.update(torch.tensor(diag["mse"]))
            sums["loss"] += loss
            sums["nll"] += diag["nll"]
            sums["mse"] += diag["mse"]
            steps_done += 1
        record = {
            "epoch": epoch + 1,
            "neg_elbo_per_n": sums["loss"] / steps_per_epoch / N,
            "nll_per_n": sums["nll"] / steps_per_epoch / N,
            "train_mse": sums["mse"] / steps_per_epoch,
            "seconds": time.perf_counter() - epoch_start,
        }
        record["kl_per_n"] = record["neg_elbo_per_n"] - record["nll_per_n"]
        record["lr"] = _current_lr(optimizer, config)
        history.append(record)
        bar.set_postfix(
            {
                "-ELBO/N": f"{record['neg_elbo_per_n']:.3f}",
                "NLL/N": f"{record['nll_per_n']:.3f}",
                "KL/N": f"{record['kl_per_n']:.3f}",
                "MSE": f"{record['train_mse']:.2e}",
            },
            refresh=False,
        )
        last = epoch + 1 == config.epochs
        due = config.checkpoint_every and (epoch + 1) % config.checkpoint_every == 0
        if checkpoint is not None and (last or due):
            save_checkpoint(
                checkpoint,
                model=model,
                guide=guide,
                optimizer=optimizer,
                epoch=epoch + 1,
                history=history,
                config=config,
                batch_rng=batch_rng,
            )
        if callback is not None:
            callback(epoch + 1, record)
    bar.close()
    wall = time.perf_counter() - t0
    return TrainResult(
        history=history,
        steps=steps_done,
        wall_time_s=wall,
        seconds_per_step=wall / steps_done if steps_done else float("nan"),
    )


def _current_lr(optimizer, config: TrainConfig) -> float:
    """The theta learning rate now (cosine schedule), for the history."""
    if not config.cosine_annealing:
        return config.lr
    for obj in optimizer.optim_objs.values():
        return float(obj.get_last_lr()[0]) / obj.base_lrs[0] * config.lr
    return config.lr
