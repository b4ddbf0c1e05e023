r"""Run one experiment end to end: data, every model variant, evaluation, analysis and figures.

:func:`run_experiment` makes the dataset once (the same data for every variant), then for each
variant (``"vanilla"`` HNN, ``"learned"`` symmetry, ``"oracle"`` ground truth) builds the model
and guide from a fresh param store and the same seed, trains it with
:func:`pyro_razor.inference.train` (checkpointed, resumable), evaluates it and writes::

    <out_dir>/
      config.toml            the resolved config (CLI overrides applied)
      summary.json           per-variant figures of the paper's tables (contract below)
      <variant>/
        checkpoint.pt        resumable training state (param store, optimiser, RNGs, buffers)
        history.csv          one row per epoch: -ELBO/N, NLL/N, KL/N, train MSE, lr, seconds
        metrics.json         the summary entry of this variant, plus prior/noise variances
        longterm.json        long-horizon rollouts against the exact solution
        symmetry.json        ("learned") SVD analysis of the learned generators (section 5.1)
        generators.pt        ("learned") the learned generators, ``(K, M+1, M+1)``
      figures/               training curves, singular values, generators, rollouts,
                             conservation drift, phase portraits (2-d systems, Fig. 2)

``summary.json``::

    {"experiment": str, "system": str, "device": str, "dtype": str, "n_train_transitions": int,
     "variants": {NAME: {"train_mse", "nll_per_n", "kl_per_n", "neg_elbo_per_n", "test_mse",
                         "test_nll_per_n", ["test_mse_<set>", "test_nll_per_n_<set>"],
                         "wall_time_s", "seconds_per_step", "epochs", "steps",
                         "num_quantities", "rollout_mse_final", "rollout_mse_mean",
                         "energy_drift_final", ["n_significant", "true_dim", "recovered",
                         "parallelness"]}}}

Figures are per transition as in the paper: ``NLL/N`` is the expected negative log-likelihood
``-E_q log p(x_{t+dt} | x_t, theta)`` summed over phase coordinates and divided by
``N = n_train (train_points - 1)``; ``KL/N = KL(q || p) / N``; ``-ELBO/N = NLL/N + KL/N``.
Extra test sets (n-body ``"moved"``/``"wider"``) appear as ``test_mse_moved``, ....
"""

from __future__ import annotations

import csv
import functools
import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer.autoguide import (
    AutoDelta,
    AutoDiagonalNormal,
    AutoLowRankMultivariateNormal,
    AutoNormal,
)

from pyro_razor import __version__, inference
from pyro_razor.analysis import analyse_generators, conservation_drift
from pyro_razor.atomic import atomic_path
from pyro_razor.config import ExperimentConfig, load_experiment
from pyro_razor.configio import ConfigError, dump_toml, replace_path, to_dict
from pyro_razor.guides import MatrixNormalGuide
from pyro_razor.integrators import rollout
from pyro_razor.models import NoetherRazorModel, SymmetrisedHamiltonian, make_noise, make_prior
from pyro_razor.symmetry import SymmetryMeasure
from pyro_razor.systems import (
    HamiltonianSystem,
    TrajectoryData,
    make_dataset,
    simulate,
    transitions,
)

__all__ = [
    "VARIANT_LABELS",
    "RunError",
    "analyse_run",
    "build_guide",
    "build_model",
    "format_table",
    "hamiltonian_energy",
    "load_variant",
    "long_horizon_rollout",
    "posterior_hamiltonian",
    "read_history",
    "resolve_config",
    "resolve_device",
    "restore_checkpoint",
    "run_experiment",
    "symmetry_analysis",
]

VARIANT_LABELS = {
    "vanilla": "HNN",
    "learned": "HNN + learned symmetry",
    "oracle": "HNN + fixed symmetry (oracle)",
}


class RunError(ValueError):
    """A user error about a run (device not available, output directory in use, resume
    mismatch, not a run directory); the CLI prints it as one line."""


# ----------------------------------------------------------------------------- building blocks


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


def resolve_config(
    config: ExperimentConfig,
    device: str | None = None,
    seed: int | None = None,
    epochs: int | None = None,
) -> ExperimentConfig:
    """Apply command-line overrides: ``device``; ``seed`` (sets ``train.seed`` and
    ``model.eta_seed``; the data keep ``data.seed``); ``epochs`` (``train.epochs``)."""
    if device is not None:
        config = replace_path(config, "device", device)
    if seed is not None:
        config = replace_path(config, "train.seed", seed)
        config = replace_path(config, "model.eta_seed", seed)
    if epochs is not None:
        config = replace_path(config, "train.epochs", epochs)
    return config


