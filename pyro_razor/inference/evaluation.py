r"""Predictive metrics and the KL term of the paper's tables (section 5).

- :func:`evaluate`: the expected negative log-likelihood ``-E_q log p(x_{t+dt} | x_t, theta)``
  per transition (summed over phase coordinates) and the mean squared error of the predictive
  mean, from ``P`` posterior draws.
- :func:`kl_divergence_estimate`: ``KL(q || p)`` over the weights, in closed form where one is
  registered (the matrix-normal guide against the Gaussian prior, appendix D), else by Monte
  Carlo.

Shapes: ``T`` trajectories, ``n`` transitions, ``M`` phase dimension.
"""

from __future__ import annotations

import math

import pyro.poutine as poutine
import torch

from pyro_razor.inference.posterior import replay_transitions, weight_trace
from pyro_razor.models.razor import NoetherRazorModel

__all__ = ["evaluate", "kl_divergence_estimate"]


def _trace_pair(model, guide, *args, **kwargs):
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    return guide_trace, model_trace


@torch.no_grad()
def kl_divergence_estimate(
    model: NoetherRazorModel, guide, states: torch.Tensor, num_samples: int = 16
) -> float:
    """``KL(q || p)`` over the weights: closed form where registered (e.g. the matrix-normal
    guide against the Gaussian prior), else the Monte-Carlo mean of ``log q - log p``."""
    args = (states[:1],)
    guide_trace, model_trace = _trace_pair(model, guide, *args)
    try:
        return float(
            sum(
                torch.distributions.kl_divergence(
                    guide_trace.nodes[s]["fn"], model_trace.nodes[s]["fn"]
                ).sum()
                for s in model.weight_sites
            )
        )
    except NotImplementedError:
        pass
    total = 0.0
    for _ in range(num_samples):
        guide_trace, model_trace = _trace_pair(model, guide, *args)
        guide_trace.compute_log_prob()
        model_trace.compute_log_prob()
        log_q = sum(
            site["log_prob_sum"] for site in guide_trace.nodes.values() if site["type"] == "sample"
        )
        log_p = sum(model_trace.nodes[s]["log_prob_sum"] for s in model.weight_sites)
        total += float(log_q - log_p) / num_samples
    return total


@torch.no_grad()
def evaluate(
    model: NoetherRazorModel,
    guide,
    states: torch.Tensor,
    next_states: torch.Tensor,
    num_samples: int = 8,
    tau_samples: int | None = None,
    chunk_size: int = 64,
    stratified: bool = False,
) -> dict[str, float]:
    """Predictive metrics on transitions ``(T, n, M)``.

    Draws ``num_samples`` weight samples from the guide; for each, predicts every transition
    (in chunks of ``chunk_size`` trajectories, same weights) with ``tau_samples`` symmetrisation
    samples (default: the model's), drawn independently or, with ``stratified``, as one
    Latin-hypercube set (:meth:`~pyro_razor.models.NoetherRazorModel.symmetry_times`).
    Returns ``nll_per_n`` (expected negative log-likelihood
    ``-E_q log p(x_{t+dt} | x_t, theta)`` per transition, summed over phase coordinates) and
    ``mse`` (mean squared error of the predictive mean, averaged over coordinates), each with
    its Monte-Carlo standard error over the weight draws (``nan`` for one draw):
    ``nll_per_n_se`` the standard error of a mean of the ``P`` per-draw values, ``mse_se`` the
    jackknife's (leaving out one draw at a time), since the predictive mean is not a mean of
    per-draw errors. On the quick SHO these errors, not the symmetry samples, set the
    metrics' precision (RESULTS.md, issue 26).
    """
    T, n, M = states.shape
    N = T * n
    per_draw_mean = next_states.new_zeros((num_samples, *next_states.shape))
    per_draw_nll = []
    with model.evaluation(tau_samples, stratified=stratified):
        for p in range(num_samples):
            trace = weight_trace(model, guide, states, next_states)
            nll = 0.0
            for rows, site in replay_transitions(model, trace, states, next_states, chunk_size):
                obs = next_states[rows]
                nll -= float(site["fn"].log_prob(obs).sum())
                per_draw_mean[p][rows] = site["fn"].base_dist.loc.reshape(obs.shape)
            per_draw_nll.append(nll / N)
    nll = torch.tensor(per_draw_nll, dtype=torch.float64)
    mean = per_draw_mean.mean(0)
    return {
        "nll_per_n": float(nll.mean()),
        "mse": float(((mean - next_states) ** 2).mean()),
        "nll_per_n_se": float(nll.std() / num_samples**0.5) if num_samples > 1 else math.nan,
        "mse_se": _jackknife_mse_se(per_draw_mean, next_states),
    }


def _jackknife_mse_se(per_draw: torch.Tensor, target: torch.Tensor) -> float:
    """Jackknife standard error of ``mean((mean_p per_draw_p - target)^2)`` over the ``P``
    draws of ``per_draw (P, ...)`` (``nan`` for ``P = 1``)."""
    P = per_draw.shape[0]
    if P < 2:
        return math.nan
    total = per_draw.sum(0)
    leave_one_out = torch.stack([
        (((total - per_draw[p]) / (P - 1) - target) ** 2).mean() for p in range(P)
    ]).double()
    return float(((P - 1) / P * ((leave_one_out - leave_one_out.mean()) ** 2).sum()).sqrt())
