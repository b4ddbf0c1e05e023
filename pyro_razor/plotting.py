r"""Figures in the style of the paper (Figures 2-5) and training / rollout diagnostics.

Every function builds a :class:`matplotlib.figure.Figure` directly (no ``pyplot`` state, so no
backend is needed, nothing leaks between calls and it is safe in scripts and threads), returns
it, and when given ``path`` saves it there as PNG (``bbox_inches="tight"``, ``dpi=130``),
creating parent folders. Jupyter displays a returned figure inline; ``fig.show()`` does not
work (no pyplot window manager is attached), so save it to look at it outside a notebook.

Tensors may live on any device and have any floating dtype; they are copied to float64 NumPy
for drawing. Non-finite values (a diverged rollout) are drawn as gaps rather than rejected.

- :func:`plot_phase_portraits`: learned Hamiltonians on the ``(q, p)`` plane (Figure 2).
- :func:`plot_singular_values`: normalised singular values and parallelness (Figures 3-4).
- :func:`plot_generators`: learned generators and right singular vectors (Figure 5).
- :func:`plot_rollouts`, :func:`plot_training_curves`, :func:`plot_conservation_drift`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from pyro_razor.analysis import SymmetryAnalysis
from pyro_razor.symmetry import check_phase_dim

__all__ = [
    "phase_labels",
    "plot_conservation_drift",
    "plot_generators",
    "plot_phase_portraits",
    "plot_rollouts",
    "plot_singular_values",
    "plot_training_curves",
]

DPI = 130
_COLORS = [f"C{i}" for i in range(10)]

PathLike = str | Path


# ---------------------------------------------------------------------------- helpers


def phase_labels(M: int) -> list[str]:
    """Names of the phase coordinates, positions first: ``["q1", .., "qd", "p1", .., "pd"]``.

    Args:
        M: phase dimension ``2d`` (positive, even).
    """
    check_phase_dim(M)
    d = M // 2
    return [f"q{i + 1}" for i in range(d)] + [f"p{i + 1}" for i in range(d)]


def _numpy(x: object, name: str, shape: tuple[int | None, ...] | None = None) -> np.ndarray:
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


def _check_mapping(x: object, name: str) -> Mapping:
    if not isinstance(x, Mapping) or len(x) == 0:
        raise ValueError(f"{name} must be a non-empty dict name -> value, got {type(x).__name__}")
    return x


def _save(fig: Figure, path: PathLike | None) -> Figure:
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, bbox_inches="tight", dpi=DPI)
    return fig


def _grid(n: int, ncols: int | None, max_cols: int = 4) -> tuple[int, int]:
    cols = ncols if ncols is not None else min(n, max_cols)
    if not isinstance(cols, int) or cols < 1:
        raise ValueError(f"ncols must be a positive int, got {ncols!r}")
    return math.ceil(n / cols), cols


def _auto_yscale(ax, values: np.ndarray) -> None:
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


# ---------------------------------------------------------------------------- Figure 2


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
    hamiltonians = _check_mapping(hamiltonians, "plot_phase_portraits: hamiltonians")
    for name, H in hamiltonians.items():
        if not callable(H):
            raise TypeError(f"plot_phase_portraits: hamiltonian {name!r} is not callable")
    extent = float(extent)
    if not (extent > 0 and math.isfinite(extent)):
        raise ValueError(f"plot_phase_portraits: extent must be positive and finite, got {extent}")
    if not isinstance(resolution, int) or resolution < 2:
        raise ValueError(f"plot_phase_portraits: resolution must be an int >= 2, got {resolution}")
    traj = None if data is None else _numpy(data, "plot_phase_portraits: data", (None, None, 2))

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
        Z = _numpy(values, name).reshape(resolution, resolution)
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
    return _save(fig, path)


# ---------------------------------------------------------------------------- Figures 3, 4


def plot_singular_values(
    analyses: Mapping[str, SymmetryAnalysis],
    path: PathLike | None = None,
    log: bool = True,
    reference_levels: Sequence[float] = (0.95, 0.99),
) -> Figure:
    """Normalised singular values and parallelness of the right singular vectors (Figs. 3-4).

    Left: ``lambda_i = sigma_i / sigma_1`` as grouped bars (one colour per analysis, e.g.
    ``{"n = 1": a1, ..., "n = 5": a5}``) with each analysis' threshold as a dashed line; right:
    parallelness ``||P v_i||`` with the reference levels as dotted lines. Bars of directions
    that are not significant (see :func:`pyro_razor.analysis.analyse_generators`) are pale.

    Args:
        analyses: name to :class:`~pyro_razor.analysis.SymmetryAnalysis`.
        path: where to save the PNG (optional).
        log: log-scale the singular values (values of exactly 0 are then not drawn).
        reference_levels: parallelness levels to mark (paper: 0.99 oscillators, 0.95 3-body).

    Returns:
        The figure.
    """
    analyses = _check_mapping(analyses, "plot_singular_values: analyses")
    for name, a in analyses.items():
        if not isinstance(a, SymmetryAnalysis):
            raise TypeError(
                f"plot_singular_values: analyses[{name!r}] must be a SymmetryAnalysis, "
                f"got {type(a).__name__}"
            )
    n = len(analyses)
    r_max = max((len(a.singular_values) for a in analyses.values()), default=0)
    width = 0.8 / n
    fig_width = min(max(7.0, 2.5 + 0.1 * r_max * (n + 1)), 15.0)
    fig = Figure(figsize=(fig_width, 6.4), layout="constrained")
    ax_s, ax_p = fig.subplots(2, 1)
    handles: list = []
    labels: list[str] = []
    positive: list[float] = []
    has_truth = any(a.true_dim > 0 for a in analyses.values())
    for j, (name, a) in enumerate(analyses.items()):
        color = _COLORS[j % len(_COLORS)]
        r = len(a.singular_values)
        x = np.arange(1, r + 1) + (j - (n - 1) / 2) * width
        lam = np.asarray(a.singular_values, dtype=float)
        sig = (lam > a.threshold) & (np.asarray(a.absolute_singular_values) > a.min_norm)
        alphas = np.where(sig, 1.0, 0.3)
        ax_s.bar(x, lam, width=width, color=[to_rgba(color, al) for al in alphas])
        positive.extend(lam[lam > 0].tolist())
        if a.true_dim > 0:
            par = np.asarray(a.parallelness, dtype=float)
            ax_p.bar(x, par, width=width, color=[to_rgba(color, al) for al in alphas])
        label = f"{name}: {a.n_significant} significant"
        if a.true_dim > 0:
            label += f", L = {a.true_dim}" + (", recovered" if a.recovered else "")
        handles.append(Patch(color=color))
        labels.append(label)
    for t in sorted({a.threshold for a in analyses.values()}):
        handles.append(ax_s.axhline(t, color="k", ls="--", lw=1))
        labels.append(f"threshold λ = {t:g}")
    if log:
        ax_s.set_yscale("log")
        floor = min(positive + [min(a.threshold for a in analyses.values()) or 1.0])
        ax_s.set_ylim(max(10 ** math.floor(math.log10(floor / 2)), 1e-8), 2.0)
    else:
        ax_s.set_ylim(0, 1.05)
    ax_s.set_xlabel("singular value index i")
    ax_s.set_ylabel(r"$\lambda_i = \sigma_i / \sigma_1$")
    ax_s.set_title("normalised singular values", fontsize=10)
    ax_p.set_xlabel("right singular vector index i")
    ax_p.set_ylabel(r"parallelness $\|P v_i\|$")
    ax_p.set_title("parallelness to the true generators", fontsize=10)
    ax_p.set_ylim(0, 1.05)
    styles = [":", "-."]
    for k, level in enumerate(sorted(set(float(x) for x in reference_levels))):
        handles.append(ax_p.axhline(level, color="0.3", ls=styles[k % 2], lw=1))
        labels.append(f"parallelness {level:g}")
    if not has_truth:
        ax_p.text(
            0.5,
            0.5,
            "no ground truth given",
            ha="center",
            va="center",
            transform=ax_p.transAxes,
            color="0.4",
        )
    for ax in (ax_s, ax_p):
        ax.set_xlim(0.4, max(r_max, 1) + 0.6)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.legend(
        handles,
        labels,
        loc="outside lower center",
        ncol=min(3, len(labels)),
        frameon=False,
        fontsize=9,
    )
    return _save(fig, path)


# ---------------------------------------------------------------------------- Figure 5


def plot_generators(
    learned: torch.Tensor,
    analysis: SymmetryAnalysis,
    labels: Sequence[str] | None = None,
    path: PathLike | None = None,
    n_vectors: int | None = None,
    max_ticks: int = 13,
    ncols: int | None = None,
) -> Figure:
    """Heat maps of the learned generators and the leading right singular vectors (Figure 5).

    Top block: each learned ``G_k`` (``(M+1, M+1)``, row = component of the flow's velocity,
    column = the homogeneous coordinate it multiplies), all on one diverging colour scale
    centred at 0, so collapsed generators look blank. Bottom block: the right singular vectors
    ``v_i`` reshaped to ``(M+1, M+1)``, titled with ``lambda_i`` and parallelness; directions
    that are not significant have grey titles.

    Args:
        learned: ``(K, M+1, M+1)`` learned generators (the ones ``analysis`` was made from).
        analysis: from :func:`pyro_razor.analysis.analyse_generators`.
        labels: tick labels for the ``M`` phase coordinates (``"1"`` is appended) or all
            ``M + 1``; default :func:`phase_labels` plus ``"1"``.
        path: where to save the PNG (optional).
        n_vectors: how many singular vectors to show (default all ``min(K, (M+1)^2)``).
        max_ticks: tick labels are drawn only when ``M + 1 <= max_ticks``.
        ncols: panels per row (default ``min(max(K, n_vectors), 10)``).

    Returns:
        The figure.
    """
    if not isinstance(analysis, SymmetryAnalysis):
        raise TypeError(f"plot_generators: analysis must be a SymmetryAnalysis, got {analysis!r}")
    G = _numpy(learned, "plot_generators: learned", (None, None, None))
    K, size = G.shape[0], G.shape[1]
    M = size - 1
    if G.shape[2] != size or M != analysis.phase_dim or K != len(analysis.generator_norms):
        raise ValueError(
            f"plot_generators: learned has shape {G.shape} but the analysis was made from "
            f"{len(analysis.generator_norms)} generators with M = {analysis.phase_dim}; pass "
            "the generators the analysis was computed from"
        )
    V = np.asarray(analysis.right_singular_vectors, dtype=float).reshape(-1, size, size)
    n_vec = V.shape[0] if n_vectors is None else int(n_vectors)
    if not (0 <= n_vec <= V.shape[0]):
        raise ValueError(f"plot_generators: n_vectors must be in [0, {V.shape[0]}], got {n_vec}")
    if labels is None:
        ticks = [*phase_labels(M), "1"]
    else:
        ticks = [str(x) for x in labels]
        if len(ticks) == M:
            ticks.append("1")
        if len(ticks) != size:
            raise ValueError(
                f"plot_generators: labels must have M = {M} or M + 1 = {size} entries, "
                f"got {len(labels)}"
            )
    show_ticks = size <= max_ticks
    _, cols = _grid(max(K, n_vec, 1), ncols, max_cols=10)
    rows_g = math.ceil(K / cols) if K else 0
    rows_v = math.ceil(n_vec / cols) if n_vec else 0
    panel = 1.75 if show_ticks else 1.45
    fig = Figure(
        figsize=(panel * cols + 1.0, (panel + 0.45) * (rows_g + rows_v) + 0.9), layout="constrained"
    )
    blocks = [b for b in (("G", rows_g), ("v", rows_v)) if b[1] > 0]
    if not blocks:
        raise ValueError("plot_generators: nothing to draw (K = 0 and n_vectors = 0)")
    subfigs = fig.subfigures(len(blocks), 1, height_ratios=[b[1] for b in blocks], squeeze=False)
    for (kind, rows), sub in zip(blocks, subfigs[:, 0], strict=True):
        count = K if kind == "G" else n_vec
        mats = G if kind == "G" else V[:n_vec]
        vmax = float(np.nanmax(np.abs(mats))) if mats.size else 0.0
        vmax = vmax if vmax > 0 and math.isfinite(vmax) else 1.0
        axes = sub.subplots(rows, cols, squeeze=False)
        image = None
        for idx, ax in enumerate(axes.flat):
            if idx >= count:
                ax.set_axis_off()
                continue
            image = ax.imshow(
                mats[idx], cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest"
            )
            if kind == "G":
                title = f"G{idx + 1}  |.|={analysis.generator_norms[idx]:.2g}"
                color = "k"
            else:
                title = f"v{idx + 1}  λ={analysis.singular_values[idx]:.2g}"
                if analysis.true_dim > 0:
                    title += f"\npar {analysis.parallelness[idx]:.3f}"
                color = "k" if idx < analysis.n_significant else "0.55"
            ax.set_title(title, fontsize=8, color=color)
            if show_ticks:
                ax.set_xticks(range(size), ticks, fontsize=6, rotation=90)
                ax.set_yticks(range(size), ticks, fontsize=6)
            else:
                ax.set_xticks([])
                ax.set_yticks([])
            row, col = divmod(idx, cols)
            last_row = row == rows - 1 or idx + cols >= count
            if last_row:
                ax.set_xlabel("coordinate", fontsize=7)
            if col == 0:
                ax.set_ylabel("velocity of", fontsize=7)
        if image is not None:
            sub.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, pad=0.01)
        heading = (
            "learned generators $G_k$"
            if kind == "G"
            else f"right singular vectors $v_i$ ({analysis.n_significant} significant)"
        )
        sub.suptitle(heading, fontsize=10)
    return _save(fig, path)


# ---------------------------------------------------------------------------- rollouts


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
    t = _numpy(times, "plot_rollouts: times", (None,))
    P = t.shape[0]
    X = _numpy(truth, "plot_rollouts: truth", (P, None))
    M = X.shape[1]
    predictions = _check_mapping(predictions, "plot_rollouts: predictions")
    preds = {
        k: _numpy(v, f"plot_rollouts: predictions[{k!r}]", (P, M)) for k, v in predictions.items()
    }
    band_arrays = {}
    for k, pair in (bands or {}).items():
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"plot_rollouts: bands[{k!r}] must be a pair (lo, hi)")
        band_arrays[k] = tuple(_numpy(b, f"plot_rollouts: bands[{k!r}]", (P, M)) for b in pair)
    if coord_names is None:
        names = phase_labels(M) if M % 2 == 0 else [f"x{i + 1}" for i in range(M)]
    else:
        names = [str(c) for c in coord_names]
        if len(names) != M:
            raise ValueError(f"plot_rollouts: need {M} coord_names, got {len(names)}")
    colors = {
        k: _COLORS[i % len(_COLORS)] for i, k in enumerate(dict.fromkeys([*preds, *band_arrays]))
    }

    rows, cols = _grid(M, ncols)
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
    return _save(fig, path)


# ---------------------------------------------------------------------------- training


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
    histories = _check_mapping(histories, "plot_training_curves: histories")
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
            line = ax.plot(x, y, color=_COLORS[j % len(_COLORS)], lw=1.3)[0]
            values.append(y)
            if name not in labels:
                handles.append(line)
                labels.append(name)
        if values:
            _auto_yscale(ax, np.concatenate(values))
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
    return _save(fig, path)


# ---------------------------------------------------------------------------- conservation


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
    t = _numpy(times, "plot_conservation_drift: times", (None,))
    P = t.shape[0]
    drifts = _check_mapping(drifts, "plot_conservation_drift: drifts")
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for variant, per_q in drifts.items():
        per_q = _check_mapping(per_q, f"plot_conservation_drift: drifts[{variant!r}]")
        arrays[variant] = {
            q: _numpy(v, f"plot_conservation_drift: drifts[{variant!r}][{q!r}]", (P,))
            for q, v in per_q.items()
        }
    quantities = list(dict.fromkeys(q for per_q in arrays.values() for q in per_q))
    rows, cols = _grid(len(quantities), ncols)
    fig = Figure(figsize=(3.4 * cols, 2.6 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    handles = [Line2D([], [], color=_COLORS[j % len(_COLORS)], lw=1.5) for j in range(len(arrays))]
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
            ax.plot(t, y, color=_COLORS[j % len(_COLORS)], lw=1.5)
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
    return _save(fig, path)
