r"""Long-horizon rollouts of a learned Hamiltonian against the exact solution.

:func:`long_horizon_rollout` integrates ``x' = J grad H_hat(x)`` far past the training horizon
for every posterior weight draw (:func:`pyro_razor.inference.hamiltonian_rollout`, RK4 with a
chosen number of sub-steps per ``dt``, by default the model's), averages the draws into the
posterior predictive mean trajectory and compares it with the exact solution of the true
system: squared error over time and the drift ``|C(x_t) - C(x_0)|`` of the energy and of
every true conserved quantity. Its own integration error is measured beside: the first draw
is integrated again with twice the sub-steps (RK4's error falls 16-fold, so the difference
is the coarse rollout's error), at ``2 / P`` of the rollout's cost.

Shapes: ``P`` weight draws, ``R`` initial states, ``n`` points per rollout, ``M`` phase
dimension.
"""

from __future__ import annotations

import torch

from pyro_razor.analysis.conservation import conservation_drift
from pyro_razor.inference.rollouts import (
    HAMILTONIAN_INTEGRATOR,
    hamiltonian_rollout,
    per_draw_energy,
)
from pyro_razor.models import NoetherRazorModel, SymmetrisedHamiltonian
from pyro_razor.systems import HamiltonianSystem, simulate
from pyro_razor.systems.units import PhaseSpaceScaling, identity_scaling

__all__ = ["long_horizon_rollout", "longterm_record"]


@torch.no_grad()
def long_horizon_rollout(
    model: NoetherRazorModel,
    H: SymmetrisedHamiltonian,
    system: HamiltonianSystem | None,
    x0: torch.Tensor,
    n_points: int,
    dt: float,
    *,
    truth: torch.Tensor | None = None,
    scaling: PhaseSpaceScaling | None = None,
    steps_per_point: int | None = None,
) -> dict:
    """Roll ``x0`` out far past the training horizon with the learned ``H_hat`` and exactly.

    Args:
        model: supplies the default number of sub-steps per ``dt`` (its likelihood's).
        H: the Hamiltonian to integrate (see :func:`pyro_razor.inference.posterior_hamiltonian`).
        system: the true system (exact solution and conserved quantities), or ``None`` with
            ``truth`` given (e.g. observed test trajectories: then only the error is measured).
        x0: ``(R, M)`` initial conditions, in the model's units.
        n_points: states per rollout including ``x0``.
        dt: time between states.
        truth: ``(R, n, M)`` reference trajectories in the model's units (default: the exact
            solution of ``system``).
        scaling: the model's units to the system's (default identity); errors are measured
            in the model's units, the drift of the true quantities in the system's.
        steps_per_point: RK4 sub-steps per ``dt`` (default ``model.integrator_steps``).

    Returns:
        dict with ``times (n,)``, ``prediction``/``truth`` ``(R, n, M)`` float64 CPU tensors,
        ``mse (n,)`` (over trajectories and coordinates; ``nan`` after a divergence),
        ``finite_points`` (leading points where the prediction is finite), ``drift`` (name to
        ``(n,)`` mean ``|C(x_t) - C(x_0)|`` along the prediction for ``"H"`` and every true
        conserved quantity, ``nan`` after a divergence), ``truth_drift`` (the same along the
        exact solution), ``learned_energy_drift (n,)`` (``H_hat`` along its own rollout),
        ``steps_per_point`` and ``integration_mse (n,)``: the squared difference (mean over
        trajectories and coordinates) between the first draw's rollout and the same at twice
        the sub-steps, on the scale of ``mse``.
    """
    P, (R, M) = H.num_weight_samples, x0.shape
    scaling = identity_scaling(M) if scaling is None else scaling
    steps = model.integrator_steps if steps_per_point is None else int(steps_per_point)
    samples = hamiltonian_rollout(H, x0, n_points, dt, steps)  # (P, R, n, M)
    finer = hamiltonian_rollout(H.first_draws(1), x0, n_points, dt, 2 * steps)[0]
    integration_mse = ((samples[0] - finer) ** 2).mean(dim=(0, 2)).detach().cpu().double()
    learned_energy = per_draw_energy(H, samples.reshape(P, -1, M)).reshape(P * R, n_points)
    samples = samples.detach().to(device="cpu", dtype=torch.float64)
    pred = samples.mean(0)  # the posterior predictive mean trajectory
    if truth is None:
        start = scaling.to_original(x0.detach().cpu().double())
        truth = scaling.to_scaled(simulate(system, start, n_points, dt))
    truth = truth.detach().cpu().double()
    finite = torch.isfinite(pred).all(dim=(0, 2))
    finite_points = int(finite.long().cumprod(0).sum())
    mse = ((pred - truth) ** 2).mean(dim=(0, 2))
    mse[finite_points:] = float("nan")
    quantities = {} if system is None else {
        "H": system.H, **{c.name: c for c in system.conserved_quantities}}
    nan = torch.full((n_points,), float("nan"), dtype=torch.float64)
    drift = {name: nan.clone() for name in quantities}
    if finite_points > 0 and quantities:  # along each draw's rollout, averaged over draws
        along = scaling.to_original(samples.reshape(P * R, n_points, M)[:, :finite_points])
        for name, values in conservation_drift(along, quantities).items():
            drift[name][:finite_points] = values
    learned_energy = learned_energy.detach().cpu().double()
    return {
        "times": torch.arange(n_points, dtype=torch.float64) * dt,
        "prediction": pred,
        "truth": truth,
        "mse": mse,
        "finite_points": finite_points,
        "drift": drift,
        "truth_drift": conservation_drift(scaling.to_original(truth), quantities)
        if quantities else {},
        "learned_energy_drift": (learned_energy - learned_energy[:, :1]).abs().mean(0),
        "steps_per_point": steps,
        "integration_mse": integration_mse,
    }


