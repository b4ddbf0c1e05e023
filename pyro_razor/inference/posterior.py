r"""Draws from the posterior (or the prior) over the network weights, and the model replayed
against them: the one loop behind evaluation, posterior predictive checks and rollouts.

A draw is a Pyro trace of every weight site ``theta_l`` (``"hamiltonian_net.weight<l>"``):
from the guide, ``theta ~ q(theta)``, or from the prior with ``guide=None``. The model replayed
against a draw (:func:`replay_transitions`) predicts the next state of every transition with
those weights; the conserved quantities ``eta`` are parameters and keep their learned values.

Shapes: ``P`` weight draws, ``T`` trajectories (``B`` per chunk), ``n`` transitions, ``M``
phase dimension.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pyro.poutine as poutine
import torch

from pyro_razor.guides.matrix_normal import deep_getattr
from pyro_razor.models.likelihood import OBSERVATION_SITE

__all__ = [
    "draw_weights",
    "posterior_second_moments",
    "replay_transitions",
    "weight_trace",
    "weights_of",
]


@torch.no_grad()
def weight_trace(model, guide, states: torch.Tensor, observed: torch.Tensor | None = None):
    """One draw of every weight site: a guide trace, or (``guide=None``) a prior trace.

    The guide is called with the model's arguments ``(states[:1], observed[:1])``: guides of
    global weights use them only for their plates, and a guide that has not been set up yet
    then sees ``"obs"`` as observed (``observed`` may be a placeholder, default ``states``).
    A prior draw runs the model itself on one transition, exposing only the weight sites.
    """
    observed = states if observed is None else observed
    if guide is None:
        blocked = poutine.block(model, expose=model.weight_sites)
        return poutine.trace(blocked).get_trace(states[:1, :1], observed[:1, :1])
    return poutine.trace(guide).get_trace(states[:1], observed[:1])


def weights_of(model, trace) -> list[torch.Tensor]:
    """The layer matrices of one draw, per layer ``(1, out, in+1)`` (detached)."""
    weights = []
    for name, shape in zip(model.weight_sites, model.hamiltonian_net.layer_shapes, strict=True):
        if name not in trace.nodes:
            raise ValueError(f"the guide has no sample site {name!r}; it must cover every weight")
        weights.append(trace.nodes[name]["value"].detach().reshape(1, *shape))
    return weights


@torch.no_grad()
def draw_weights(
    model, guide, states: torch.Tensor, num_draws: int, observed: torch.Tensor | None = None
) -> list[torch.Tensor]:
    """``num_draws`` independent draws of every layer matrix, stacked: per layer
    ``(P, out, in+1)`` with ``P = num_draws`` (``guide=None``: prior draws)."""
    draws = [weights_of(model, weight_trace(model, guide, states, observed))
             for _ in range(num_draws)]
    return [torch.cat(layer) for layer in zip(*draws, strict=True)]


@torch.no_grad()
def replay_transitions(
    model, trace, states: torch.Tensor, next_states: torch.Tensor | None, chunk_size: int
) -> Iterator[tuple[slice, dict]]:
    """Run the model replayed against one weight draw on every transition, in chunks.

    Args:
        model: the Pyro model.
        trace: a weight draw from :func:`weight_trace`.
        states: ``(T, n, M)`` states before each transition.
        next_states: ``(T, n, M)`` observed next states, or ``None`` to sample them (the
            posterior predictive).
        chunk_size: trajectories per model call (each call draws its own symmetry times).

    Yields:
        ``(rows, site)``: the slice of trajectories of the chunk and the model's
        ``"obs"`` site (its ``fn`` is the predictive distribution ``N(mu, sigma^2 I)`` of the
        chunk's next states, its ``value`` the observed or sampled next states).
    """
    T = states.shape[0]
    replayed = poutine.replay(model, trace=trace)
    for start in range(0, T, chunk_size):
        stop = min(start + chunk_size, T)
        idx = torch.arange(start, stop, device=states.device)
        model_trace = poutine.trace(replayed).get_trace(states, next_states, subsample=idx)
        yield slice(start, stop), model_trace.nodes[OBSERVATION_SITE]


@torch.no_grad()
def posterior_second_moments(guide, sites: Sequence[str], *args, num_samples: int = 32):
    """``E_q |theta_l|^2`` of each site (appendix D.3).

    Exact for guides that provide ``second_moment(site)`` (the matrix-normal guide) and for
    AutoNormal (from its ``locs`` and ``scales``); otherwise the Monte-Carlo mean over
    ``num_samples`` guide draws with the model's ``*args``.
    """
    if hasattr(guide, "second_moment"):
        return [guide.second_moment(s) for s in sites]
    if hasattr(guide, "locs") and hasattr(guide, "scales"):  # AutoNormal's mean-field params
        return [
            (deep_getattr(guide.locs, s) ** 2 + deep_getattr(guide.scales, s) ** 2).sum()
            for s in sites
        ]
    totals = [0.0] * len(sites)
    for _ in range(num_samples):
        values = guide(*args)
        for i, s in enumerate(sites):
            totals[i] = totals[i] + (values[s] ** 2).sum() / num_samples
    return totals
