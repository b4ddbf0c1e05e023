r"""Data-parallel SVI over processes, GPUs and nodes (``torchrun``, ``torch.distributed``).

The likelihood is a plate over trajectories, so the observed log-likelihood of a minibatch of
``B`` trajectories is a sum over them. With ``R`` ranks, rank ``r`` evaluates a disjoint share
of ``b_r`` of every global minibatch (:func:`local_share`, ``sum_r b_r = B``) and its loss is

.. math:: L_r = \mathrm{KL}(q \,\|\, p) - \frac{R\,T}{B} \sum_{i \in \mathrm{share}_r}
          \log p(X_i \mid \theta, \eta)

(the ``"trajectories"`` plate scales the share by ``T / b_r`` and :class:`ShareScale` by
``R b_r / B``), so the mean over ranks ``1/R sum_r L_r`` is the single-process loss
``KL - T/B sum_{i in minibatch} log p(X_i)``, whatever the split. Its gradient, averaged over
the ranks by :class:`torch.nn.parallel.DistributedDataParallel` around Pyro's
``elbo(model, guide)`` module, is the single-process gradient: the optimisation is the
single-process one on the same global minibatches.

Consistency across ranks: every rank uses the run's seed, so the minibatch order, the weight
samples ``theta ~ q`` and the symmetry times ``tau`` (neither depends on the data) are the same
on every rank; the parameters start equal (DDP broadcasts rank 0's) and receive the same
averaged gradients and Adam updates; the closed-form prior update reads the (equal) guide; the
loss, NLL and mean squared residual are summed over the ranks (one all-reduce), so the
empirical noise update sees the whole minibatch's residuals.

Failures: every step ends its forward pass with a collective failure flag, so a rank whose
forward fails (a non-finite loss or value, out of memory, any exception) makes every rank raise
the same one-line error together, before any gradient is exchanged; a rank that dies (killed,
or failing inside the backward pass) makes ``torchrun`` end the group, and the process-group
timeout (:data:`TIMEOUT_ENV`) bounds any wait. Rank 0 alone writes checkpoints and results.

Backends: NCCL on GPUs (rank ``LOCAL_RANK`` of a node uses GPU ``LOCAL_RANK``), gloo on CPUs.
Without ``torchrun`` (``WORLD_SIZE`` unset or 1) nothing here is used.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from contextlib import contextmanager
from datetime import timedelta
from typing import TypeVar

import pyro
import pyro.poutine as poutine
import torch
import torch.distributed as dist
from pyro.infer.util import zero_grads
from pyro.poutine.messenger import Messenger
from torch.nn.parallel import DistributedDataParallel

from pyro_razor.inference.config import TrainConfig
from pyro_razor.inference.optim import make_elbo
from pyro_razor.inference.posterior import posterior_second_moments
from pyro_razor.inference.step import (
    StepRecord,
    TrainingStep,
    _divergence_reason,
    _invalid_parameter,
)
from pyro_razor.models.likelihood import OBSERVATION_SITE

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "TIMEOUT_ENV",
    "DistributedError",
    "DistributedTrainingStep",
    "ShareScale",
    "check_same_on_every_rank",
    "check_world_size",
    "collective",
    "failure_message",
    "gather_failures",
    "init_from_env",
    "is_distributed",
    "is_main_process",
    "launched_rank",
    "launched_world_size",
    "local_share",
    "mark_every_rank",
    "on_every_rank",
    "raised_on_every_rank",
    "rank",
    "shutdown",
    "world_size",
]

TIMEOUT_ENV = "PYRO_RAZOR_DIST_TIMEOUT"
"""Environment variable: seconds any collective may wait for the other ranks (default
:data:`DEFAULT_TIMEOUT_S`); ranks wait while rank 0 evaluates a trained variant, so it must
exceed the evaluation's time."""

DEFAULT_TIMEOUT_S = 1800.0

_ALL_RANKS = "_pyro_razor_raised_on_every_rank"

R = TypeVar("R")


class DistributedError(RuntimeError):
    """A multi-process run that cannot go on; the message is one line.

    ``all_ranks``: every rank raised it together (rank 0 reports it, the others stay quiet).
    """

    def __init__(self, message: str, all_ranks: bool = False) -> None:
        super().__init__(message)
        if all_ranks:
            mark_every_rank(self)


def mark_every_rank(exc: BaseException) -> BaseException:
    """Mark ``exc`` as raised by every rank together (so only rank 0 prints it)."""
    setattr(exc, _ALL_RANKS, True)
    return exc


