"""The figure of a discovery: each found quantity along the observed trajectories, beside the
heat map of its generator."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from pyro_razor.plotting.common import COLORS, PathLike, as_numpy, save
from pyro_razor.symmetry import generator_matrix, quadratic_value

__all__ = ["plot_discovery"]

WRAP = 70  # characters of a formula per line above its panel


def plot_discovery(
    quantities: Sequence[dict],
    trajectories: torch.Tensor,
    dt: float,
    names: Sequence[str],
    path: PathLike | None = None,
    max_trajectories: int = 12,
    which: str = "training",
) -> Figure:
    """One row per found quantity: ``C(x_t)`` along each observed trajectory (a conserved
    quantity gives flat lines, one level per trajectory) and its generator ``(M+1, M+1)``.

    Args:
        quantities: ``discovery.json``'s quantities (``label``, ``formula``, ``A``, ``b`` in
            the user's units).
        trajectories: ``(B, n, M)`` observed trajectories in the same units.
        dt: time between states.
        names: the ``M`` coordinate names.
        path: where to save the PNG (optional).
        max_trajectories: trajectories drawn per panel.
        which: which trajectories these are (``"training"``, ``"test"``), for the title.

    A long formula is wrapped above its panel (never over the generator's title); the value
    axis is ``C_k`` in the user's units, the time axis in the data's time units.
    """
    x = torch.as_tensor(trajectories, dtype=torch.float64)
    rows = max(len(quantities), 1)
    titles = [textwrap.fill(q["formula"], width=WRAP) for q in quantities]
    extra = sum(t.count("\n") for t in titles) * 0.15  # inches for the wrapped lines
    fig = Figure(figsize=(9.0, 2.4 * rows + extra + 0.3), layout="constrained")
    axes = fig.subplots(rows, 2, squeeze=False, width_ratios=(1.6, 1.0))
    if not quantities:
        axes[0, 0].text(0.5, 0.5, "no conserved quantity found", ha="center", va="center")
        for ax in axes[0]:
            ax.set_axis_off()
        return save(fig, path)
    shown = min(max_trajectories, x.shape[0])
    fig.suptitle(f"each quantity along {shown} of the {x.shape[0]} {which} trajectories "
                 "(flat lines: conserved)", fontsize=9)
    t = np.arange(x.shape[1]) * dt
    labels = [*names, "1"]
    for k, q in enumerate(quantities):
        A = torch.tensor(q["A"], dtype=torch.float64)
        b = torch.tensor(q["b"], dtype=torch.float64)
        values = as_numpy(quadratic_value(A, b, x), "quantity values")
        ax = axes[k, 0]
        for i in range(min(max_trajectories, values.shape[0])):
            ax.plot(t, values[i], color=COLORS[i % len(COLORS)], lw=1.0)
        ax.set_title(titles[k], fontsize=8, loc="left")
        ax.set_xlabel("time", fontsize=8)
        ax.set_ylabel(f"{q['label']} (your units)", fontsize=8)
        ax.tick_params(labelsize=7)
        G = as_numpy(generator_matrix(A, b), "generator")
        scale = float(np.abs(G).max()) or 1.0
        heat = axes[k, 1].imshow(G, cmap="RdBu_r", vmin=-scale, vmax=scale)
        axes[k, 1].set_xticks(range(len(labels)), labels, fontsize=6, rotation=90)
        axes[k, 1].set_yticks(range(len(labels)), labels, fontsize=6)
        axes[k, 1].set_title(f"generator of {q['label']}", fontsize=9)
        fig.colorbar(heat, ax=axes[k, 1], shrink=0.8)
    return save(fig, path)