def _finite_or_none(result: dict, key: str, index: int | None) -> float | None:
    """``result[key][index]`` (``None``: the largest finite entry) as a float, or ``None``
    when the record has no such entry or it is not finite (a diverged rollout)."""
    values = result.get(key)
    if values is None:
        return None
    values = values[torch.isfinite(values)] if index is None else values[index:][:1]
    if values.numel() == 0 or not torch.isfinite(values).all():
        return None
    return float(values.max())


def _at(values: torch.Tensor, index: int) -> float:
    return float(values[min(index, values.shape[0] - 1)])


def longterm_record(
    result: dict, variant: str, *, dt: float, train_points: int, test_points: int,
    integrator_steps: int, tau_samples: int | None,
) -> dict:
    """The JSON record (``longterm.json``) of a :func:`long_horizon_rollout` result."""
    mse, n_points = result["mse"], result["mse"].shape[0]
    return {
        "variant": variant,
        "dt": dt,
        "rollout_points": n_points,
        "horizon": (n_points - 1) * dt,
        "train_horizon_step": train_points - 1,
        "test_horizon_step": test_points - 1,
        "trajectories": int(result["prediction"].shape[0]),
        "integrator": HAMILTONIAN_INTEGRATOR,
        "integrator_steps": integrator_steps,
        "integration_mse_final": _finite_or_none(result, "integration_mse", -1),
        "integration_mse_max": _finite_or_none(result, "integration_mse", None),
        "tau_samples": tau_samples,
        "finite_points": result["finite_points"],
        "mse_final": float(mse[-1]),
        "mse_mean": float(mse.mean()),
        "mse_at_train_horizon": _at(mse, train_points - 1),
        "mse_at_test_horizon": _at(mse, test_points - 1),
        "drift_final": {k: float(v[-1]) for k, v in result["drift"].items()},
        "drift_max": {k: float(v.max()) for k, v in result["drift"].items()},
        "truth_drift_final": {k: float(v[-1]) for k, v in result["truth_drift"].items()},
        "learned_energy_drift_final": float(result["learned_energy_drift"][-1]),
        "times": result["times"].tolist(),
        "mse": mse.tolist(),
        "drift": {k: v.tolist() for k, v in result["drift"].items()},
        "learned_energy_drift": result["learned_energy_drift"].tolist(),
    }
