r"""Posterior predictive checks of a finished run (``pyro-razor ppc``).

Two predictive distributions are checked for every trained variant: the one-step predictive
of the transitions (:func:`pyro_razor.inference.posterior_predictive`, on the test set and, for
PSIS-LOO, on the training set) and multi-step rollouts
(:func:`pyro_razor.inference.predictive_rollout`): for each posterior draw the state is
propagated without process noise and every output gets independent observation noise, so the
spread of the rollouts is posterior (epistemic) uncertainty of the dynamics plus measurement
noise. The draws become ArviZ ``InferenceData`` (``<variant>/ppc.nc``, ``ppc_train.nc``); the
summaries (coverage, calibration, held-out mean log predictive density, PSIS-LOO) go to
``<variant>/ppc.json`` and ``ppc_comparison.json``, the figures to
``figures/ppc_<variant>_{obs,increment,rollout,calibration[,loo_pit]}.png``.

Shapes: ``P`` posterior draws, ``R`` rollouts of ``h`` steps, ``M`` phase dimension.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from pyro_razor import plotting
from pyro_razor.analysis import (
    calibration_curve,
    compare_variants,
    coverage,
    load_netcdf,
    loo_summary,
    mean_log_predictive_density,
    save_netcdf,
    to_inference_data,
)
from pyro_razor.analysis.arviz_data import as_float_array
from pyro_razor.checks import check_int
from pyro_razor.inference import posterior_predictive, predictive_rollout
from pyro_razor.runs.errors import RunError
from pyro_razor.runs.rundir import RUN_HINT, RunDir
from pyro_razor.runs.variants import load_run_config, load_variant
from pyro_razor.systems import transitions

__all__ = ["run_ppc"]

VARIANT_ORDER = ("vanilla", "learned", "oracle", "oracle_orbit")


def _variants_of(run: RunDir, variant: str | None) -> list[str]:
    if not run.root.is_dir():
        raise FileNotFoundError(f"run directory {run.root} does not exist; {RUN_HINT}")
    if variant is not None:
        ckpt = run.checkpoint(variant)
        if not ckpt.is_file():
            raise FileNotFoundError(
                f"no checkpoint for variant {variant!r}: {ckpt} is missing; {RUN_HINT} "
                "(or finish it with `pyro-razor run CONFIG --resume`)"
            )
        return [variant]
    found = run.trained_variants()
    if not found:
        raise FileNotFoundError(
            f"no trained variant in {run.root} (no {run.root}/<variant>/checkpoint.pt); {RUN_HINT}"
        )
    n = len(VARIANT_ORDER)
    return sorted(found, key=lambda v: (VARIANT_ORDER.index(v) if v in VARIANT_ORDER else n, v))


def _check_run_files(run: RunDir, variants: list[str]) -> None:
    """Read the run's summary (once written), its config and the variants' checkpoints up
    front, so that a damaged file stops the check before anything is written."""
    if run.summary_path.is_file():
        run.read_summary()
    load_run_config(run)
    for name in variants:
        run.read_checkpoint(name)


def _coverage_json(cov: Mapping[float, float]) -> dict[str, float]:
    return {f"{round(100 * k):d}%": v for k, v in cov.items()}


def _draws(model, guide, data, samples, seed, taus):
    """One-step predictive draws on the test and the training transitions."""
    dev, dtype = model.device, model.dtype
    sets = {}
    for which, traj in (("test", data.test), ("train", data.train)):
        s, ns = transitions(traj.to(device=dev, dtype=dtype))
        draws = posterior_predictive(
            model, guide, s.contiguous(), ns.contiguous(), samples, seed, tau_samples=taus
        )
        sets[which] = (s, ns, draws)
    return sets


def _rollouts(model, guide, data, R, K, samples, seed, taus):
    """Predictive rollouts of the first ``R`` test trajectories and the truth to compare."""
    dev, dtype = model.device, model.dtype
    x0 = data.test[:R, 0]
    if K + 1 <= data.test.shape[1]:
        truth = data.test[:R, : K + 1]
    elif data.system is not None:
        truth = data.true_trajectories(x0, K + 1)
    else:
        raise RunError(
            f"--horizon {K} is longer than the observed test trajectories ({data.test.shape[1]} "
            "points) and file data have no exact solution; choose a horizon below "
            f"{data.test.shape[1]}"
        )
    rollouts = predictive_rollout(
        model, guide, x0.to(device=dev, dtype=dtype), K, samples, seed + 1, tau_samples=taus
    )
    return rollouts, truth


def _figures(run: RunDir, name, idatas, draws, y, rollouts, finite, truth, K, dt, loo, labels):
    """The variant's PPC figures; returns their paths relative to the run."""
    prefix = f"ppc_{name}"
    figures = {key: run.figure(f"{prefix}_{key}.png")
               for key in ("obs", "increment", "rollout", "calibration")}
    plotting.plot_ppc_phases(
        idatas["test"], figures["obs"], "obs",
        title=f"{name}: one-step posterior predictive of the next state (test)")
    plotting.plot_ppc_phases(
        idatas["test"], figures["increment"], "increment",
        title=f"{name}: one-step predictive of the increment x(t+dt) - x(t) (test)")
    plotting.plot_rollout_bands(
        rollouts[finite] if finite.any() else rollouts, truth, figures["rollout"],
        times=np.arange(K + 1) * dt, labels=labels,
        title=f"{name}: predictive rollouts ({int(finite.sum())}/{rollouts.shape[0]} draws finite)")
    curves = {"one step (test)": calibration_curve(draws["obs"], y)}
    if finite.sum() >= 2:
        curves[f"rollouts, {K} steps"] = calibration_curve(
            rollouts[finite][:, :, 1:], as_float_array(truth, "truth")[:, 1:])
    plotting.plot_calibration(curves, figures["calibration"], n_points=y.size,
                              title=f"{name}: calibration of central intervals")
    if loo["reliable"]:
        figures["loo_pit"] = run.figure(f"{prefix}_loo_pit.png")
        plotting.plot_loo_pit(idatas["train"], figures["loo_pit"],
                              title=f"{name}: LOO-PIT on the training data")
    return {k: str(v.relative_to(run.root)) for k, v in figures.items()}


