"""Learned symmetries: singular values and parallelness (Figures 3-4), generators (Figure 5)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from pyro_razor.analysis import SymmetryAnalysis
from pyro_razor.plotting.common import COLORS, PathLike, as_numpy, check_mapping, grid, save
from pyro_razor.symmetry import phase_labels

__all__ = ["plot_generators", "plot_singular_values"]


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
    analyses = check_mapping(analyses, "plot_singular_values: analyses")
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
        color = COLORS[j % len(COLORS)]
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
    return save(fig, path)


def plot_generators(
    learned: torch.Tensor,
    analysis: SymmetryAnalysis,
    labels: Sequence[str] | None = None,
    path: PathLike | None = None,
    n_vectors: int | None = None,
    max_ticks: int = 13,
    ncols: int | None = None,
    max_panels: int = 30,
) -> Figure:
    """Heat maps of the learned generators and the leading right singular vectors (Figure 5).

    Top block: each learned ``G_k`` (``(M+1, M+1)``, row = component of the flow's velocity,
    column = the homogeneous coordinate it multiplies), all on one diverging colour scale
    centred at 0, so collapsed generators look blank. Bottom block: the right singular vectors
    ``v_i`` reshaped to ``(M+1, M+1)``, titled with ``lambda_i`` and parallelness; directions
    that are not significant have grey titles. At most ``max_panels`` generators are drawn
    (those of largest norm) and, by default, singular vectors (the leading ones); a block's
    heading then says how many of how many are shown.

    Args:
        learned: ``(K, M+1, M+1)`` learned generators (the ones ``analysis`` was made from).
        analysis: from :func:`pyro_razor.analysis.analyse_generators`.
        labels: tick labels for the ``M`` phase coordinates (``"1"`` is appended) or all
            ``M + 1``; default :func:`phase_labels` plus ``"1"``.
        path: where to save the PNG (optional).
        n_vectors: how many singular vectors to show (default all ``min(K, (M+1)^2)``, at
            most ``max_panels``).
        max_ticks: tick labels are drawn only when ``M + 1 <= max_ticks``.
        ncols: panels per row (default ``min(max(K, n_vectors), 10)`` of the shown panels).
        max_panels: most panels per block (default 30, the largest ``K`` of the shipped
            configs), so that a run with thousands of quantities still gets a readable figure.

    Returns:
        The figure.
    """
    if not isinstance(analysis, SymmetryAnalysis):
        raise TypeError(f"plot_generators: analysis must be a SymmetryAnalysis, got {analysis!r}")
    G = as_numpy(learned, "plot_generators: learned", (None, None, None))
    K, size = G.shape[0], G.shape[1]
    M = size - 1
    if G.shape[2] != size or M != analysis.phase_dim or K != len(analysis.generator_norms):
        raise ValueError(
            f"plot_generators: learned has shape {G.shape} but the analysis was made from "
            f"{len(analysis.generator_norms)} generators with M = {analysis.phase_dim}; pass "
            "the generators the analysis was computed from"
        )
    if int(max_panels) < 1:
        raise ValueError(f"plot_generators: max_panels must be >= 1, got {max_panels}")
    V = np.asarray(analysis.right_singular_vectors, dtype=float).reshape(-1, size, size)
    n_vec = min(V.shape[0], int(max_panels)) if n_vectors is None else int(n_vectors)
    if not (0 <= n_vec <= V.shape[0]):
        raise ValueError(f"plot_generators: n_vectors must be in [0, {V.shape[0]}], got {n_vec}")
    # the generators of largest norm, largest first, when there are more than max_panels
    K_all = K
    shown = np.arange(K)
    if K > max_panels:
        norms = np.asarray(analysis.generator_norms, dtype=float)
        shown = np.argsort(-np.nan_to_num(norms, nan=-np.inf), kind="stable")[: int(max_panels)]
        K = len(shown)
    G = G[shown]
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
    _, cols = grid(max(K, n_vec, 1), ncols, max_cols=10)
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
                k = int(shown[idx])
                title = f"G{k + 1}  |.|={analysis.generator_norms[k]:.2g}"
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
            + (f" ({K} of {K_all} shown, largest norm)" if K < K_all else "")
            if kind == "G"
            else f"right singular vectors $v_i$ ({analysis.n_significant} significant"
            + (f"; {n_vec} of {V.shape[0]} shown)" if n_vec < V.shape[0] else ")")
        )
        sub.suptitle(heading, fontsize=10)
    return save(fig, path)
