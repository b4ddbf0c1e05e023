r"""Conservation of quantities along trajectories."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from pyro_razor.analysis.spectrum import check_tensor

__all__ = ["conservation_drift"]


def conservation_drift(
    trajectories: torch.Tensor,
    quantities: Mapping[str, Callable[[torch.Tensor], torch.Tensor]],
) -> dict[str, torch.Tensor]:
    r"""Mean absolute drift ``|C(x_t) - C(x_0)|`` of each quantity along rollouts.

    .. math:: \mathrm{drift}_C(t) = \frac{1}{T} \sum_{j=1}^{T} |C(x_j(t)) - C(x_j(0))|

    Pass e.g. ``{"H": system.H, **{c.name: c for c in system.conserved_quantities}}``; the
    result feeds :func:`pyro_razor.plotting.plot_conservation_drift`.

    Args:
        trajectories: ``(T, P, M)`` (``T`` rollouts of ``P`` points) or ``(P, M)``.
        quantities: name to function ``(..., M) -> (...)``.

    Returns:
        name to ``(P,)`` drift, in the dtype and on the device of ``trajectories``.
    """
    x = check_tensor(trajectories, "conservation_drift: trajectories")
    if x.dim() == 2:
        x = x[None]
    if x.dim() != 3 or x.shape[1] < 1:
        raise ValueError(
            "conservation_drift: trajectories must have shape (T, P, M) or (P, M), got "
            f"{tuple(trajectories.shape)}"
        )
    if not isinstance(quantities, Mapping) or not quantities:
        raise ValueError("conservation_drift: quantities must be a non-empty dict name -> C(x)")
    out = {}
    with torch.no_grad():
        for name, C in quantities.items():
            if not callable(C):
                raise TypeError(f"conservation_drift: quantity {name!r} is not callable")
            values = C(x)
            if not isinstance(values, torch.Tensor) or values.shape != x.shape[:-1]:
                got = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values)
                raise ValueError(
                    f"conservation_drift: quantity {name!r} must map (T, P, M) to (T, P) = "
                    f"{tuple(x.shape[:-1])}, got {got}"
                )
            out[name] = (values - values[:, :1]).abs().mean(dim=0)
    return out
