"""Learned Hamiltonians on the phase plane of a 1-d system (paper Figure 2)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from pyro_razor.plotting.common import PathLike, as_numpy, check_mapping, save

__all__ = ["plot_phase_portraits"]


def plot_phase_portraits(
    hamiltonians: Mapping[str, Callable[[torch.Tensor], torch.Tensor]],
    data: torch.Tensor | None = None,
    extent: float = 3.0,
    path: PathLike | None = None,
    resolution: int = 101,
    levels: int = 20,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Figure:
    """Hamiltonians of a 1-d system as filled contours on the ``(q, p)`` plane (paper Figure 2).

    One panel per entry, e.g. ``{"HNN": ..., "HNN + learned symmetry": ...,
    "HNN + fixed SO(2)": ..., "True H": system.H}``, each with its own colour scale (a learned
    ``H`` is only defined up to a constant), training trajectories overlaid.

    Args:
        hamiltonians: name to ``H: (N, 2) -> (N,)``, evaluated under ``torch.no_grad()`` on a
            ``resolution x resolution`` grid over ``[-extent, extent]^2``.
        data: ``(T, P, 2)`` training trajectories (``T`` trajectories of ``P`` points), or None.
        extent: half-width of the plotted square (> 0).
        path: where to save the PNG (optional).
        resolution: grid points per axis (>= 2).
        levels: number of contour levels.
        dtype, device: of the grid passed to the Hamiltonians (default: torch's default dtype,
            CPU), to match a model's parameters.

    Returns:
        The figure.
    """
    hamiltonians = check_mapping(hamiltonians, "plot_phase_portraits: hamiltonians")
    for name, H in hamiltonians.items():
        if not callable(H):
            raise TypeError(f"plot_phase_portraits: hamiltonian {name!r} is not callable")
    extent = float(extent)
    if not (extent > 0 and math.isfinite(extent)):
        raise ValueError(f"plot_phase_portraits: extent must be positive and finite, got {extent}")
    if not isinstance(resolution, int) or resolution < 2:
        raise ValueError(f"plot_phase_portraits: resolution must be an int >= 2, got {resolution}")
    traj = None if data is None else as_numpy(data, "plot_phase_portraits: data", (None, None, 2))

    axis = torch.linspace(-extent, extent, resolution, dtype=torch.float64)
    Qg, Pg = torch.meshgrid(axis, axis, indexing="xy")
    points = torch.stack([Qg.reshape(-1), Pg.reshape(-1)], dim=-1)
    points = points.to(dtype=dtype or torch.get_default_dtype(), device=device)

    n = len(hamiltonians)
    fig = Figure(figsize=(3.2 * n + 0.4, 3.7), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, (name, H) in zip(axes, hamiltonians.items(), strict=True):
        with torch.no_grad():
            values = H(points)
        if not isinstance(values, torch.Tensor) or values.shape != (points.shape[0],):
            got = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values)
            raise ValueError(
                f"plot_phase_portraits: hamiltonian {name!r} must map (N, 2) to (N,), got {got}"
            )
        Z = as_numpy(values, name).reshape(resolution, resolution)
        finite = Z[np.isfinite(Z)]
        if finite.size and np.ptp(finite) > 0:
            lv = np.linspace(finite.min(), finite.max(), levels + 1)
        else:  # constant (e.g. an untrained network): one flat level
            c = float(finite[0]) if finite.size else 0.0
            lv = np.array([c - 0.5, c + 0.5])
        ax.contourf(Qg.numpy(), Pg.numpy(), Z, levels=lv, cmap="viridis")
        if lv.size > 2:
            ax.contour(Qg.numpy(), Pg.numpy(), Z, levels=lv, colors="k", linewidths=0.3, alpha=0.4)
        if traj is not None:
            for t in traj:
                ax.plot(t[:, 0], t[:, 1], "-", color="white", lw=1.0, alpha=0.9)
                ax.plot(t[:, 0], t[:, 1], "o", ms=3.5, mfc="tab:red", mec="white", mew=0.6)
        ax.set_xlim(-extent, extent)
        ax.set_ylim(-extent, extent)
        ax.set_aspect("equal")
        ax.set_xlabel("q")
        ax.set_ylabel("p")
        ax.set_title(name, fontsize=10)
    if traj is not None:
        handle = Line2D([], [], color="white", mfc="tab:red", mec="k", marker="o", ms=5, lw=0)
        fig.legend(
            [handle],
            [f"training data ({traj.shape[0]} trajectories)"],
            loc="outside lower center",
            frameon=False,
        )
    return save(fig, path)
