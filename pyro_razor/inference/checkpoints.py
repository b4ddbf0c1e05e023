"""Resumable checkpoints of a training run: one save, one load, one restore, one resume.

A checkpoint holds the Pyro param store, the optimiser and scheduler state, every RNG state,
the minibatch-order generator, the model's and guide's buffers (e.g. closed-form prior
variances, empirical output noise), the history and the training config. It is written
atomically (temporary file + ``os.replace``), so a run killed mid-write keeps its previous
checkpoint, and a run resumed from it reproduces the uninterrupted run exactly (same seed and
device).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pyro
import pyro.poutine as poutine
import torch

from pyro_razor.atomic import atomic_path

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "load_checkpoint",
    "restore_checkpoint",
    "resume_checkpoint",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = 2
"""Version of the checkpoint layout (2: the output noise lives in the likelihood module)."""


CHECKPOINT_KEYS = ("epoch", "history", "config", "param_store", "optimizer", "rng", "batch_rng",
                   "buffers")
"""The entries every checkpoint holds."""


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: unreadable (truncated, not a torch file) or not
    of this layout. The message is one line naming the file and what is wrong."""


def module_buffers(*modules) -> dict[str, torch.Tensor]:
    """Copies of the buffers of ``modules``, keyed ``"<position>.<buffer name>"``."""
    return {
        f"{i}.{name}": buf.detach().clone()
        for i, module in enumerate(modules)
        for name, buf in module.named_buffers()
    }


def save_checkpoint(
    path, *, model, guide, optimizer, epoch, history, config, batch_rng, schedule_start=0
) -> None:
    """Write a resumable checkpoint atomically (temporary file + ``os.replace``).

    ``schedule_start``: the epoch at which the optimiser's learning-rate schedules started
    (0, or the epoch of a warm start).
    """
    state = {
        "format": CHECKPOINT_FORMAT,
        "epoch": epoch,
        "schedule_start": schedule_start,
        "history": history,
        "config": asdict(config),
        "param_store": pyro.get_param_store().get_state(),
        "optimizer": optimizer.get_state(),
        "rng": pyro.util.get_rng_state(),
        "batch_rng": batch_rng.get_state(),
        "buffers": module_buffers(model, guide),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def load_checkpoint(path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` and check its layout.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file is unreadable (truncated, random bytes, not written by
            :func:`torch.save`) or is not a pyro-razor checkpoint of :data:`CHECKPOINT_FORMAT`
            with every entry of :data:`CHECKPOINT_KEYS`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - report any unreadable file the same way
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({_first_line(exc)}): truncated or not written by "
            "pyro-razor"
        ) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"{path} is not a pyro-razor checkpoint of format {CHECKPOINT_FORMAT} (found "
            f"{found!r})"
        )
    missing = [key for key in CHECKPOINT_KEYS if key not in ckpt]
    params = ckpt.get("param_store")
    if not missing and not (isinstance(params, dict) and {"params", "constraints"} <= set(params)):
        missing = ["param_store.params", "param_store.constraints"]
    if missing or not isinstance(ckpt["epoch"], int) or ckpt["epoch"] < 0:
        what = f"lacks {', '.join(missing)}" if missing else f"has epoch {ckpt['epoch']!r}"
        raise CheckpointError(f"checkpoint {path} is damaged: it {what}")
    return ckpt


def restore_checkpoint(
    ckpt: dict, model, guide, *, device, optimizer=None, batch_rng=None, refresh_with=None
) -> None:
    """Load a checkpoint's param store and buffers into ``model`` and ``guide``.

    Args:
        ckpt: from :func:`load_checkpoint`.
        device: where the parameters go.
        optimizer: also restore the optimiser and scheduler state (to resume training).
        batch_rng: also restore the minibatch-order generator.
        refresh_with: model arguments (e.g. ``(states[:1],)``) to call guide and model with
            once afterwards: PyroModules read the param store only inside a call, so code that
            reads their parameters directly (prediction, analysis) needs it.
    """
    state = ckpt["param_store"]
    pyro.get_param_store().set_state(
        {
            "params": {k: v.to(device) for k, v in state["params"].items()},
            "constraints": state["constraints"],
        }
    )
    if optimizer is not None:
        optimizer.set_state(ckpt["optimizer"])
    for i, module in enumerate((model, guide)):
        for name, buf in module.named_buffers():
            key = f"{i}.{name}"
            if key in ckpt["buffers"]:
                buf.copy_(ckpt["buffers"][key].to(buf))
    if batch_rng is not None:
        batch_rng.set_state(ckpt["batch_rng"])
    if refresh_with is not None:
        with poutine.block(), torch.no_grad():
            guide_trace = poutine.trace(guide).get_trace(*refresh_with)
            poutine.replay(model, trace=guide_trace)(*refresh_with)


def resume_checkpoint(checkpoint, config, model, guide, optimizer, batch_rng, device,
                      warm_start: bool = False) -> dict:
    """Load ``checkpoint`` to continue training under ``config`` (a ``TrainConfig``): restore
    the param store, buffers, RNG of the minibatch order and (unless ``warm_start``) the
    optimiser; return the checkpoint.

    Raises:
        ValueError: no checkpoint path, or (without ``warm_start``) a different training
            config.
    """
    if checkpoint is None:
        raise ValueError("resume=True needs a checkpoint path")
    ckpt = load_checkpoint(checkpoint)
    if warm_start:  # parameters, buffers and RNG streams only: a fresh optimiser and schedule
        restore_checkpoint(ckpt, model, guide, device=device, batch_rng=batch_rng)
        return ckpt
    if ckpt["config"] != asdict(config):
        diff = sorted(k for k in asdict(config) if ckpt["config"].get(k) != asdict(config)[k])
        raise ValueError(
            f"cannot resume from {checkpoint}: its training config differs in {diff}; "
            "resume with the same settings or start a new run"
        )
    restore_checkpoint(
        ckpt, model, guide, device=device, optimizer=optimizer, batch_rng=batch_rng
    )
    return ckpt
