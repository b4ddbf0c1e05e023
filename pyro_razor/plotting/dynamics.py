"""Dynamics over time: rollouts against the truth, training curves, conservation drift."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from pyro_razor.plotting.common import (
    COLORS,
    PathLike,
    as_numpy,
    auto_yscale,
    check_mapping,
    grid,
    save,
)
from pyro_razor.symmetry import phase_labels

__all__ = ["plot_conservation_drift", "plot_rollouts", "plot_training_curves"]


def plot_rollouts(
    times: torch.Tensor,
    truth: torch.Tensor,
    predictions: Mapping[str, torch.Tensor],
    coord_names: Sequence[str] | None = None,
    path: PathLike | None = None,
    bands: Mapping[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
    ncols: int | None = None,
) -> Figure:
    """Predicted trajectories against the ground truth, one panel per phase coordinate.

    Args:
        times: ``(P,)`` time points.
        truth: ``(P, M)`` true trajectory (black).
        predictions: name to ``(P, M)`` predicted trajectory (coloured, dashed).
        coord_names: ``M`` coordinate names (default :func:`phase_labels` if ``M`` is even,
            else ``x1..xM``).
        path: where to save the PNG (optional).
        bands: name to ``(lo, hi)``, each ``(P, M)``, e.g. a posterior predictive interval;
            shaded in the colour of the prediction with the same name.
        ncols: panels per row (default ``min(M, 4)``).

    Returns:
        The figure.
    """
    t = as_numpy(times, "plot_rollouts: times", (None,))
    P = t.shape[0]
    X = as_numpy(truth, "plot_rollouts: truth", (P, None))
    M = X.shape[1]
    predictions = check_mapping(predictions, "plot_rollouts: predictions")
    preds = {
        k: as_numpy(v, f"plot_rollouts: predictions[{k!r}]", (P, M)) for k, v in predictions.items()
    }
    band_arrays = {}
    for k, pair in (bands or {}).items():
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"plot_rollouts: bands[{k!r}] must be a pair (lo, hi)")
        band_arrays[k] = tuple(as_numpy(b, f"plot_rollouts: bands[{k!r}]", (P, M)) for b in pair)
    if coord_names is None:
        names = phase_labels(M) if M % 2 == 0 else [f"x{i + 1}" for i in range(M)]
    else:
        names = [str(c) for c in coord_names]
        if len(names) != M:
            raise ValueError(f"plot_rollouts: need {M} coord_names, got {len(names)}")
    colors = {
        k: COLORS[i % len(COLORS)] for i, k in enumerate(dict.fromkeys([*preds, *band_arrays]))
    }

    rows, cols = grid(M, ncols)
    fig = Figure(figsize=(3.3 * cols, 2.3 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True)
    handles = [Line2D([], [], color="k", lw=2)]
    labels = ["truth"]
    for k, c in colors.items():
        if k in preds:
            handles.append(Line2D([], [], color=c, ls="--", lw=1.5))
            labels.append(k)
        if k in band_arrays:
            handles.append(Patch(color=c, alpha=0.25))
            labels.append(f"{k} band")
    for m, ax in enumerate(axes.flat):
        if m >= M:
            ax.set_axis_off()
            continue
        for k, (lo, hi) in band_arrays.items():
            ax.fill_between(t, lo[:, m], hi[:, m], color=colors[k], alpha=0.25, lw=0)
        ax.plot(t, X[:, m], color="k", lw=2)
        for k, Y in preds.items():
            ax.plot(t, Y[:, m], color=colors[k], ls="--", lw=1.5)
        ax.set_ylabel(names[m])
        if m + cols >= M:  # lowest panel in its column
            ax.set_xlabel("t")
            ax.xaxis.set_tick_params(labelbottom=True)
    fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)), frameon=False)
    return save(fig, path)


_CURVES = (
    ("neg_elbo_per_n", "-ELBO/N"),
    ("nll_per_n", "NLL/N"),
    ("kl_per_n", "KL/N"),
    ("train_mse", "train MSE"),
)


def plot_training_curves(
    histories: Mapping[str, Sequence[Mapping[str, float]]],
    path: PathLike | None = None,
) -> Figure:
    """``-ELBO/N``, ``NLL/N``, ``KL/N`` and train MSE against epoch, one line per variant.

    The records are those of :func:`pyro_razor.inference.train` (keys ``epoch``,
    ``neg_elbo_per_n``, ``nll_per_n``, ``kl_per_n``, ``train_mse``); a missing ``epoch`` means
    the record's position (1-based), a missing metric is skipped. Each panel picks its y scale:
    log for positive data over more than a decade, symlog for signed data with a wide range,
    else linear.

    Args:
        histories: variant name to its list of per-epoch records.
        path: where to save the PNG (optional).

    Returns:
        The figure.
    """
    histories = check_mapping(histories, "plot_training_curves: histories")
    for name, h in histories.items():
        if (
            isinstance(h, (str, bytes))
            or not isinstance(h, Sequence)
            or not all(isinstance(r, Mapping) for r in h)
        ):
            raise TypeError(
                f"plot_training_curves: histories[{name!r}] must be a list of dict records"
            )
    fig = Figure(figsize=(12.0, 3.4), layout="constrained")
    axes = fig.subplots(1, 4)
    handles, labels = [], []
    for ax, (key, title) in zip(axes, _CURVES, strict=True):
        values = []
        for j, (name, h) in enumerate(histories.items()):
            pts = [
                (float(r.get("epoch", i + 1)), float(r[key]))
                for i, r in enumerate(h)
                if key in r and r[key] is not None
            ]
            if not pts:
                continue
            x, y = np.array(pts).T
            line = ax.plot(x, y, color=COLORS[j % len(COLORS)], lw=1.3)[0]
            values.append(y)
            if name not in labels:
                handles.append(line)
                labels.append(name)
        if values:
            auto_yscale(ax, np.concatenate(values))
        else:
            ax.text(
                0.5,
                0.5,
                f"no '{key}' recorded",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="0.4",
            )
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel(title)
    if not handles:
        raise ValueError(
            "plot_training_curves: no record has any of the keys "
            f"{[k for k, _ in _CURVES]}; pass TrainResult.history lists"
        )
    fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)), frameon=False)
    return save(fig, path)


def plot_conservation_drift(
    times: torch.Tensor,
    drifts: Mapping[str, Mapping[str, torch.Tensor]],
    path: PathLike | None = None,
    absolute: bool = True,
    ncols: int | None = None,
) -> Figure:
    """Long-horizon drift of the energy and each conserved quantity, one panel per quantity.

    Feed it e.g. ``{variant: conservation_drift(rollouts, quantities)}`` (see
    :func:`pyro_razor.analysis.conservation_drift`).

    Args:
        times: ``(P,)`` time points.
        drifts: variant name to (quantity name to ``(P,)`` drift, e.g. ``C(x_t) - C(x_0)``).
            Panels follow the quantities' first appearance.
        path: where to save the PNG (optional).
        absolute: plot ``|drift|`` on a log scale (zeros, e.g. at ``t = 0``, are not drawn; a
            panel whose drifts are all zero stays linear and says so); otherwise the signed
            values on a linear scale.
        ncols: panels per row (default ``min(#quantities, 4)``).

    Returns:
        The figure.
    """
    t = as_numpy(times, "plot_conservation_drift: times", (None,))
    P = t.shape[0]
    drifts = check_mapping(drifts, "plot_conservation_drift: drifts")
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for variant, per_q in drifts.items():
        per_q = check_mapping(per_q, f"plot_conservation_drift: drifts[{variant!r}]")
        arrays[variant] = {
            q: as_numpy(v, f"plot_conservation_drift: drifts[{variant!r}][{q!r}]", (P,))
            for q, v in per_q.items()
        }
    quantities = list(dict.fromkeys(q for per_q in arrays.values() for q in per_q))
    rows, cols = grid(len(quantities), ncols)
    fig = Figure(figsize=(3.4 * cols, 2.6 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    handles = [Line2D([], [], color=COLORS[j % len(COLORS)], lw=1.5) for j in range(len(arrays))]
    for idx, ax in enumerate(axes.flat):
        if idx >= len(quantities):
            ax.set_axis_off()
            continue
        q = quantities[idx]
        positive = finite = False
        for j, variant in enumerate(arrays):
            if q not in arrays[variant]:
                continue
            y = arrays[variant][q]
            y = np.abs(y) if absolute else y
            positive = positive or bool((y > 0).any())
            finite = finite or bool(np.isfinite(y).any())
            ax.plot(t, y, color=COLORS[j % len(COLORS)], lw=1.5)
        if absolute and positive:
            ax.set_yscale("log", nonpositive="mask")
        elif absolute:  # nothing to put on a log scale: say so instead of an empty log axis
            ax.text(
                0.5,
                0.8,
                "no drift (all zero)" if finite else "no finite values",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="0.4",
            )
        ax.set_title(q, fontsize=10)
        ax.set_xlabel("t")
        ax.set_ylabel(f"|{q}(t) - {q}(0)|" if absolute else f"{q}(t) - {q}(0)")
    fig.legend(
        handles, list(arrays), loc="outside lower center", ncol=min(4, len(arrays)), frameon=False
    )
    return save(fig, path)
