r"""Trajectories of a trained model far past one transition, two kinds named for what they
integrate.

- :func:`hamiltonian_rollout` integrates the learned Hamiltonian's own flow
  ``x' = J grad H_hat(x)`` with RK4 (:data:`HAMILTONIAN_INTEGRATOR`), one trajectory per weight
  draw: what is measured is the learned ``H_hat``, not the training integrator's error
  (explicit Euler, the paper's likelihood integrator, multiplies an oscillator's energy by
  ``1 + h^2`` every step).
- :func:`predictive_rollout` iterates the model's one-step predictive mean,
  ``x_{k+1} = ODESolve(J grad H_hat, x_k, dt)`` with the *training* integrator and sub-steps,
  and adds observation noise to every output: the multi-step posterior predictive.

:func:`posterior_hamiltonian` builds ``H_hat`` for ``P`` posterior draws, and
:func:`hamiltonian_energy` evaluates its posterior mean in memory-bounded chunks.

Shapes: ``P`` weight draws, ``S`` symmetry samples, ``R`` initial states, ``n`` points per
rollout, ``M`` phase dimension.
"""

from __future__ import annotations

import numpy as np
import torch

from pyro_razor.checks import check_int
from pyro_razor.inference.posterior import draw_weights
from pyro_razor.inference.predictive import RngScope
from pyro_razor.integrators import rollout
from pyro_razor.models import NoetherRazorModel, SymmetrisedHamiltonian

__all__ = [
    "HAMILTONIAN_INTEGRATOR",
    "hamiltonian_energy",
    "hamiltonian_rollout",
    "per_draw_energy",
    "posterior_hamiltonian",
    "predictive_rollout",
]

HAMILTONIAN_INTEGRATOR = "rk4"
"""The integrator of :func:`hamiltonian_rollout`."""


@torch.no_grad()
def posterior_hamiltonian(
    model: NoetherRazorModel, guide, states: torch.Tensor, tau_samples: int, num_samples: int,
    stratified: bool = False,
) -> SymmetrisedHamiltonian:
    """``H_hat`` for ``P = num_samples`` weight draws from the guide, each with its own fixed
    set of ``S = tau_samples`` symmetry transforms (torch RNG: seed it for reproducibility),
    drawn independently or, with ``stratified``, as one Latin-hypercube set per draw
    (:meth:`~pyro_razor.models.NoetherRazorModel.symmetry_times`).

    Predictions average over the draws rather than plugging in the posterior-mean weights: the
    network is nonlinear in its weights, and under a symmetrised model the posterior is broad
    along weight directions the orbit average does not see, so ``F`` at the mean weights can be
    far from the mean ``H_hat`` (on the SHO it was almost flat where the data lie).

    ``states``: any ``(T, n, M)`` model input (only its shape/device are used by the guide).
    """
    weights = draw_weights(model, guide, states, num_samples)
    with model.evaluation(stratified=stratified):
        transforms = model.transforms(tau_samples, num_draws=num_samples)
    return model.hamiltonian(weights, None if transforms is None else transforms.detach())


@torch.no_grad()
def per_draw_energy(
    H: SymmetrisedHamiltonian, x: torch.Tensor, max_points: int = 2**18
) -> torch.Tensor:
    """``H_hat`` of each weight draw at its own points ``x (P, N, M)`` -> ``(P, N)``, in chunks
    of at most ``max_points`` symmetrised points (``P x chunk x S``)."""
    anchor = H.weights[0]
    x = torch.as_tensor(x).to(device=anchor.device, dtype=anchor.dtype)
    S = H.tau_samples
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
    return per_draw_energy(H, expanded, max_points).mean(0)


@torch.no_grad()
def hamiltonian_rollout(
    H: SymmetrisedHamiltonian, x0: torch.Tensor, n_points: int, dt: float, steps_per_point: int
) -> torch.Tensor:
    """Integrate ``x' = J grad H_hat(x)`` with RK4 from ``x0`` for every weight draw of ``H``.

    Args:
        H: the learned Hamiltonian (see :func:`posterior_hamiltonian`).
        x0: ``(R, M)`` initial states.
        n_points: states per rollout, ``x0`` included.
        dt: time between recorded states.
        steps_per_point: RK4 sub-steps per ``dt``.

    Returns:
        ``(P, R, n, M)`` in ``H``'s dtype and device; ``[:, :, 0]`` equals ``x0``.
    """
    anchor = H.weights[0]
    P, (R, M) = H.num_weight_samples, x0.shape
    x = x0.to(device=anchor.device, dtype=anchor.dtype)[None].expand(P, R, M)
    return rollout(
        H.vector_field, x, dt, n_points, steps_per_point=steps_per_point,
        method=HAMILTONIAN_INTEGRATOR,
    )


@torch.no_grad()
def predictive_rollout(
    model: NoetherRazorModel,
    guide,
    x0: torch.Tensor,
    horizon: int,
    num_samples: int = 100,
    seed: int = 0,
    *,
    tau_samples: int | None = None,
    observation_noise: bool = True,
) -> np.ndarray:
    r"""Multi-step posterior predictive rollouts from ``x0``.

    For each draw ``theta_p`` (from ``guide``; ``None``: the prior) and one set of symmetry
    transforms per draw: ``x_0 = x0``, ``x_{k+1} = ODESolve(J grad H_hat_p, x_k, dt)`` (the
    model's integrator and sub-steps; no process noise) and outputs ``y_0 = x_0``,
    ``y_k = x_k + sigma_data eps_k`` with ``eps_k ~ N(0, I)`` i.i.d. for ``k >= 1`` (omitted with
    ``observation_noise=False``). Diverging draws give ``inf``/``nan`` entries. The global RNG
    state is seeded with ``seed`` and restored afterwards.

    Args:
        model, guide: a trained model and its guide.
        x0: ``(R, M)`` initial states.
        horizon: steps of ``dt`` to roll out.
        num_samples: ``P``, posterior draws.
        tau_samples: symmetrisation samples per draw (default: the model's).
        observation_noise: add ``sigma_data`` noise to the outputs.

    Returns:
        ``(P, R, horizon + 1, M)`` float64 NumPy array (ready for ArviZ); ``[:, :, 0]`` equals
        ``x0``.
    """
    if not isinstance(x0, torch.Tensor):
        raise TypeError(f"x0 must be a torch.Tensor, got {type(x0).__name__}")
    M = model.phase_dim
    if x0.dim() != 2 or x0.shape[1] != M or x0.shape[0] < 1:
        raise ValueError(f"x0 must have shape (R, {M}) with R >= 1, got {tuple(x0.shape)}")
    if not bool(torch.isfinite(x0).all()):
        raise ValueError("x0 contains NaN or inf values")
    steps = check_int(horizon, "horizon")
    P = check_int(num_samples, "num_samples")
    sigma = float(model.noise.variance.detach().sqrt())
    R = x0.shape[0]

    def roll(weights, transforms, x):  # (P, R, M) -> (P, R, steps + 1, M)
        path = [x]
        for _ in range(steps):
            x = model.predict(weights, transforms, x)
            path.append(x)
        return torch.stack(path, dim=2)

    with RngScope(seed), model.evaluation(tau_samples):
        weights = draw_weights(model, guide, x0[:, None, :], P)
        transforms = model.transforms(num_draws=P)  # one set per draw, fixed along the rollout
        y = roll(weights, transforms, x0.expand(P, R, M))
        if observation_noise:
            noise = sigma * torch.randn_like(y[:, :, 1:])
            y = torch.cat([y[:, :, :1], y[:, :, 1:] + noise], dim=2)
    return y.to("cpu", torch.float64).numpy()
