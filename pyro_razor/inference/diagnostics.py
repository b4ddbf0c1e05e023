r"""Training diagnostics: is the posterior still limited by the step budget?

Adam moves every parameter by about its learning rate per step at most. The matrix-normal
guide (and AutoNormal) keep their scales in log space, so the mean log posterior standard
deviation of a layer can change by at most about ``2 lr_t`` in step ``t`` (both Cholesky
factors' log-diagonals move by ``lr_t``), i.e. by ``2 sum_t lr_t`` over a run. A run whose
scales moved at that rate for most of it has not found the scales the data support: its KL
(and with it the ELBO's Occam factor) is capped by the budget, not set by the evidence.
:func:`capped_scale_layers` finds such layers from the history :func:`~pyro_razor.inference.train`
records (``log_std<l>`` per epoch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from pyro_razor.guides.matrix_normal import deep_getattr

__all__ = ["capped_scale_layers", "capped_scale_message", "posterior_log_std"]


@torch.no_grad()
def posterior_log_std(guide, sites: Sequence[str]) -> list[float] | None:
    """Mean log posterior standard deviation of each site's entries, or ``None`` when the guide
    keeps no per-site scales (AutoDelta, the joint AutoContinuous guides)."""
    if hasattr(guide, "distribution") and hasattr(guide, "second_moment"):  # matrix normal
        return [0.5 * float(guide.distribution(s).variance.log().mean()) for s in sites]
    if hasattr(guide, "locs") and hasattr(guide, "scales"):  # AutoNormal
        return [float(deep_getattr(guide.scales, s).log().mean()) for s in sites]
    return None


def _cap(history: Sequence[dict], steps_per_epoch: int, start: int, stop: int) -> float:
    """``2 sum_t lr_t`` over the steps of epochs ``start+1 .. stop`` (history indices), with the
    scale parameters' learning rate (``lr_scale``; histories without it: ``lr``)."""
    return 2.0 * steps_per_epoch * sum(r.get("lr_scale", r["lr"])
                                       for r in history[start + 1 : stop + 1])


def capped_scale_layers(
    history: Sequence[dict], steps_per_epoch: int, share: float = 0.5, tail: float = 0.25
) -> list[dict]:
    """Layers whose posterior scale moved at the optimiser's maximum rate for most of the run.

    A layer is flagged when its mean log std changed by more than ``share`` of the cap
    ``2 sum_t lr_t`` over the whole run *and* over its last ``tail`` fraction of epochs (so a
    layer that moved fast at first and then settled is not flagged).

    Args:
        history: per-epoch records with ``lr`` (or ``lr_scale``) and ``log_std<l>`` keys.
        steps_per_epoch: SVI steps per epoch.

    Returns:
        One ``{"layer", "change", "cap", "tail_change", "tail_cap"}`` record per flagged layer
        (log-std changes in nats; empty if none or the history has no scales).
    """
    if len(history) < 4 or "log_std0" not in history[0]:
        return []
    last = len(history) - 1
    begin_tail = max(0, min(last - 1, int(round(last * (1.0 - tail)))))
    flagged = []
    layer = 0
    while f"log_std{layer}" in history[0]:
        key = f"log_std{layer}"
        change = history[last][key] - history[0][key]
        tail_change = history[last][key] - history[begin_tail][key]
        cap, tail_cap = (_cap(history, steps_per_epoch, 0, last),
                         _cap(history, steps_per_epoch, begin_tail, last))
        same_way = math.copysign(1.0, change) == math.copysign(1.0, tail_change)
        if cap > 0 and tail_cap > 0 and same_way and abs(change) > share * cap and (
            abs(tail_change) > share * tail_cap
        ):
            flagged.append({"layer": layer, "change": change, "cap": cap,
                            "tail_change": tail_change, "tail_cap": tail_cap})
        layer += 1
    return flagged


SCALE_HINT = ("Start the scales nearer their converged size ([guide] init_scale), or raise "
              "[train] lr_scale or epochs")
"""The fix the capped-scale message names, in a config's terms (a command may restate it)."""


def capped_scale_message(flagged: Sequence[dict]) -> str | None:
    """One line for :func:`capped_scale_layers`' result, or ``None`` if nothing is flagged."""
    if not flagged:
        return None
    parts = ", ".join(
        f"layer {f['layer']} ({'grew' if f['change'] > 0 else 'shrank'} by "
        f"{abs(f['change']):.2f} of at most {f['cap']:.2f} nats)" for f in flagged
    )
    return (
        f"posterior scales still moving at the optimiser's maximum rate at the end of the run: "
        f"{parts}; the KL is capped by the step budget, not set by the data. {SCALE_HINT}"
    )