def _check_variant(run: RunDir, name: str, samples, horizon, rollout_trajectories, seed,
                   tau_samples, device) -> tuple[dict, dict]:
    """PPC of one variant: draws, InferenceData files, summaries, figures and ``ppc.json``."""
    config, data, model, guide = load_variant(run.root, name, device)
    taus = config.model.tau_samples if tau_samples is None else tau_samples
    dt = float(data.dt)
    sets = _draws(model, guide, data, samples, seed, taus)
    R = min(rollout_trajectories, data.test.shape[0])
    K = data.test.shape[1] - 1 if horizon is None else horizon
    rollouts, truth = _rollouts(model, guide, data, R, K, samples, seed, taus)
    finite = np.isfinite(rollouts).all(axis=(1, 2, 3))
    generators = model.generators()
    attrs = {"variant": name, "dt": dt, "seed": seed, "tau_samples": taus}
    idatas = {}
    for which, (s, ns, draws) in sets.items():
        extra = {"rollouts": rollouts, "rollout_truth": truth} if which == "test" else {}
        idatas[which] = to_inference_data(
            draws, ns, None if generators is None else generators.detach(),
            {"phase": list(data.names)}, states=s, attrs={**attrs, "data": which}, **extra,
        )
    save_netcdf(idatas["test"], run.file(name, "ppc.nc"))
    save_netcdf(idatas["train"], run.file(name, "ppc_train.nc"))
    s, ns, draws = sets["test"]
    y = ns.detach().cpu().double().numpy()
    rollout_cov = None
    if finite.sum() >= 2:
        rollout_cov = coverage(rollouts[finite][:, :, 1:], as_float_array(truth, "truth")[:, 1:])
    loo = loo_summary(idatas["train"])
    figures = _figures(run, name, idatas, draws, y, rollouts, finite, truth, K, dt, loo,
                       list(data.names))
    record = {
        "variant": name, "samples": samples, "seed": seed, "tau_samples": taus,
        "noise_scale": float(draws["noise_scale"]),
        "test": {
            "n_transitions": int(s.shape[0] * s.shape[1]),
            "n_values": int(y.size),
            "coverage": _coverage_json(coverage(draws["obs"], y)),
            "mlpd_per_transition": mean_log_predictive_density(draws["log_likelihood"]),
            "mse_predictive_mean": float(((draws["mean"].mean(0) - y) ** 2).mean()),
        },
        "rollout": {
            "trajectories": R, "horizon_steps": K, "horizon_time": K * dt,
            "finite_draws": int(finite.sum()),
            "coverage": None if rollout_cov is None else _coverage_json(rollout_cov),
        },
        "loo_train": loo,
        "files": {"netcdf": f"{name}/ppc.nc", "netcdf_train": f"{name}/ppc_train.nc"},
        "figures": figures,
    }
    run.write_json(name, "ppc.json", record)
    return record, idatas


