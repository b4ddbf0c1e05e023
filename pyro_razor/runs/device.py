"""Torch devices by name, refused with a clear message when absent."""

from __future__ import annotations

import warnings

import torch

from pyro_razor.runs.errors import RunError

__all__ = ["resolve_device", "usable_device"]


def resolve_device(name: str) -> torch.device:
    """``torch.device(name)``, refusing CUDA (or MPS) when it is not available.

    Raises:
        RunError: the string is not a device or the device is absent.
    """
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise RunError(f"{name!r} is not a torch device; use 'cpu' or 'cuda'") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RunError(
                f"device {name!r} requested but CUDA is not available (this torch is "
                f"{torch.__version__}); use --device cpu or install a CUDA build of torch"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RunError(
                f"device {name!r} requested but only {torch.cuda.device_count()} CUDA "
                "device(s) are visible"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise RunError(f"device {name!r} requested but MPS is not available; use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise RunError(f"unsupported device type {device.type!r}; use 'cpu' or 'cuda'")
    return device


def usable_device(run_device: str, requested: str | None) -> torch.device:
    """``requested`` if given (checked), else the run's device, else (with a warning) the CPU."""
    if requested is not None:
        return resolve_device(requested)
    try:
        return resolve_device(run_device)
    except RunError:
        warnings.warn(
            f"the run used device {run_device!r}, which is not available here; using the CPU",
            RuntimeWarning,
            stacklevel=3,
        )
        return torch.device("cpu")
