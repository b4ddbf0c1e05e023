r"""One-step posterior predictive draws of the transitions (paper eq. 8).

For every observed transition ``(x_t, x_{t+dt})`` and every posterior draw ``theta_p ~ q``
(``p = 1..P``; ``eta`` at its learned value, it is a parameter),

.. math:: y^{(p)}_{t+dt} \sim \mathcal N\big(\mu_p(x_t), \sigma^2_{data} I\big), \qquad
          \mu_p(x_t) = \mathrm{ODESolve}(J \nabla \hat H_{\theta_p}, x_t, \Delta t),

and the pointwise log-likelihood ``log p(x_{t+dt} | x_t, theta_p)`` (summed over the ``M`` phase
coordinates) of the observed next state. This is what ``pyro.infer.Predictive(model, guide)``
draws; :func:`posterior_predictive` runs the shared draw loop of
:mod:`pyro_razor.inference.posterior` because it also needs the observation site's
distribution (for the log-likelihood and the predictive mean) under the *same* draw of
``theta`` and of the symmetry times. The result is float64 NumPy, ready for
:func:`pyro_razor.analysis.to_inference_data`.

Shapes: ``P`` posterior draws, ``T`` trajectories, ``n`` transitions, ``M`` phase dimension.
"""

from __future__ import annotations

import numpy as np
import pyro
import torch

from pyro_razor.checks import check_int
from pyro_razor.inference.posterior import replay_transitions, weight_trace, weights_of

__all__ = ["MAX_POINTS_PER_CALL", "RngScope", "posterior_predictive"]

MAX_POINTS_PER_CALL = 2**17
"""Default memory budget of one model call: trajectories x transitions x tau samples."""


class RngScope:
    """Seed Pyro/torch/NumPy/random for a block and restore the previous global state after."""

    def __init__(self, seed: int) -> None:
        self.seed = check_int(seed, "seed", 0)

    def __enter__(self) -> None:
        self.state = pyro.util.get_rng_state()
        pyro.set_rng_seed(self.seed)

    def __exit__(self, *exc) -> None:
        pyro.util.set_rng_state(self.state)


def _check_states(model, states: torch.Tensor, next_states: torch.Tensor | None) -> None:
    if not isinstance(states, torch.Tensor):
        raise TypeError(f"states must be a torch.Tensor, got {type(states).__name__}")
    if next_states is not None and not isinstance(next_states, torch.Tensor):
        raise TypeError(f"next_states must be a torch.Tensor, got {type(next_states).__name__}")
    model.check_data(states, next_states)
    for name, x in (("states", states), ("next_states", next_states)):
        if x is not None and not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} contains NaN or inf values; clean the data first")


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.to("cpu", torch.float64).numpy()


@torch.no_grad()
def posterior_predictive(
    model,
    guide,
    states: torch.Tensor,
    next_states: torch.Tensor | None = None,
    num_samples: int = 100,
    seed: int = 0,
    *,
    tau_samples: int | None = None,
    chunk_size: int | None = None,
    keep_weights: str = "last",
) -> dict[str, np.ndarray]:
    r"""One-step posterior predictive draws, pointwise log-likelihoods and posterior draws.

    For ``p = 1..P``: draw ``theta_p`` from ``guide`` (``guide=None``: from the prior, i.e. the
    prior predictive), run the model replayed against it on ``states`` (in chunks of
    ``chunk_size`` trajectories, the same ``theta_p``; each model call draws its ``tau``), and
    record the sampled ``obs``, the predictive mean ``mu_p(x_t)`` and, when ``next_states`` is
    given, ``log N(x_{t+dt}; mu_p(x_t), sigma^2 I)`` from the observation site's ``fn.log_prob``
    (summed over the phase coordinates). Pyro/torch/NumPy RNGs are seeded with ``seed`` for
    the call and restored afterwards.

    Args:
        model: a :class:`~pyro_razor.models.NoetherRazorModel` (params restored).
        guide: a guide covering its weight sites, or ``None`` for the prior.
        states: ``(T, n, M)`` states before each transition (the model's device and dtype).
        next_states: ``(T, n, M)`` observed next states, or ``None``.
        num_samples: ``P``.
        seed: RNG seed of the draws.
        tau_samples: symmetrisation samples per model call (default: the model's).
        chunk_size: trajectories per model call (default: as many as keep at most
            ``2**17`` symmetrised points, ``chunk x n x tau_samples``, in one call).
        keep_weights: which layer matrices to return: ``"last"``, ``"all"`` or ``"none"``.

    Returns:
        float64 arrays: ``"obs"`` ``(P, T, n, M)``; ``"mean"`` ``(P, T, n, M)``;
        ``"log_likelihood"`` ``(P, T, n)`` (only with ``next_states``); ``"weight<l>"``
        ``(P, out_l, in_l + 1)`` for the kept layers; ``"noise_scale"`` ``()`` (``sigma_data``).
    """
    _check_states(model, states, next_states)
    P = check_int(num_samples, "num_samples")
    T, n, M = states.shape
    if chunk_size is None:
        taus = model.tau_samples if tau_samples is None else tau_samples
        per_trajectory = n * (taus if model.num_quantities else 1)
        chunk_size = max(1, MAX_POINTS_PER_CALL // per_trajectory)
    chunk = check_int(chunk_size, "chunk_size")
    L = len(model.weight_sites)
    kept = {"last": [L - 1], "all": list(range(L)), "none": []}
    if keep_weights not in kept:
        raise ValueError(f"keep_weights must be 'last', 'all' or 'none', got {keep_weights!r}")
    obs, mean = np.empty((P, T, n, M)), np.empty((P, T, n, M))
    loglik = np.empty((P, T, n)) if next_states is not None else None
    weights_out = {l: [] for l in kept[keep_weights]}
    placeholder = states if next_states is None else next_states
    with RngScope(seed), model.evaluation(tau_samples):
        for p in range(P):
            trace = weight_trace(model, guide, states, placeholder)
            weights = weights_of(model, trace)
            for l in weights_out:
                weights_out[l].append(_numpy(weights[l][0]))
            for rows, site in replay_transitions(model, trace, states, None, chunk):
                obs[p, rows] = _numpy(site["value"])
                mean[p, rows] = _numpy(site["fn"].base_dist.loc.expand_as(site["value"]))
                if loglik is not None:
                    loglik[p, rows] = _numpy(site["fn"].log_prob(next_states[rows]))
    out = {"obs": obs, "mean": mean}
    if loglik is not None:
        out["log_likelihood"] = loglik
    for l, values in weights_out.items():
        out[f"weight{l}"] = np.stack(values)
    out["noise_scale"] = np.asarray(float(model.noise.variance.detach().sqrt()))
    return out