def build_model(
    config: ExperimentConfig,
    variant: str,
    system: HamiltonianSystem,
    device: torch.device | str = "cpu",
) -> NoetherRazorModel:
    """The model of one variant, on ``device`` in ``config.dtype``.

    ``"vanilla"``: no symmetrisation (``K = 0``); ``"learned"``: ``model.num_quantities``
    learnable quadratic quantities initialised from ``N(0, eta_init_std^2)`` with
    ``eta_seed``; ``"oracle"``: the system's ground-truth generators, fixed.
    Call ``pyro.clear_param_store()`` and ``pyro.set_rng_seed`` first (see
    :func:`run_experiment`).
    """
    mc = config.model
    kwargs = dict(
        hidden=mc.hidden,
        activation=mc.activation,
        elu_alpha=mc.elu_alpha,
        prior=make_prior(mc.prior, mc.prior_variance),
        noise=make_noise(mc.noise, mc.noise_variance),
        measure=SymmetryMeasure(mc.measure, mc.measure_scale),
        tau_samples=mc.tau_samples,
        integrator=mc.integrator,
        integrator_steps=mc.integrator_steps,
        checkpoint_steps=mc.checkpoint_steps,
    )
    M, dt = system.phase_dim, config.data.dt
    if variant == "vanilla":
        model = NoetherRazorModel.vanilla(M, dt, **kwargs)
    elif variant == "learned":
        model = NoetherRazorModel.learned(
            M,
            dt,
            mc.num_quantities,
            init_std=mc.eta_init_std,
            generator=torch.Generator().manual_seed(mc.eta_seed),
            **kwargs,
        )
    elif variant == "oracle":
        model = NoetherRazorModel.oracle(system.generators(dtype=torch.float64), dt, **kwargs)
    else:
        raise ValueError(f"unknown variant {variant!r}; choose 'vanilla', 'learned' or 'oracle'")
    return model.to(device=torch.device(device), dtype=config.torch_dtype)


def build_guide(config: ExperimentConfig, model: NoetherRazorModel):
    """The guide named by ``config.guide.kind`` for ``model`` (network weights only)."""
    gc = config.guide
    if gc.kind == "matrix_normal":
        return MatrixNormalGuide(model, init_scale=gc.init_scale)
    if gc.kind == "auto_normal":
        return AutoNormal(model, init_loc_fn=model.init_loc_fn, init_scale=gc.init_scale)
    if gc.kind == "auto_lowrank":
        return AutoLowRankMultivariateNormal(
            model, init_loc_fn=model.init_loc_fn, init_scale=gc.init_scale, rank=gc.rank
        )
    if gc.kind == "auto_delta":
        return AutoDelta(model, init_loc_fn=model.init_loc_fn)
    if gc.kind == "auto_diagonal":
        return AutoDiagonalNormal(model, init_loc_fn=model.init_loc_fn, init_scale=gc.init_scale)
    raise ValueError(f"unknown guide kind {gc.kind!r}")


def _fresh_variant(config, variant, system, device, states, next_states):
    """Clear the param store, seed, build model and guide, and create the guide's params."""
    pyro.clear_param_store()
    pyro.set_rng_seed(config.train.seed)
    model = build_model(config, variant, system, device)
    guide = build_guide(config, model)
    with poutine.block(), torch.no_grad():
        guide(states[:1], next_states[:1])
    return model, guide


def restore_checkpoint(ckpt: dict, model, guide, states: torch.Tensor) -> None:
    """Load a checkpoint's param store and buffers into ``model`` and ``guide`` (for
    prediction; :func:`pyro_razor.inference.train` restores the optimiser itself).

    PyroModules read the param store only inside a call, so both are called once afterwards
    to pick the restored values up.
    """
    device = states.device
    state = ckpt["param_store"]
    pyro.get_param_store().set_state(
        {
            "params": {k: v.to(device) for k, v in state["params"].items()},
            "constraints": state["constraints"],
        }
    )
    for i, module in enumerate((model, guide)):
        for name, buf in module.named_buffers():
            key = f"{i}.{name}"
            if key in ckpt["buffers"]:
                buf.copy_(ckpt["buffers"][key].to(buf))
    with poutine.block(), torch.no_grad():
        guide_trace = poutine.trace(guide).get_trace(states[:1])
        poutine.replay(model, trace=guide_trace)(states[:1])


# ----------------------------------------------------------------------------- prediction