def raised_on_every_rank(exc: BaseException) -> bool:
    """Whether ``exc`` or an exception it was raised from is marked by :func:`mark_every_rank`."""
    while exc is not None:
        if getattr(exc, _ALL_RANKS, False):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


# ----------------------------------------------------------------------------- process group


def launched_world_size() -> int:
    """``WORLD_SIZE`` as ``torchrun`` sets it (1 without ``torchrun``)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched_rank() -> int:
    """``RANK`` as ``torchrun`` sets it (0 without ``torchrun``), known before and after the
    process group runs."""
    return int(os.environ.get("RANK", "0")) if launched_world_size() > 1 else 0


def is_distributed() -> bool:
    """Whether a process group of more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process' rank (0 outside a process group)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """``R``, the number of ranks (1 outside a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Rank 0, the one that writes files (every process outside a process group)."""
    return rank() == 0


def _timeout() -> timedelta:
    text = os.environ.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT_S))
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not (seconds > 0 and math.isfinite(seconds)):
        raise DistributedError(f"{TIMEOUT_ENV} must be a positive number of seconds, got {text!r}")
    return timedelta(seconds=seconds)


def init_from_env(device: str) -> str:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE > 1``); return this rank's
    device: ``cuda`` (any index) becomes ``cuda:LOCAL_RANK`` with the NCCL backend, ``cpu``
    uses gloo. Without ``torchrun`` (or with one process) nothing happens and ``device`` is
    returned unchanged.

    Raises:
        DistributedError: a device type other than ``cpu``/``cuda``, more processes on a node
            than GPUs, or a bad :data:`TIMEOUT_ENV`.
    """
    if launched_world_size() <= 1 or is_distributed():
        return device
    kind = torch.device(device).type
    if kind == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if local_rank >= torch.cuda.device_count():
            raise DistributedError(
                f"local rank {local_rank} needs GPU {local_rank} but this node sees "
                f"{torch.cuda.device_count()}; start at most that many processes per node"
            )
        torch.cuda.set_device(local_rank)
        backend, device = "nccl", f"cuda:{local_rank}"
    elif kind == "cpu":
        backend = "gloo"
    else:
        raise DistributedError(
            f"multi-process training runs on cpu (gloo) or cuda (NCCL), not on {kind!r}"
        )
    dist.init_process_group(backend, timeout=_timeout())
    return device


def shutdown() -> None:
    """Leave the process group, if one is running."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@contextmanager
def collective(what: str):
    """Turn an error of the collectives inside the block (a rank that died or hangs past the
    timeout) into a one-line :class:`DistributedError` on the ranks that are left."""
    try:
        yield
    except RuntimeError as exc:
        raise DistributedError(
            f"{what} failed on rank {rank()} ({_one_line(exc)}); if another rank died (killed, "
            "out of memory) or hangs, torchrun's log names it"
        ) from exc


def gather_failures(failure: object | None) -> list | None:
    """Collective failure flag: every rank passes its failure (``None``: none); returns
    ``None`` when no rank failed, else every rank's failure (same list on every rank)."""
    flag = torch.tensor([float(failure is not None)], device=_collective_device())
    with collective("the collective failure check"):
        dist.all_reduce(flag)
        if flag.item() == 0:
            return None
        failures = [None] * dist.get_world_size()
        dist.all_gather_object(failures, failure)
    return failures


def _first_failure(failures: list) -> tuple[int, object]:
    return next((r, f) for r, f in enumerate(failures) if f is not None)


