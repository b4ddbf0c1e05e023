"""Tests for :mod:`pyro_razor.plotting`: every figure is written, labelled and shows its data.

Small synthetic inputs keep the file fast. Figures are built without pyplot; ``plt.close`` is
still called so that nothing could leak if that changed.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from pyro_razor.analysis import analyse_generators  # noqa: E402
from pyro_razor.plotting import (  # noqa: E402
    phase_labels,
    plot_conservation_drift,
    plot_generators,
    plot_phase_portraits,
    plot_rollouts,
    plot_singular_values,
    plot_training_curves,
)
from pyro_razor.systems import make_system  # noqa: E402

F64 = torch.float64
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5_000


def osc2_analysis(extra: int = 2, seed: int = 0):
    system = make_system("oscillators", n=2)
    G = system.generators()
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(4 + extra, 4, dtype=F64, generator=g)
    learned = torch.einsum("kl,lij->kij", mix, G)
    names = [c.name for c in system.conserved_quantities]
    return learned, analyse_generators(learned, G, names)


def test_phase_labels():
    assert phase_labels(2) == ["q1", "p1"]
    assert phase_labels(6) == ["q1", "q2", "q3", "p1", "p2", "p3"]
    with pytest.raises(ValueError, match="positive even"):
        phase_labels(3)


def test_plot_phase_portraits(tmp_path):
    """One equal-aspect (q, p) panel per Hamiltonian; the data lines carry the trajectories."""
    sho = make_system("sho")
    data = torch.tensor(
        [[[1.0, 0.0], [0.98, -0.2], [0.92, -0.39]], [[0.0, -1.5], [-0.3, -1.47], [-0.58, -1.38]]],
        dtype=F64,
    )
    hams = {
        "True H": sho.H,
        "tilted": lambda x: 0.5 * (x**2).sum(-1) + 0.3 * x[:, 0] * x[:, 1],
        "flat": lambda x: torch.zeros(x.shape[0], dtype=x.dtype),
    }
    path = tmp_path / "sub" / "phase.png"
    fig = plot_phase_portraits(hams, data, extent=2.0, path=path, resolution=31, dtype=F64)
    assert isinstance(fig, Figure)
    assert_png(path)
    axes = fig.axes
    assert len(axes) == 3
    for ax, name in zip(axes, hams, strict=True):
        assert ax.get_xlabel() == "q" and ax.get_ylabel() == "p" and ax.get_title() == name
        assert ax.get_aspect() == 1.0
        assert ax.get_xlim() == (-2.0, 2.0) and ax.get_ylim() == (-2.0, 2.0)
    # the first trajectory's line is drawn at its exact coordinates
    xy = axes[0].lines[0].get_xydata()
    np.testing.assert_allclose(xy, data[0].numpy(), atol=1e-12)
    # the true H panel's filled contours span its range on the grid: [0, 4] on [-2, 2]^2
    levels = axes[0].collections[0].levels
    assert levels[0] == pytest.approx(0.0, abs=1e-12) and levels[-1] == pytest.approx(4.0)
    plt.close(fig)
    with pytest.raises(ValueError, match=r"shape \(\*, \*, 2\)"):
        plot_phase_portraits(hams, torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"must map \(N, 2\) to \(N,\)"):
        plot_phase_portraits({"bad": lambda x: x}, resolution=5)
    with pytest.raises(ValueError, match="non-empty dict"):
        plot_phase_portraits({})


def test_plot_singular_values(tmp_path):
    """Bars are the normalised singular values / parallelness; the threshold line is at 0.05."""
    _, a1 = osc2_analysis(extra=2, seed=0)
    _, a2 = osc2_analysis(extra=4, seed=1)
    path = tmp_path / "sv.png"
    fig = plot_singular_values({"run A": a1, "run B": a2}, path=path)
    assert_png(path)
    ax_s, ax_p = fig.axes
    assert ax_s.get_xlabel() and ax_s.get_ylabel() and ax_p.get_xlabel() and ax_p.get_ylabel()
    assert ax_s.get_yscale() == "log"
    heights = [p.get_height() for p in ax_s.patches]
    expected = a1.singular_values + a2.singular_values
    np.testing.assert_allclose(heights, expected, atol=1e-12)
    np.testing.assert_allclose(
        [p.get_height() for p in ax_p.patches], a1.parallelness + a2.parallelness, atol=1e-12
    )
    threshold_lines = [ln for ln in ax_s.lines if ln.get_linestyle() == "--"]
    assert [ln.get_ydata()[0] for ln in threshold_lines] == [0.05]
    assert sorted(ln.get_ydata()[0] for ln in ax_p.lines) == [0.95, 0.99]
    legend_texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "run A: 4 significant, L = 4, recovered" in legend_texts
    plt.close(fig)
    lin = plot_singular_values({"x": a1}, log=False)
    assert lin.axes[0].get_yscale() == "linear"
    plt.close(lin)
    with pytest.raises(TypeError, match="must be a SymmetryAnalysis"):
        plot_singular_values({"x": {"singular_values": [1.0]}})


def test_plot_generators(tmp_path):
    """Learned generators and singular vectors drawn exactly, phase tick labels for small M."""
    learned, a = osc2_analysis(extra=1)
    path = tmp_path / "gen.png"
    fig = plot_generators(learned, a, path=path)
    assert_png(path)
    image_axes = [ax for ax in fig.axes if ax.images and ax.get_title()]
    assert len(image_axes) == 5 + 5  # K = 5 generators, min(K, 25) = 5 singular vectors
    first = image_axes[0]
    np.testing.assert_allclose(first.images[0].get_array(), learned[0].numpy(), atol=1e-12)
    v1 = np.asarray(a.right_singular_vectors[0]).reshape(5, 5)
    np.testing.assert_allclose(image_axes[5].images[0].get_array(), v1, atol=1e-12)
    # diverging colour scale centred at 0
    vmin, vmax = first.images[0].get_clim()
    assert vmin == pytest.approx(-vmax)
    assert [t.get_text() for t in first.get_xticklabels()] == ["q1", "q2", "p1", "p2", "1"]
    assert first.get_ylabel() and image_axes[-1].get_xlabel()
    plt.close(fig)
    # large M: no tick labels; custom labels checked for length
    big = plot_generators(learned, a, max_ticks=3, n_vectors=2)
    shown = [ax for ax in big.axes if ax.images and ax.get_title()]
    assert len(shown) == 5 + 2 and len(shown[0].get_xticks()) == 0
    plt.close(big)
    custom = plot_generators(learned, a, labels=["x", "y", "u", "v"], n_vectors=0)
    first = [ax for ax in custom.axes if ax.images][0]
    assert [t.get_text() for t in first.get_yticklabels()] == ["x", "y", "u", "v", "1"]
    plt.close(custom)
    with pytest.raises(ValueError, match="labels must have M = 4 or M \\+ 1 = 5"):
        plot_generators(learned, a, labels=["a"])
    with pytest.raises(ValueError, match="pass the generators the analysis was computed from"):
        plot_generators(learned[:2], a)


def test_plot_rollouts(tmp_path):
    """One panel per coordinate with truth, predictions and bands at the given values."""
    t = torch.linspace(0.0, 3.0, 25, dtype=F64)
    truth = torch.stack([torch.cos(t), torch.sin(t), -torch.sin(t)], dim=-1)
    pred = truth + 0.1 * t[:, None]
    path = tmp_path / "roll.png"
    fig = plot_rollouts(
        t,
        truth,
        {"HNN": pred},
        ["a", "b", "c"],
        path=path,
        bands={"HNN": (pred - 0.2, pred + 0.2)},
        ncols=2,
    )
    assert_png(path)
    visible = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_ylabel() for ax in visible] == ["a", "b", "c"]
    assert visible[-1].get_xlabel() == "t" and visible[1].get_xlabel() == "t"
    truth_line, pred_line = visible[1].lines
    np.testing.assert_allclose(truth_line.get_ydata(), truth[:, 1].numpy(), atol=1e-12)
    np.testing.assert_allclose(pred_line.get_ydata(), pred[:, 1].numpy(), atol=1e-12)
    assert len(visible[1].collections) == 1  # the band
    plt.close(fig)
    even = plot_rollouts(t, truth[:, :2], {"x": truth[:, :2]})
    assert [ax.get_ylabel() for ax in even.axes] == ["q1", "p1"]
    plt.close(even)
    with pytest.raises(ValueError, match=r"predictions\['x'\] must have shape \(25, 3\)"):
        plot_rollouts(t, truth, {"x": truth[:, :2]})
    with pytest.raises(ValueError, match="need 3 coord_names"):
        plot_rollouts(t, truth, {"x": truth}, ["a"])
    with pytest.raises(ValueError, match="must be a pair"):
        plot_rollouts(t, truth, {"x": truth}, bands={"x": truth})


def test_plot_training_curves(tmp_path):
    """Four panels with the recorded values; log scale for positive multi-decade data."""

    def history(scale: float) -> list[dict]:
        return [
            {
                "epoch": e,
                "neg_elbo_per_n": scale * 500 / e - 3.0,
                "nll_per_n": -3.0 + 1 / e,
                "kl_per_n": scale * 500 / e,
                "train_mse": 0.1 / e,
            }
            for e in range(1, 51)
        ]

    hist = {"HNN": history(1.0), "learned": history(0.5)}
    path = tmp_path / "curves.png"
    fig = plot_training_curves(hist, path=path)
    assert_png(path)
    assert len(fig.axes) == 4
    for ax in fig.axes:
        assert ax.get_xlabel() == "epoch" and ax.get_ylabel()
    kl_ax, mse_ax = fig.axes[2], fig.axes[3]
    assert kl_ax.get_yscale() == "log" and mse_ax.get_yscale() == "log"
    assert fig.axes[1].get_yscale() == "linear"  # NLL/N in [-3, -2]: no need for a log scale
    np.testing.assert_allclose(mse_ax.lines[1].get_ydata(), [0.1 / e for e in range(1, 51)])
    plt.close(fig)
    partial = plot_training_curves({"x": [{"neg_elbo_per_n": 1.0}, {"neg_elbo_per_n": 0.5}]})
    np.testing.assert_allclose(partial.axes[0].lines[0].get_xdata(), [1, 2])
    assert "no 'train_mse' recorded" in [t.get_text() for t in partial.axes[3].texts]
    plt.close(partial)
    with pytest.raises(ValueError, match="no record has any of the keys"):
        plot_training_curves({"x": [{"loss": 1.0}]})
    with pytest.raises(TypeError, match="list of dict records"):
        plot_training_curves({"x": "history"})


def test_plot_conservation_drift(tmp_path):
    """One panel per quantity (first-appearance order); |drift| on a log scale."""
    t = torch.linspace(0.0, 10.0, 40, dtype=F64)
    drifts = {
        "HNN": {"H": -1e-2 * t, "R_12": 1e-3 * t},
        "learned": {"H": 1e-5 * t, "F_12": torch.zeros_like(t)},
    }
    path = tmp_path / "drift.png"
    fig = plot_conservation_drift(t, drifts, path=path)
    assert_png(path)
    visible = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in visible] == ["H", "R_12", "F_12"]
    for ax in visible:
        assert ax.get_xlabel() == "t"
    assert [ax.get_yscale() for ax in visible] == ["log", "log", "linear"]  # F_12: all zero
    assert [t.get_text() for t in visible[2].texts] == ["no drift (all zero)"]
    assert visible[0].get_ylabel() == "|H(t) - H(0)|"
    np.testing.assert_allclose(visible[0].lines[0].get_ydata(), 1e-2 * t.numpy(), atol=1e-15)
    plt.close(fig)
    signed = plot_conservation_drift(t, drifts, absolute=False)
    assert signed.axes[0].get_yscale() == "linear"
    np.testing.assert_allclose(signed.axes[0].lines[0].get_ydata(), -1e-2 * t.numpy())
    plt.close(signed)
    nan = plot_conservation_drift(t, {"diverged": {"H": torch.full_like(t, float("nan"))}})
    assert [t.get_text() for t in nan.axes[0].texts] == ["no finite values"]
    plt.close(nan)
    with pytest.raises(ValueError, match=r"drifts\['HNN'\]\['H'\] must have shape \(40\)"):
        plot_conservation_drift(t, {"HNN": {"H": t[:5]}})


def test_discovery_figure_wraps_long_formulas_labels_axes_and_says_which_data(tmp_path):
    from pyro_razor.plotting import plot_discovery

    x = torch.randn(20, 6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    long = "C1 = " + " + ".join(f"0.{k}1 q·p" for k in range(30))  # ~300 characters
    quantities = [{"label": "C1", "formula": long, "A": [[1.0, 0.0], [0.0, 1.0]], "b": [0, 0]}]
    fig = plot_discovery(quantities, x, 0.1, ["q", "p"], tmp_path / "d.png", max_trajectories=12)
    ax, gen = fig.axes[0], fig.axes[1]
    assert ax.get_title(loc="left").count("\n") >= 3  # wrapped, not one overprinting line
    assert max(len(line) for line in ax.get_title(loc="left").splitlines()) <= 70
    assert ax.get_xlabel() == "time" and ax.get_ylabel() == "C1 (your units)"
    assert gen.get_title() == "generator of C1"
    assert "12 of the 20 training trajectories" in fig._suptitle.get_text()
    assert len(ax.lines) == 12 and (tmp_path / "d.png").is_file()
    plt.close(fig)