@torch.no_grad()
def posterior_hamiltonian(
    model: NoetherRazorModel, guide, states: torch.Tensor, tau_samples: int, num_samples: int
) -> SymmetrisedHamiltonian:
    """``H_hat`` for ``num_samples`` weight draws from the guide and one fixed set of
    ``tau_samples`` symmetry transforms (torch RNG: seed it for reproducibility).

    Predictions average over the draws rather than plugging in the posterior-mean weights: the
    network is nonlinear in its weights, and under a symmetrised model the posterior is broad
    along weight directions the orbit average does not see, so ``F`` at the mean weights can be
    far from the mean ``H_hat`` (on the SHO it was almost flat where the data lie).

    ``states``: any ``(T, n, M)`` model input (only its shape/device are used by the guide).
    """
    draws = [poutine.trace(guide).get_trace(states[:1]) for _ in range(num_samples)]
    weights = [
        torch.stack([d.nodes[s]["value"].detach().reshape(d.nodes[s]["value"].shape[-2:])
                     for d in draws])
        for s in model.weight_sites
    ]
    transforms = model.transforms(tau_samples)
    return model.hamiltonian(weights, None if transforms is None else transforms.detach())


ROLLOUT_INTEGRATOR = "rk4"


@torch.no_grad()
def long_horizon_rollout(
    model: NoetherRazorModel,
    H: SymmetrisedHamiltonian,
    system: HamiltonianSystem,
    x0: torch.Tensor,
    n_points: int,
    dt: float,
) -> dict:
    """Roll ``x0`` out far past the training horizon with the learned ``H_hat`` and exactly.

    The learned trajectory integrates ``J grad H_hat`` with RK4 and the model's number of
    sub-steps per ``dt`` (:data:`ROLLOUT_INTEGRATOR`), so that what is measured is the learned
    Hamiltonian's dynamics rather than the training integrator's error: explicit Euler, the
    paper's likelihood integrator, multiplies the energy of an oscillator by ``(1 + h^2)`` every
    step, i.e. by ~6 over 500 steps of 0.06. The truth comes from
    :func:`~pyro_razor.systems.simulate`.

    Args:
        model: supplies the integrator and its steps per ``dt``.
        H: the Hamiltonian to integrate (see :func:`posterior_hamiltonian`).
        system: the true system.
        x0: ``(R, M)`` initial conditions.
        n_points: states per rollout including ``x0``.
        dt: time between states.

    Returns:
        dict with ``times (P,)``, ``prediction``/``truth`` ``(R, P, M)`` float64 CPU tensors,
        ``mse (P,)`` (over trajectories and coordinates; ``nan`` after a divergence),
        ``finite_points`` (leading points where the prediction is finite), ``drift`` (name to
        ``(P,)`` mean ``|C(x_t) - C(x_0)|`` along the prediction for ``"H"`` and every true
        conserved quantity, ``nan`` after a divergence), ``truth_drift`` (the same along the
        exact solution) and ``learned_energy_drift (P,)`` (``H_hat`` along its own rollout).
    """
    anchor = H.weights[0]
    S, (R, M) = H.num_weight_samples, x0.shape
    x = x0.to(device=anchor.device, dtype=anchor.dtype)[None].expand(S, R, M)
    samples = rollout(
        H.vector_field, x, dt, n_points, steps_per_point=model.integrator_steps,
        method=ROLLOUT_INTEGRATOR,
    )  # (S, R, P, M): one rollout per weight draw
    learned_energy = _per_sample_energy(H, samples.reshape(S, -1, M)).reshape(S * R, n_points)
    samples = samples.detach().to(device="cpu", dtype=torch.float64)
    pred = samples.mean(0)  # the posterior predictive mean trajectory
    truth = simulate(system, x0.detach().cpu().double(), n_points, dt)
    finite = torch.isfinite(pred).all(dim=(0, 2))
    finite_points = int(finite.long().cumprod(0).sum())
    mse = ((pred - truth) ** 2).mean(dim=(0, 2))
    mse[finite_points:] = float("nan")
    quantities = {"H": system.H, **{c.name: c for c in system.conserved_quantities}}
    nan = torch.full((n_points,), float("nan"), dtype=torch.float64)
    drift = {name: nan.clone() for name in quantities}
    if finite_points > 0:  # drift along each draw's rollout, averaged over draws and starts
        along = samples.reshape(S * R, n_points, M)[:, :finite_points]
        for name, values in conservation_drift(along, quantities).items():
            drift[name][:finite_points] = values
    truth_drift = conservation_drift(truth, quantities)
    learned_energy = learned_energy.detach().cpu().double()
    learned_drift = (learned_energy - learned_energy[:, :1]).abs().mean(0)
    return {
        "times": torch.arange(n_points, dtype=torch.float64) * dt,
        "prediction": pred,
        "truth": truth,
        "mse": mse,
        "finite_points": finite_points,
        "drift": drift,
        "truth_drift": truth_drift,
        "learned_energy_drift": learned_drift,
    }


