r"""Evidence that a learned direction is a symmetry of the data, not noise.

Two measurements that do not depend on a singular-value threshold:

- :func:`direction_displacements`: how far the flow of each learned direction moves the
  training points under the measure the model actually used. With learned generators
  ``\hat G = U diag(sigma) V^T`` and ``tau ~ mu``, ``sum_k tau_k G_k = sum_i c_i sigma_i V_i``
  with ``c = U^T tau``; direction ``i`` contributes the flow ``expm(c_i sigma_i V_i)``. Its
  displacement is ``E_{x, tau} |Phi_i(x) - x|`` over the training states, relative to the
  data's spread ``sqrt(E |x - mean x|^2)``. A direction that moves no point does not
  symmetrise anything, whatever its singular value.
- :func:`conservation_along_data`: a conserved quantity is flat along every observed
  trajectory whatever the network did. The spread of ``C(x_t)`` within each trajectory
  relative to its spread across trajectories is ~0 for a conserved quantity (up to noise) and
  ~1 or more for an arbitrary one.

Shapes: ``r`` directions, ``K`` learned generators, ``B`` trajectories, ``n`` points, ``M``
phase dimension, ``D = (M+1)^2``.
"""

from __future__ import annotations

import torch

from pyro_razor.symmetry import (
    SymmetryMeasure,
    apply_flow,
    quadratic_value,
    quantity_from_generator,
)

__all__ = ["conservation_along_data", "data_spread", "direction_displacements"]

F64 = torch.float64


def data_spread(states: torch.Tensor) -> float:
    """``sqrt(E |x - mean x|^2)`` of ``(N, M)`` states."""
    x = states.reshape(-1, states.shape[-1]).to(F64)
    return float(((x - x.mean(0)) ** 2).sum(-1).mean().sqrt())


@torch.no_grad()
def direction_displacements(
    U: torch.Tensor,
    sigma: torch.Tensor,
    V: torch.Tensor,
    states: torch.Tensor,
    measure: SymmetryMeasure,
    num_samples: int = 64,
    seed: int = 0,
) -> torch.Tensor:
    """Mean displacement of the training points by each direction's flow, relative to spread.

    Args:
        U, sigma, V: the SVD of the ``(K, D)`` flattened learned generators.
        states: ``(..., M)`` training states.
        measure: the measure ``mu(tau)`` of the model (its scale included).
        num_samples: symmetry times drawn (seeded with ``seed``).

    Returns:
        ``(r,)`` float64 relative displacements (0 for a zero direction).
    """
    r = sigma.shape[0]
    if r == 0:
        return sigma.new_zeros(0)
    M = states.shape[-1]
    x = states.reshape(-1, M).to(device=V.device, dtype=F64)
    spread = max(data_spread(x), torch.finfo(F64).tiny)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    tau = measure.sample(num_samples, U.shape[0], dtype=F64, generator=generator).to(V.device)
    coefficient = tau @ U.to(F64)  # (S, r): c = U^T tau
    out = []
    for i in range(r):
        G = V[i].reshape(M + 1, M + 1).to(F64)
        T = torch.linalg.matrix_exp((coefficient[:, i] * sigma[i])[:, None, None] * G)
        moved = apply_flow(T, x)  # (S, N, M)
        out.append(float((moved - x).norm(dim=-1).mean()) / spread)
    return torch.tensor(out, dtype=F64)


@torch.no_grad()
def conservation_along_data(
    generators: torch.Tensor, trajectories: torch.Tensor
) -> dict[str, torch.Tensor]:
    """How constant each generator's quantity is along observed trajectories.

    Args:
        generators: ``(r, M+1, M+1)`` generators (any scale; the quantity is defined up to
            scale and constant, which the ratio ignores).
        trajectories: ``(B, n, M)`` observed trajectories (``B >= 2``, ``n >= 2``).

    Returns:
        ``within (r,)``: mean over trajectories of the standard deviation of ``C(x_t)`` along
        each; ``across (r,)``: standard deviation over trajectories of their mean ``C``;
        ``ratio (r,)``: ``within / across`` (``inf`` where ``across`` is 0).
    """
    A, b = quantity_from_generator(generators.to(F64))
    x = trajectories.to(device=A.device, dtype=F64)
    values = torch.stack([quadratic_value(A[i], b[i], x) for i in range(A.shape[0])])  # (r,B,n)
    within = values.std(dim=-1).mean(dim=-1)
    across = values.mean(dim=-1).std(dim=-1)
    ratio = torch.where(across > 0, within / across.clamp_min(torch.finfo(F64).tiny),
                        torch.full_like(within, float("inf")))
    return {"within": within, "across": across, "ratio": ratio}
