"""Shared helpers of the figures: array conversion, saving, grids, axis scales.

Every figure function builds a :class:`matplotlib.figure.Figure` directly (no ``pyplot``
state, so no backend is needed and nothing leaks between calls), returns it, and when given
``path`` saves it there as PNG (``bbox_inches="tight"``, ``dpi=130``), creating parent folders.
Tensors may live on any device and have any floating dtype; they are copied to float64 NumPy.
Non-finite values (a diverged rollout) are drawn as gaps rather than rejected.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

__all__ = ["COLORS", "DPI", "PathLike", "auto_yscale", "check_mapping", "as_numpy", "grid", "save"]

DPI = 130
COLORS = [f"C{i}" for i in range(10)]

PathLike = str | Path


def as_numpy(x: object, name: str, shape: tuple[int | None, ...] | None = None) -> np.ndarray:
    """Float64 NumPy copy of a tensor / array; ``shape`` entries ``None`` match any size."""
    if isinstance(x, torch.Tensor):
        arr = x.detach().to("cpu", torch.float64).numpy()
    else:
        try:
            arr = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a tensor or array of numbers, got {type(x)}") from None
    if shape is not None:
        ok = arr.ndim == len(shape) and all(
            s is None or s == a for s, a in zip(shape, arr.shape, strict=False)
        )
        if not ok:
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{name} must have shape {want}, got {tuple(arr.shape)}")
    return np.where(np.isfinite(arr), arr, np.nan)


def check_mapping(x: object, name: str) -> Mapping:
    if not isinstance(x, Mapping) or len(x) == 0:
        raise ValueError(f"{name} must be a non-empty dict name -> value, got {type(x).__name__}")
    return x


def save(fig: Figure, path: PathLike | None) -> Figure:
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, bbox_inches="tight", dpi=DPI)
    return fig


def grid(n: int, ncols: int | None, max_cols: int = 4) -> tuple[int, int]:
    cols = ncols if ncols is not None else min(n, max_cols)
    if not isinstance(cols, int) or cols < 1:
        raise ValueError(f"ncols must be a positive int, got {ncols!r}")
    return math.ceil(n / cols), cols


def auto_yscale(ax, values: np.ndarray) -> None:
    """Log for positive data spanning > 1 decade, symlog for wide signed data, else linear."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return
    a = np.abs(v)
    if (v > 0).all():
        if v.max() / v.min() > 10:
            ax.set_yscale("log")
        return
    small = np.percentile(a[a > 0], 10) if (a > 0).any() else 1.0
    if a.max() > 50 * small:
        ax.set_yscale("symlog", linthresh=max(float(small), 1e-12))