def _one_line(exc: BaseException) -> str:
    """``"Type: first line of the message"`` (Pyro appends trace shapes on further lines)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:300]}" if lines else type(exc).__name__


def on_every_rank(check: Callable[[], R]) -> R:
    """Run ``check()`` on every rank and agree on its outcome (a barrier): if it raised on any
    rank, every rank raises, marked for rank 0 to report: a rank that failed raises its own
    error, the others a :class:`DistributedError` naming the first failing rank. Outside a
    process group this is ``check()``."""
    if not is_distributed():
        return check()
    error, result = None, None
    try:
        result = check()
    except Exception as exc:  # noqa: BLE001 - every failure is shared with the other ranks
        error = exc
    failures = gather_failures(None if error is None else _one_line(error))
    if failures is None:
        return result
    if error is not None:
        raise mark_every_rank(error)
    first, message = _first_failure(failures)
    raise DistributedError(f"rank {first}: {message}", all_ranks=True)


def check_same_on_every_rank(value: object, what: str) -> None:
    """Refuse to go on unless every rank passes an equal ``value`` (collective)."""
    if not is_distributed():
        return
    values = [None] * world_size()
    with collective("comparing the ranks' start"):
        dist.all_gather_object(values, value)
    differ = [r for r, v in enumerate(values) if v != values[0]]
    if differ:
        raise DistributedError(
            f"the ranks disagree on {what}: rank 0 has {repr(values[0])[:200]}, rank "
            f"{differ[0]} has {repr(values[differ[0]])[:200]}; every rank must read the same "
            "config and, on resume, the same checkpoint (the output directory must be on a file "
            "system every node shares)",
            all_ranks=True,
        )


# ----------------------------------------------------------------------------- minibatch shares


def check_world_size(num_trajectories: int, config: TrainConfig, ranks: int | None = None) -> None:
    """Refuse more ranks than the smallest minibatch has trajectories (every rank needs at least
    one trajectory of every minibatch; the last minibatch of an epoch holds
    ``T - (steps - 1) B``).

    Raises:
        DistributedError: one line, the same on every rank.
    """
    ranks = world_size() if ranks is None else ranks
    T = num_trajectories
    B = config.batch_trajectories(T)
    smallest = T - (config.steps_per_epoch(T) - 1) * B
    if ranks <= smallest:
        return
    hint = "" if smallest == B else f", or a train.batch_size that divides {T}"
    holds = f"{smallest} trajector{'y' if smallest == 1 else 'ies'}"
    raise DistributedError(
        f"{ranks} processes, but the smallest minibatch holds {holds} ({T} training "
        f"trajectories in minibatches of {B}) and every process needs at least one: start at "
        f"most {smallest} process{'' if smallest == 1 else 'es'}{hint}",
        all_ranks=True,
    )


def local_share(idx: torch.Tensor, this_rank: int | None = None,
                ranks: int | None = None) -> torch.Tensor:
    """This rank's share of the ``(B,)`` trajectory indices of a global minibatch: the
    ``this_rank``-th of ``ranks`` contiguous pieces (sizes differ by at most one)."""
    this_rank = rank() if this_rank is None else this_rank
    ranks = world_size() if ranks is None else ranks
    return torch.tensor_split(idx, ranks)[this_rank]


class ShareScale(Messenger):
    """Multiply the scale of the observed ``"obs"`` site by ``factor = R b_r / B`` (a poutine),
    so that the plate's ``T / b_r`` becomes ``R T / B`` and the ranks' losses average to the
    single-process loss. Other sites (the weights' KL) keep their scale."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = float(factor)

    def _process_message(self, msg) -> None:
        if msg["name"] == OBSERVATION_SITE:
            msg["scale"] = self.factor * msg["scale"]


# ----------------------------------------------------------------------------- the step


class DistributedTrainingStep(TrainingStep):
    """:class:`TrainingStep` on this rank's share of every minibatch, gradients averaged over
    the ranks by DDP around Pyro's ``elbo(model, guide)`` module.

    ``step(states, next_states, subsample)`` takes the global minibatch ``subsample`` (``(B,)``
    indices; ``None``: all ``T`` trajectories) like :class:`TrainingStep` and returns the
    same :class:`StepRecord` (loss, NLL and mean squared residual of the global minibatch).
    Every rank must call it with the same arguments. It raises ``FloatingPointError`` (every
    rank, together) when the step diverges on any rank and :class:`DistributedError` when
    any rank's forward pass fails otherwise.
    """

    def __init__(self, model, guide, config: TrainConfig, total_steps: int,
                 eta_warmup_steps: int = 0):
        super().__init__(model, guide, config, total_steps, eta_warmup_steps)
        self.loss_module = make_elbo(config)(model, guide)  # forward: the differentiable loss
        self.ddp: DistributedDataParallel | None = None

    def __call__(self, states, next_states, subsample=None) -> StepRecord:
        T = states.shape[0]
        idx = torch.arange(T, device=states.device) if subsample is None else subsample
        share = local_share(idx)
        ddp = self._wrapped(states, next_states)
        self.recorder.sites.clear()
        loss, params, failure = None, set(), None
        try:
            with poutine.trace(param_only=True) as capture, self.recorder, \
                    ShareScale(world_size() * len(share) / len(idx)):
                loss = ddp(states, next_states, subsample=share)
            params = {site["value"].unconstrained() for site in capture.trace.nodes.values()}
            if not math.isfinite(float(loss.detach())):
                failure = ("diverged", f"the loss became {float(loss.detach())}")
        except ValueError as exc:
            reason = _divergence_reason(exc)
            failure = ("error", _one_line(exc)) if reason is None else ("diverged", reason)
        except Exception as exc:  # noqa: BLE001 - out of memory, ...: stop every rank together
            failure = ("error", _one_line(exc))
        self._agree(failure)
        with collective("the backward pass (with DDP's gradient all-reduce)"):
            loss.backward()  # DDP averages the gradients over the ranks
        self.optimizer(params)
        zero_grads(params)
        invalid = _invalid_parameter()
        if invalid is not None:
            raise FloatingPointError(
                f"parameter {invalid!r} became non-finite or left its constraint"
            )
        self.optimizer.step()  # advance every parameter's learning-rate schedule
        loss_value, nll, mse = self._global_statistics(loss, states, len(idx))
        if self.closed_form_prior:
            self.model.hamiltonian_net.prior.update(
                posterior_second_moments(self.guide, self.model.weight_sites, states[:1])
            )
        self.model.noise.update(torch.tensor(mse))
        return StepRecord(loss=loss_value, nll=nll, mse=mse)

    @staticmethod
    def _agree(failure) -> None:
        failures = gather_failures(failure)
        if failures is None:
            return
        first, (kind, text) = _first_failure(failures)
        if kind == "diverged":
            raise FloatingPointError(f"{text} (on rank {first})")
        raise DistributedError(f"rank {first} failed in an SVI step ({text})", all_ranks=True)

    def _wrapped(self, states, next_states) -> DistributedDataParallel:
        """DDP around the ELBO module, built at the first step: after the guide exists and a
        resumed param store is loaded, and once the modules hold the param store's tensors."""
        if self.ddp is None:
            self._sync_modules(states, next_states)
            device_ids = [states.device.index] if states.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.loss_module, device_ids=device_ids)
        return self.ddp

    def _sync_modules(self, states, next_states) -> None:
        """Run guide and model once (no gradient, RNG state restored after) so that every
        PyroModule holds the param store's tensors as its ``nn.Parameter`` s (PyroModules read
        the store only inside a call), then check that every param is one of them: DDP
        averages the gradients of the module's parameters only."""
        devices = [states.device] if states.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), poutine.block(), torch.no_grad():
            guide_trace = poutine.trace(self.guide).get_trace(states[:1], next_states[:1])
            poutine.replay(self.model, trace=guide_trace)(states[:1], next_states[:1])
        module_params = {id(p) for p in self.loss_module.parameters()}
        store = pyro.get_param_store()
        outside = [k for k in store.keys() if id(store[k].unconstrained()) not in module_params]
        if outside:
            raise DistributedError(
                f"pyro.params {outside} are not parameters of the model or guide modules, so "
                "their gradients would not be averaged over the ranks; declare them as "
                "PyroParam attributes of a PyroModule",
                all_ranks=True,
            )

    @torch.no_grad()
    def _global_statistics(self, loss, states, batch) -> tuple[float, float, float]:
        """The global minibatch's loss, full-data NLL estimate and mean squared residual from
        one all-reduce of this rank's loss, summed NLL and summed squared residuals (each
        averaged over the particles, then over the model runs as :class:`TrainingStep`)."""
        T, n, M = states.shape
        likelihood = self.model.likelihood
        sums = torch.zeros(3, dtype=torch.float64, device=states.device)
        sums[0] = loss.detach()
        for fn, obs, _ in self.recorder.sites:
            mean = fn.base_dist.loc.detach()
            sums[1] -= likelihood.log_likelihood(mean, obs).flatten(-2).sum(-1).mean()
            sums[2] += (likelihood.residuals(mean, obs) ** 2).flatten(-3).sum(-1).mean()
        with collective("the all-reduce of the fit statistics"):
            dist.all_reduce(sums)
        runs = len(self.recorder.sites)
        nll = float(sums[1]) * T / batch / runs
        return float(sums[0]) / world_size(), nll, float(sums[2]) / (batch * n * M) / runs


def failure_message(exc: DistributedError, where: str, epoch: int, checkpoint,
                    saved_epoch: int | None) -> str:
    """The one-line message of a rank's failure in ``epoch`` of ``where`` (the run's
    description) with what is kept."""
    if checkpoint is None or saved_epoch is None:
        kept = "no checkpoint was written yet"
    else:
        kept = f"the last good checkpoint (epoch {saved_epoch}) is kept in {checkpoint}"
    return f"{where}: epoch {epoch}: {exc}; {kept}"