def run_ppc(
    run_dir: str | os.PathLike,
    variant: str | None = None,
    samples: int = 100,
    horizon: int | None = None,
    *,
    rollout_trajectories: int = 3,
    seed: int = 0,
    tau_samples: int | None = None,
    device: str | None = None,
    verbose: bool = True,
) -> dict[str, object]:
    """Posterior predictive checks of a finished run (see the module docstring).

    Finally writes ``ppc_comparison.json`` (:func:`~pyro_razor.analysis.compare_variants` over
    every variant of the run that has PPC files, including ones from earlier calls) and prints
    a summary.

    Args:
        run_dir: the run directory.
        variant: one variant, or ``None`` for all trained ones.
        samples: posterior draws ``P`` (one step and rollouts).
        horizon: rollout steps (default ``test_points - 1``; longer horizons are compared with
            the exact solution).
        rollout_trajectories: test trajectories rolled out.
        seed: RNG seed of the draws.
        tau_samples: symmetrisation samples per model call (default: the training
            estimator's ``model.tau_samples``, since the cost grows with ``samples x
            tau_samples``; pass ``evaluation.tau_samples`` for a less noisy ``H_hat``).
        device: where to evaluate (default: the run's device, or the CPU).
        verbose: print the summary.

    Returns:
        ``{"variants": {name: ppc.json contents}, "comparison": ...}``.

    Raises:
        FileNotFoundError: no run directory, config or checkpoint (run ``pyro-razor run
            CONFIG``).
        RunError: a damaged ``summary.json`` or checkpoint (checked before anything is
            written).
        ConfigError: a damaged ``config.toml``.
    """
    run = RunDir(run_dir)
    variants = _variants_of(run, variant)
    _check_run_files(run, variants)
    check_int(samples, "samples", 2)
    check_int(rollout_trajectories, "rollout_trajectories")
    if horizon is not None:
        check_int(horizon, "horizon")
    results, fresh = {}, {}
    for name in variants:
        results[name], fresh[name] = _check_variant(
            run, name, samples, horizon, rollout_trajectories, seed, tau_samples, device
        )
    test_idatas, train_idatas = {}, {}
    for other in run.variants_with_ppc():  # this call's variants and earlier ones
        if other in fresh:
            test_idatas[other], train_idatas[other] = fresh[other]["test"], fresh[other]["train"]
        else:
            test_idatas[other] = load_netcdf(run.file(other, "ppc.nc"))
            train_idatas[other] = load_netcdf(run.file(other, "ppc_train.nc"))
    comparison = compare_variants(test_idatas, train_idatas)
    run.write_ppc_comparison(comparison)
    if verbose:
        print(_summary_text(results, comparison))
    return {"variants": results, "comparison": comparison}


def _summary_text(results: Mapping[str, dict], comparison: Mapping[str, object]) -> str:
    lines = ["posterior predictive checks (test set; coverage of central intervals):"]
    for name, r in results.items():
        cov = r["test"]["coverage"]
        rc = r["rollout"]["coverage"] or {}
        loo = r["loo_train"]
        lines.append(
            f"  {name:8s} mlpd/transition {r['test']['mlpd_per_transition']:9.3f}   "
            f"one-step 50%/90%: {cov['50%']:.2f}/{cov['90%']:.2f}   "
            f"rollout 50%/90%: {rc.get('50%', float('nan')):.2f}/{rc.get('90%', float('nan')):.2f}"
            f"   train PSIS-LOO {'ok' if loo['reliable'] else 'UNRELIABLE'} "
            f"({100 * loo['share_k_gt_good_k']:.0f}% k>{loo['good_k']:.2f}, "
            f"{100 * loo['share_k_gt_0.7']:.0f}% k>0.7)"
        )
    lines.append(f"  best held-out mlpd: {comparison['best_test']}; {comparison['loo_note']}")
    return "\n".join(lines)