@torch.no_grad()
def _per_sample_energy(
    H: SymmetrisedHamiltonian, x: torch.Tensor, max_points: int = 2**18
) -> torch.Tensor:
    """``H_hat`` of each weight draw at its own points ``x (P, N, M)`` -> ``(P, N)``, in chunks
    of at most ``max_points`` symmetrised points (``P x chunk x S``)."""
    anchor = H.weights[0]
    x = torch.as_tensor(x).to(device=anchor.device, dtype=anchor.dtype)
    S = 1 if H.transforms is None else H.transforms.shape[0]
    chunk = max(1, max_points // (S * H.num_weight_samples))
    parts = [H.energy(x[:, i : i + chunk]) for i in range(0, x.shape[1], chunk)]
    return torch.cat(parts, dim=1) if parts else x.new_zeros(x.shape[0], 0)


@torch.no_grad()
def hamiltonian_energy(
    H: SymmetrisedHamiltonian, x: torch.Tensor, max_points: int = 2**18
) -> torch.Tensor:
    """The posterior mean ``E_q[H_hat(x)]`` over ``H``'s weight draws for ``(N, M)`` points,
    ``(N,)``, in chunks so that at most ``max_points`` symmetrised points are in memory."""
    x = torch.as_tensor(x)
    expanded = x[None].expand(H.num_weight_samples, *x.shape)
    return _per_sample_energy(H, expanded, max_points).mean(0)


def _at(values: torch.Tensor, index: int) -> float:
    return float(values[min(index, values.shape[0] - 1)])


def _longterm_json(result: dict, variant: str, config: ExperimentConfig, tau_samples) -> dict:
    """The ``longterm.json`` record of a :func:`long_horizon_rollout` result."""
    mse, n_points = result["mse"], result["mse"].shape[0]
    finite = result["finite_points"]
    train_step = config.data.train_points - 1
    test_step = config.data.test_points - 1
    return {
        "variant": variant,
        "dt": config.data.dt,
        "rollout_points": n_points,
        "horizon": (n_points - 1) * config.data.dt,
        "train_horizon_step": train_step,
        "test_horizon_step": test_step,
        "trajectories": int(result["prediction"].shape[0]),
        "integrator": ROLLOUT_INTEGRATOR,
        "integrator_steps": config.model.integrator_steps,
        "tau_samples": tau_samples,
        "finite_points": finite,
        "mse_final": float(mse[-1]),
        "mse_mean": float(mse.mean()),
        "mse_at_train_horizon": _at(mse, train_step),
        "mse_at_test_horizon": _at(mse, test_step),
        "drift_final": {k: float(v[-1]) for k, v in result["drift"].items()},
        "drift_max": {k: float(v.max()) for k, v in result["drift"].items()},
        "truth_drift_final": {k: float(v[-1]) for k, v in result["truth_drift"].items()},
        "learned_energy_drift_final": float(result["learned_energy_drift"][-1]),
        "times": result["times"].tolist(),
        "mse": mse.tolist(),
        "drift": {k: v.tolist() for k, v in result["drift"].items()},
        "learned_energy_drift": result["learned_energy_drift"].tolist(),
    }


# ----------------------------------------------------------------------------- files


def _clean(obj):
    """A JSON-safe copy: non-finite floats become ``None``, tensors become lists."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _clean(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj


def _write_text(path: Path, text: str) -> None:
    """Write atomically (temporary file + ``os.replace``)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _write_json(path: Path, obj) -> None:
    _write_text(path, json.dumps(_clean(obj), indent=2, allow_nan=False) + "\n")


def _read_json(path: Path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _write_history(path: Path, history: Sequence[dict]) -> None:
    keys = ["epoch", "neg_elbo_per_n", "nll_per_n", "kl_per_n", "train_mse", "lr", "seconds"]
    for record in history:
        keys += [k for k in record if k not in keys]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)


def read_history(path: str | os.PathLike) -> list[dict[str, float]]:
    """Read a ``history.csv`` back (``epoch`` as int, the rest as float)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [
        {k: (int(float(v)) if k == "epoch" else float(v)) for k, v in row.items() if v != ""}
        for row in rows
    ]


# ----------------------------------------------------------------------------- the runner


@dataclass
class _Data:
    """The dataset as model tensors on the run's device and dtype."""

    raw: TrajectoryData
    states: torch.Tensor
    next_states: torch.Tensor
    tests: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    @classmethod
    def make(cls, raw: TrajectoryData, device: torch.device, dtype: torch.dtype) -> _Data:
        def move(traj):
            s, n = transitions(traj.to(device=device, dtype=dtype))
            return s.contiguous(), n.contiguous()

        states, next_states = move(raw.train)
        tests = {"": move(raw.test)}
        tests.update({name: move(traj) for name, traj in raw.extra.items()})
        return cls(raw, states, next_states, tests)


@dataclass
class _Artefacts:
    """What one variant contributes to the figures."""

    history: list[dict]
    hamiltonian: SymmetrisedHamiltonian | None = None
    longterm: dict | None = None
    generators: torch.Tensor | None = None
    analysis: object | None = None


def _check_out_dir(out: Path, config: ExperimentConfig, resume: bool, overwrite: bool) -> None:
    existing = out / "config.toml"
    has_run = existing.is_file() or any(
        (out / v / "checkpoint.pt").is_file() for v in ("vanilla", "learned", "oracle")
    )
    if not has_run:
        return
    if not resume:
        if overwrite:
            return
        raise RunError(
            f"{out} already holds a run; pass --resume to continue it, --overwrite to replace "
            "it, or choose another --out"
        )
    if existing.is_file():
        try:
            previous = load_experiment(existing)
        except ConfigError as exc:
            raise RunError(f"cannot resume: {exc}") from exc
        old, new = to_dict(previous), to_dict(config)
        old.pop("device", None)
        new.pop("device", None)
        if old != new:
            diff = sorted(_differences(old, new))
            raise RunError(
                f"cannot resume {out}: its config differs in {', '.join(diff)}; resume with the "
                "same settings, or start a new run with another --out"
            )


def _differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        path = f"{prefix}{key}"
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            out += _differences(a[key], b[key], path + ".")
        elif a.get(key) != b.get(key):
            out.append(path)
    return out


def run_experiment(
    config: ExperimentConfig,
    out_dir: str | os.PathLike,
    device: str | None = None,
    seed: int | None = None,
    epochs: int | None = None,
    resume: bool = False,
    progress: bool = True,
    overwrite: bool = False,
    figures: bool = True,
) -> dict:
    """Train, evaluate and analyse every variant of ``config``; write ``out_dir``.

    Args:
        config: the experiment.
        out_dir: output directory (created); see the module docstring for its contents.
        device, seed, epochs: overrides (see :func:`resolve_config`).
        resume: continue every unfinished variant from its checkpoint, skip finished ones
            (their saved metrics are reused); the config must match the saved one (except
            the device).
        progress: show progress bars.
        overwrite: replace an existing run in ``out_dir`` (otherwise that is an error).
        figures: draw the figures (``False`` saves a few seconds; :func:`analyse_run` draws
            them later).

    Returns:
        The summary dict (also written to ``summary.json``).

    Raises:
        RunError: device not available, ``out_dir`` holds another run, or resume mismatch.
        ConfigError: an override is invalid.
    """
    config = resolve_config(config, device=device, seed=seed, epochs=epochs)
    dev = resolve_device(config.device)
    out = Path(out_dir)
    _check_out_dir(out, config, resume, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    _write_text(out / "config.toml", dump_toml(config))

    raw = make_dataset(config.data.spec())
    system = raw.spec.make_system()
    data = _Data.make(raw, dev, config.torch_dtype)
    summary = {
        "experiment": config.name,
        "system": config.data.system,
        "device": str(dev),
        "dtype": config.dtype,
        "n_train_transitions": raw.n_transitions,
        "pyro_razor_version": __version__,
        "variants": {},
    }
    artefacts: dict[str, _Artefacts] = {}
    for variant in config.variants:
        metrics, art = _run_variant(config, variant, system, data, dev, out, resume, progress)
        summary["variants"][variant] = metrics
        artefacts[variant] = art
        _write_json(out / "summary.json", summary)
    if figures:
        _make_figures(out, config, system, data, artefacts)
    return summary


def _run_variant(config, variant, system, data, dev, out, resume, progress):
    vdir = out / variant
    vdir.mkdir(parents=True, exist_ok=True)
    ckpt_path = vdir / "checkpoint.pt"
    model, guide = _fresh_variant(config, variant, system, dev, data.states, data.next_states)
    ckpt = inference.load_checkpoint(ckpt_path) if resume and ckpt_path.is_file() else None
    finished = ckpt is not None and ckpt["epoch"] >= config.train.epochs
    if finished:
        restore_checkpoint(ckpt, model, guide, data.states)
        history = list(ckpt["history"])
    else:
        try:
            result = inference.train(
                model, guide, data.states, data.next_states, config.train,
                checkpoint=ckpt_path, resume=ckpt is not None, progress=progress,
                description=f"{config.name}/{variant}",
            )
        except ValueError as exc:
            if "cannot resume" in str(exc):
                raise RunError(str(exc)) from exc
            raise
        history = result.history
    _write_history(vdir / "history.csv", history)

    saved = vdir / "metrics.json"
    if finished and saved.is_file():
        metrics = _read_json(saved)
    else:
        metrics = _evaluate_variant(config, model, guide, data, history)
    art = _Artefacts(history=history)
    metrics.update(_analyse_variant(config, variant, system, model, guide, data, vdir, art))
    _write_json(saved, metrics)
    return metrics, art


def _evaluate_variant(config, model, guide, data: _Data, history) -> dict:
    """Train/test metrics of the paper's tables, plus timing."""
    ev = config.evaluation
    N = data.raw.n_transitions
    pyro.set_rng_seed(config.train.seed)
    train = inference.evaluate(
        model, guide, data.states, data.next_states, ev.num_samples, ev.tau_samples,
        chunk_size=ev.chunk_size,
    )
    kl = inference.kl_divergence_estimate(model, guide, data.states) / N
    metrics = {
        "train_mse": train["mse"],
        "nll_per_n": train["nll_per_n"],
        "kl_per_n": kl,
        "neg_elbo_per_n": train["nll_per_n"] + kl,
    }
    for name, (s, n) in data.tests.items():
        test = inference.evaluate(
            model, guide, s, n, ev.num_samples, ev.tau_samples, chunk_size=ev.chunk_size
        )
        suffix = f"_{name}" if name else ""
        metrics[f"test_mse{suffix}"] = test["mse"]
        metrics[f"test_nll_per_n{suffix}"] = test["nll_per_n"]
    T = data.states.shape[0]
    B = T if config.train.batch_size is None else min(config.train.batch_size, T)
    steps = len(history) * math.ceil(T / B)
    wall = float(sum(record.get("seconds", 0.0) for record in history))
    metrics.update(
        {
            "wall_time_s": wall,
            "seconds_per_step": wall / steps if steps else float("nan"),
            "epochs": len(history),
            "steps": steps,
            "num_quantities": model.num_quantities,
            "final_train_neg_elbo_per_n": history[-1]["neg_elbo_per_n"] if history else None,
            "prior_variances": model.hamiltonian_net.prior.variances().detach().cpu().tolist(),
            "noise_variance": float(model.noise.variance),
        }
    )
    return metrics


def _analyse_variant(config, variant, system, model, guide, data: _Data, vdir: Path, art):
    """Long-horizon rollouts and (learned) symmetry analysis; writes their files, fills
    ``art`` and returns the summary fields they contribute."""
    ev = config.evaluation
    pyro.set_rng_seed(config.train.seed + 1)
    H = posterior_hamiltonian(model, guide, data.states, ev.tau_samples, ev.num_samples)
    art.hamiltonian = H
    R = min(ev.rollout_trajectories, data.raw.test.shape[0])
    result = long_horizon_rollout(
        model, H, system, data.raw.test[:R, 0], ev.rollout_points, config.data.dt
    )
    art.longterm = result
    longterm = _longterm_json(result, variant, config, ev.tau_samples if model.num_quantities
                              else None)
    _write_json(vdir / "longterm.json", longterm)
    fields = {
        "rollout_mse_final": longterm["mse_final"],
        "rollout_mse_mean": longterm["mse_mean"],
        "rollout_mse_at_train_horizon": longterm["mse_at_train_horizon"],
        "energy_drift_final": longterm["drift_final"]["H"],
    }
    if variant == "learned":
        G = model.generators().detach()
        art.generators = G.cpu()
        torch.save(G.cpu(), vdir / "generators.pt")
        analysis = symmetry_analysis(config, system, G)
        art.analysis = analysis
        _write_json(vdir / "symmetry.json", analysis.to_json())
        L = analysis.true_dim
        fields.update(
            {
                "n_significant": analysis.n_significant,
                "true_dim": L,
                "recovered": analysis.recovered,
                "parallelness": analysis.parallelness[: max(L, analysis.n_significant)],
            }
        )
    return fields


def symmetry_analysis(config: ExperimentConfig, system: HamiltonianSystem, G: torch.Tensor):
    """:func:`~pyro_razor.analysis.analyse_generators` of learned generators ``(K, M+1, M+1)``
    against the system's ground truth, with the config's thresholds."""
    ev = config.evaluation
    true = system.generators(dtype=torch.float64) if system.conserved_quantities else None
    names = [c.name for c in system.conserved_quantities]
    return analyse_generators(
        G.detach().cpu().double(), true, names or None, threshold=ev.threshold,
        min_norm=ev.min_norm, parallel_level=ev.parallel_level,
    )


# ----------------------------------------------------------------------------- figures


def _figure(name: str, fn, *args, **kwargs) -> None:
    """Draw one figure; a plotting failure warns instead of losing a finished run."""
    try:
        fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - figures must never lose results
        warnings.warn(f"figure {name} failed: {type(exc).__name__}: {exc}", RuntimeWarning,
                      stacklevel=2)


def _make_figures(out: Path, config, system, data: _Data, artefacts: dict[str, _Artefacts]):
    try:
        from pyro_razor import plotting
    except ImportError as exc:  # pragma: no cover - plotting is part of the package
        warnings.warn(f"no figures: cannot import pyro_razor.plotting ({exc})", RuntimeWarning,
                      stacklevel=2)
        return
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    M = system.phase_dim
    labels = plotting.phase_labels(M)
    _figure(
        "training_curves", plotting.plot_training_curves,
        {v: a.history for v, a in artefacts.items()}, fig_dir / "training_curves.png",
    )
    learned = {v: a for v, a in artefacts.items() if a.analysis is not None}
    if learned:
        _figure(
            "singular_values", plotting.plot_singular_values,
            {v: a.analysis for v, a in learned.items()}, fig_dir / "singular_values.png",
            reference_levels=(config.evaluation.parallel_level,),
        )
        for v, a in learned.items():
            _figure(
                "generators", plotting.plot_generators, a.generators, a.analysis, labels,
                fig_dir / f"generators_{v}.png",
            )
    rollouts = {v: a.longterm for v, a in artefacts.items() if a.longterm is not None}
    if rollouts:
        first = next(iter(rollouts.values()))
        _figure(
            "rollouts", plotting.plot_rollouts, first["times"], first["truth"][0],
            {v: r["prediction"][0] for v, r in rollouts.items()}, labels,
            fig_dir / "rollouts.png",
        )
        _figure(
            "conservation_drift", plotting.plot_conservation_drift, first["times"],
            {v: r["drift"] for v, r in rollouts.items()}, fig_dir / "conservation_drift.png",
        )
    if M == 2:
        hamiltonians = {
            VARIANT_LABELS[v]: functools.partial(hamiltonian_energy, a.hamiltonian)
            for v, a in artefacts.items() if a.hamiltonian is not None
        }
        hamiltonians["True H"] = system.H
        extent = 1.25 * float(data.raw.train.abs().max())
        _figure(
            "phase_portraits", plotting.plot_phase_portraits, hamiltonians, data.raw.train,
            extent, fig_dir / "phase_portraits.png", resolution=config.evaluation.grid,
            dtype=torch.float64,
        )


# ----------------------------------------------------------------------------- finished runs


def _load_run_config(run_dir: Path) -> ExperimentConfig:
    path = run_dir / "config.toml"
    if not path.is_file():
        raise FileNotFoundError(
            f"{run_dir} is not a pyro-razor run directory: {path.name} is missing "
            "(create one with `pyro-razor run CONFIG --out DIR`)"
        )
    return load_experiment(path)


def _usable_device(config: ExperimentConfig, device: str | None) -> torch.device:
    if device is not None:
        return resolve_device(device)
    try:
        return resolve_device(config.device)
    except RunError:
        warnings.warn(
            f"the run used device {config.device!r}, which is not available here; using the CPU",
            RuntimeWarning,
            stacklevel=3,
        )
        return torch.device("cpu")


def load_variant(
    run_dir: str | os.PathLike, variant: str, device: str | None = None
) -> tuple[ExperimentConfig, TrajectoryData, NoetherRazorModel, object]:
    """Rebuild a trained variant from ``run_dir`` for prediction.

    Reads ``config.toml``, regenerates (or loads from the cache) the dataset, builds the model
    and guide and restores the checkpoint's param store and buffers (prior variances, noise).

    Args:
        run_dir: a directory written by :func:`run_experiment`.
        variant: ``"vanilla"``, ``"learned"`` or ``"oracle"``.
        device: where to put the model (default: the run's device, or the CPU if that is not
            available here).

    Returns:
        ``(config, data, model, guide)``; ``data`` is the float64 CPU
        :class:`~pyro_razor.systems.TrajectoryData`; model and guide are on ``device`` in the
        run's dtype.

    Raises:
        FileNotFoundError: no ``config.toml`` or no checkpoint for ``variant``.
        RunError: ``variant`` is not part of the run.
    """
    run_dir = Path(run_dir)
    config = _load_run_config(run_dir)
    if variant not in config.variants:
        raise RunError(
            f"variant {variant!r} is not part of the run in {run_dir}; it has "
            f"{', '.join(config.variants)}"
        )
    ckpt_path = run_dir / variant / "checkpoint.pt"
    if not ckpt_path.is_file():
        raise FileNotFoundError(
            f"no checkpoint for variant {variant!r} in {run_dir} ({ckpt_path} is missing); "
            "train it first with `pyro-razor run` (or --resume an interrupted run)"
        )
    dev = _usable_device(config, device)
    raw = make_dataset(config.data.spec())
    system = raw.spec.make_system()
    data = _Data.make(raw, dev, config.torch_dtype)
    model, guide = _fresh_variant(config, variant, system, dev, data.states, data.next_states)
    restore_checkpoint(inference.load_checkpoint(ckpt_path), model, guide, data.states)
    return config, raw, model, guide


def analyse_run(run_dir: str | os.PathLike, device: str | None = None) -> dict:
    """Recompute the long-horizon and symmetry analysis files, the summary fields they feed and
    every figure of a finished run from its checkpoints (training metrics are kept).

    Raises:
        FileNotFoundError: ``run_dir`` has no ``summary.json``/``config.toml`` or a checkpoint
            is missing.
    """
    run_dir = Path(run_dir)
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        raise FileNotFoundError(
            f"no summary.json in {run_dir}: not a finished pyro-razor run (run "
            "`pyro-razor run CONFIG --out DIR` first, or --resume an interrupted one)"
        )
    summary = _read_json(summary_path)
    config = _load_run_config(run_dir)
    artefacts: dict[str, _Artefacts] = {}
    data = system = None
    for variant in summary.get("variants", {}):
        config, raw, model, guide = load_variant(run_dir, variant, device)
        if data is None:
            system = raw.spec.make_system()
            data = _Data.make(raw, _model_device(model), config.torch_dtype)
        vdir = run_dir / variant
        history_path = vdir / "history.csv"
        history = read_history(history_path) if history_path.is_file() else []
        art = _Artefacts(history=history)
        fields = _analyse_variant(config, variant, system, model, guide, data, vdir, art)
        summary["variants"][variant].update(fields)
        metrics_path = vdir / "metrics.json"
        metrics = _read_json(metrics_path) if metrics_path.is_file() else {}
        metrics.update(fields)
        _write_json(metrics_path, metrics)
        artefacts[variant] = art
    _write_json(summary_path, summary)
    if data is not None:
        _make_figures(run_dir, config, system, data, artefacts)
    return summary


def _model_device(model: NoetherRazorModel) -> torch.device:
    """The device of a model's tensors."""
    return model.hamiltonian_net._anchor.device


# ----------------------------------------------------------------------------- tables


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and not math.isfinite(value):
        return "n/a"
    value = float(value)
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.3e}"
    return f"{value:.4g}"


def _ppc_columns(run_dir: Path, variants: list[str]) -> dict[str, tuple[str, str]]:
    """Held-out mean log predictive density per transition and the PSIS-LOO verdict of each
    variant, from ``ppc_comparison.json`` (written by ``pyro-razor ppc``); empty if absent."""
    path = run_dir / "ppc_comparison.json"
    if not path.is_file():
        return {}
    comparison = _read_json(path)
    out = {}
    for variant in variants:
        test = comparison.get("test", {}).get(variant)
        loo = comparison.get("loo", {}).get(variant)
        if test is None:
            continue
        mlpd = f"{test['mlpd']:.4g} ± {test.get('mlpd_se', float('nan')):.2g}"
        if loo is None:
            verdict = ""
        elif loo.get("reliable"):
            verdict = f"{loo['elpd_loo_per_point']:.4g}/N"
        else:
            verdict = f"unreliable ({100 * loo.get('share_k_gt_0.7', float('nan')):.0f}% k > 0.7)"
        out[variant] = (mlpd, verdict)
    return out


def format_table(run_dirs: Sequence[str | os.PathLike]) -> str:
    """Paper-style markdown tables (Train MSE, NLL/N, KL/N, -ELBO/N, Test MSE [, moved,
    wider]) for each run directory, read from its ``summary.json``; with the posterior
    predictive comparison (held-out mean log predictive density per transition and the
    PSIS-LOO verdict) when ``pyro-razor ppc`` has been run on it.

    Raises:
        FileNotFoundError: a directory has no ``summary.json``.
    """
    blocks = []
    for run_dir in run_dirs:
        path = Path(run_dir) / "summary.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"no summary.json in {run_dir}: not a finished pyro-razor run"
            )
        summary = _read_json(path)
        variants = summary.get("variants", {})
        extras = sorted(
            {k[len("test_mse_"):] for m in variants.values() for k in m if
             k.startswith("test_mse_")}
        )
        columns = [("Train MSE", "train_mse"), ("NLL/N", "nll_per_n"), ("KL/N", "kl_per_n"),
                   ("-ELBO/N", "neg_elbo_per_n"), ("Test MSE", "test_mse")]
        columns += [(f"Test {e}", f"test_mse_{e}") for e in extras]
        header = f"{summary.get('experiment', Path(run_dir).name)} " \
                 f"({summary.get('system', '?')}, N = {summary.get('n_train_transitions', '?')}" \
                 f", {summary.get('device', '?')})"
        lines = [header, "",
                 "| Model | " + " | ".join(c for c, _ in columns) + " |",
                 "|---|" + "---|" * len(columns)]
        ppc = _ppc_columns(Path(run_dir), list(variants))
        if ppc:
            lines[2] = lines[2] + " Test mlpd/N (PPC) | PSIS-LOO |"
            lines[3] = lines[3] + "---|---|"
        for variant, m in variants.items():
            cells = [_fmt(m.get(key)) for _, key in columns]
            if ppc:
                cells += list(ppc.get(variant, ("", "")))
            lines.append(f"| {VARIANT_LABELS.get(variant, variant)} | " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"
