r"""How much memory a training run needs, estimated before anything is built.

:func:`estimate_memory` adds up four parts (bytes):

- ``parameters``: the model's learnable tensors (conserved quantities ``K (M^2 + M)``) and the
  guide's: for layer matrices of shapes ``(n_l, p_l)`` (``p_l = in_l + 1``) with
  ``D = sum n_l p_l`` weights, the matrix normal stores ``n p + n^2 + p^2`` per layer, the
  AutoGuides ``D`` (``auto_delta``), ``2 D`` (``auto_normal``, ``auto_diagonal``) or
  ``(rank + 2) D`` (``auto_lowrank``, default rank ``round(sqrt(D))``);
- ``optimizer``: a gradient and Adam's two moments per parameter (3x ``parameters``);
- ``data``: every split's float64 trajectories ``(trajectories, points, M)``, counted twice
  (the ODE solver's output and its copy), plus its transitions ``(states, next_states)`` in
  the model's dtype;
- ``activations``: what one SVI step keeps for the backward pass. Every evaluation of the
  vector field pushes ``Q = P S B_pts`` points (``P`` vectorised particles, ``S`` symmetry
  samples, 1 without symmetrisation, ``B_pts`` = batch trajectories x transitions) through
  the network's input gradient. When a ``Q x max(hidden)`` layer tensor is at least
  :data:`~pyro_razor.models.fast_gradient.BLOCKED_FROM_BYTES`, the blocked fast path
  (:mod:`pyro_razor.models.fast_gradient`) keeps only the points and their gradients, about
  ``c Q M`` values with ``c = ACTIVATION_CONSTANT``, and its blocks' live tensors take
  ``BLOCK_CONSTANT (L + 1) min(BLOCK_ROWS, Q) max(hidden)`` values for ``L`` hidden layers.
  Smaller problems take plain autograd, which keeps ``c' Q (sum_l h_l + M)`` values with
  ``c' = PLAIN_ACTIVATION_CONSTANT`` (pre-activations, activations, slopes, the ``grad *
  slope`` products and their matrix products). A step makes ``integrator_steps x
  evaluations`` such evaluations (:data:`EVALUATIONS_PER_STEP`: euler 1, rk4 4, leapfrog 3,
  midpoint ``iterations + 1 = 9``); with ``checkpoint_steps`` the backward pass recomputes
  one sub-step at a time (about
  ``CHECKPOINT_SUBSTEPS`` sub-steps' worth alive, or on the CPU ``HEAP_SUBSTEPS`` plus
  ``HEAP_PER_STEP`` per sub-step when glibc's heap serves the tensors), plus every sub-step's
  ``(P, B_pts, M)`` input. The weight samples of the particles and their sampling add
  ``8 P D`` values.

The constants were calibrated by measurement: the increase of the peak resident set size
(``VmHWM``, reset through ``/proc/self/clear_refs``) during one SVI step
(:class:`pyro_razor.inference.TrainingStep`, CPU, glibc's default allocator) after one warm-up
step and ``malloc_trim``. The paper's Table 1 network (2-200-200-1, 20 particles, 28 points,
float32): learned with ``S = 200`` and 5 Euler steps 92 MiB (estimate 91), with 20 Euler
steps 135 MiB (estimate 138). The configurations of ``tests/test_reliability.py`` (one
thread): blocked, 2-200-200-1, ``S = 128``, 4 particles, 80 points, 10 Euler steps: 84 MB
(estimate 66); plain, 2-64-64-1, ``S = 16``, 80 points, 5 Euler steps: 31 MB (34); plain
vanilla 2-200-200-1, 4 particles, 80 points, 20 Euler steps: 53 MB (57). (Before the fast
path the learned Table 1 step kept every layer's activations: 17 GiB at 20 Euler steps.)

:func:`available_memory` is what a run may use: on CUDA the device's free memory
(``torch.cuda.mem_get_info``), elsewhere Linux's ``MemAvailable`` (``/proc/meminfo``), else
the physical memory reported by ``os.sysconf``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from pyro_razor.models.fast_gradient import BLOCK_ROWS, takes_blocked_path

__all__ = [
    "ACTIVATION_CONSTANT",
    "BLOCK_CONSTANT",
    "PLAIN_ACTIVATION_CONSTANT",
    "CHECKPOINT_SUBSTEPS",
    "HEAP_PER_STEP",
    "HEAP_SUBSTEPS",
    "EVALUATIONS_PER_STEP",
    "MemoryEstimate",
    "available_memory",
    "estimate_memory",
    "format_bytes",
    "format_memory",
]

ACTIVATION_CONSTANT = 3.5
"""Values kept per evaluated point and phase dimension of one vector-field evaluation in the
backward graph (the symmetrised points, the network gradient and its average); measured, see
the module docstring."""

PLAIN_ACTIVATION_CONSTANT = 5.0
"""The same for plain autograd, per point and unit (``sum hidden + M``): calibrated on fifteen
configurations before the fast path existed (measured / estimated 0.72-1.29; the table is in
this module's history, commit ddc2a00)."""

BLOCK_CONSTANT = 10.0
"""Block tensors alive per hidden layer (plus one) and block row and unit of the widest layer
while the fast path works through a block, allocator slack included (measured)."""

CHECKPOINT_SUBSTEPS = 1.2
"""With ``checkpoint_steps``: sub-steps' worth of activations alive at the peak: the recomputed
sub-step and the buffers of its backward pass (measured)."""

HEAP_SUBSTEPS = 2.0
"""The same on the CPU when the layer tensors are smaller than :data:`MMAP_THRESHOLD`: glibc
serves them from its heap, which the recomputations fragment (measured)."""

HEAP_PER_STEP = 0.15
"""...plus this many evaluations' worth of heap per sub-step (measured)."""

MMAP_THRESHOLD = 32 * 2**20
"""glibc's largest dynamic ``mmap`` threshold: bigger blocks are mapped and unmapped on free."""

EVALUATIONS_PER_STEP = {"euler": 1, "rk4": 4, "leapfrog": 3, "midpoint": 9}
"""Vector-field evaluations per integrator sub-step (:mod:`pyro_razor.integrators`; the
implicit midpoint rule with its default 8 fixed-point iterations)."""

GUIDE_KINDS = ("matrix_normal", "auto_normal", "auto_lowrank", "auto_delta", "auto_diagonal")


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated bytes of one training run, by part (see the module docstring).

    Attributes:
        parameters: model and guide parameters.
        optimizer: their gradients and Adam's two moments.
        data: trajectories and transitions of every split.
        activations: the backward graph of one SVI step.
    """

    parameters: int
    optimizer: int
    data: int
    activations: int

    @property
    def total(self) -> int:
        """The sum of the parts."""
        return self.parameters + self.optimizer + self.data + self.activations

    def parts(self) -> dict[str, int]:
        """``{part: bytes}`` in a fixed order."""
        return {"parameters": self.parameters, "optimizer": self.optimizer, "data": self.data,
                "activations": self.activations}


def _layer_shapes(phase_dim: int, hidden: Sequence[int]) -> list[tuple[int, int]]:
    """``(out, in + 1)`` of every layer matrix of ``F_theta: R^M -> R``."""
    widths = (phase_dim, *hidden, 1)
    return [(widths[i + 1], widths[i] + 1) for i in range(len(widths) - 1)]


def _guide_values(shapes: list[tuple[int, int]], guide: str, rank: int | None) -> int:
    D = sum(n * p for n, p in shapes)
    if guide == "matrix_normal":
        return sum(n * p + n * n + p * p for n, p in shapes)
    if guide == "auto_delta":
        return D
    if guide in ("auto_normal", "auto_diagonal"):
        return 2 * D
    if guide == "auto_lowrank":
        return (2 + (rank if rank is not None else round(math.sqrt(D)))) * D
    raise ValueError(f"unknown guide kind {guide!r}; one of {GUIDE_KINDS}")


def estimate_memory(
    *,
    phase_dim: int,
    hidden: Sequence[int],
    num_quantities: int,
    tau_samples: int,
    particles: int,
    batch_points: int,
    integrator: str,
    integrator_steps: int,
    checkpoint_steps: bool = False,
    splits: Sequence[tuple[int, int]] = (),
    guide: str = "matrix_normal",
    guide_rank: int | None = None,
    dtype_bytes: int = 4,
    device_type: str = "cpu",
) -> MemoryEstimate:
    """Estimate the memory of training one model variant (module docstring).

    Args:
        phase_dim: ``M``.
        hidden: hidden widths of ``F_theta``.
        num_quantities: ``K`` (0: vanilla, no symmetrisation, ``S = 1``).
        tau_samples: ``S`` symmetry samples per step (used when ``K > 0``).
        particles: weight samples evaluated at once (1 unless the particles are vectorised).
        batch_points: transitions per step, ``batch trajectories x (train_points - 1)``.
        integrator, integrator_steps, checkpoint_steps: the likelihood's ODE solve.
        splits: ``(trajectories, points)`` of every data split (train, test, extra tests).
        guide, guide_rank: the variational family (``"matrix_normal"``, ``"auto_normal"``,
            ``"auto_lowrank"``, ``"auto_delta"``, ``"auto_diagonal"``).
        dtype_bytes: bytes per value of the model's dtype (4 float32, 8 float64).
        device_type: ``"cpu"`` or ``"cuda"`` (how checkpointed sub-steps reuse memory).
    """
    if integrator not in EVALUATIONS_PER_STEP:
        raise ValueError(f"unknown integrator {integrator!r}; one of {list(EVALUATIONS_PER_STEP)}")
    M = phase_dim
    shapes = _layer_shapes(M, hidden)
    D = sum(n * p for n, p in shapes)
    values = _guide_values(shapes, guide, guide_rank) + num_quantities * (M * M + M)
    S = tau_samples if num_quantities > 0 else 1
    points = particles * S * batch_points
    width = max(hidden, default=0)
    if takes_blocked_path(points, width, dtype_bytes):  # the blocked fast path
        per_eval = ACTIVATION_CONSTANT * points * M
        block = BLOCK_CONSTANT * (len(hidden) + 1) * min(BLOCK_ROWS, points) * width
    else:  # plain autograd keeps every layer's activations
        per_eval, block = PLAIN_ACTIVATION_CONSTANT * points * (sum(hidden) + M), 0
    evals_per_step = EVALUATIONS_PER_STEP[integrator]
    evals = evals_per_step * integrator_steps
    if checkpoint_steps:
        heap = device_type == "cpu" and points * max(hidden) * dtype_bytes < MMAP_THRESHOLD
        checkpointed = (HEAP_SUBSTEPS * evals_per_step + HEAP_PER_STEP * integrator_steps
                        if heap else CHECKPOINT_SUBSTEPS * evals_per_step)
        evals = min(evals, checkpointed)
    transforms = 10 * particles * S * (M + 1) ** 2 if num_quantities > 0 else 0
    inputs = integrator_steps * particles * batch_points * M if checkpoint_steps else 0
    activations = per_eval * evals + block + 8 * particles * D + transforms + inputs
    raw = sum(t * p for t, p in splits) * M
    pairs = sum(2 * t * (p - 1) for t, p in splits) * M
    return MemoryEstimate(
        parameters=values * dtype_bytes,
        optimizer=3 * values * dtype_bytes,
        data=2 * raw * 8 + pairs * dtype_bytes,
        activations=int(activations) * dtype_bytes,
    )


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def available_memory(device: torch.device | str = "cpu") -> int | None:
    """Bytes a run on ``device`` may still use, or ``None`` when it cannot be told.

    CUDA: the device's free memory; otherwise ``MemAvailable`` of ``/proc/meminfo`` (Linux),
    else available (or, failing that, all) physical pages from ``os.sysconf``.
    """
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    found = _meminfo_available()
    if found is not None:
        return found
    for pages in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):
        try:
            return int(os.sysconf(pages) * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            continue
    return None


def format_bytes(n: float) -> str:
    """``n`` bytes with a binary unit, e.g. ``"1.5 GiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def format_memory(estimate: MemoryEstimate, available: int | None = None) -> str:
    """One line: the total, its parts and (if known) the available memory."""
    parts = ", ".join(f"{k} {format_bytes(v)}" for k, v in estimate.parts().items())
    line = f"memory estimate {format_bytes(estimate.total)} ({parts})"
    if available is not None:
        line += f"; {format_bytes(available)} available"
    return line
