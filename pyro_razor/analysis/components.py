r"""Learned symmetry directions written in the ground-truth generators (paper section 5.1).

A right singular vector ``v_i`` of the learned generators is decomposed on the ground-truth
generators, each scaled to unit Frobenius norm: ``c = argmin ||G*_unit^T c - v_i||``
(minimum-norm least squares when they are dependent), e.g. ``0.71 RABS_12 + 0.70 RCOM_12``.

Shapes: ``L`` ground-truth generators, ``D = (M+1)^2`` entries, ``r`` learned directions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from pyro_razor.analysis.spectrum import F64, check_generators, rank_tolerance

__all__ = ["GroundTruth", "combination_text", "ground_truth", "oriented_components"]


@dataclass(frozen=True)
class GroundTruth:
    """Flattened ground-truth generators for the analysis (float64).

    Attributes:
        flat: ``(L, D)`` flattened generators (``L = 0``: no known quantity).
        unit: ``(L, D)`` the same scaled to unit Frobenius norm.
        names: ``L`` labels.
        dim: numerical rank of ``flat`` (the dimension of the true span).
    """

    flat: torch.Tensor
    unit: torch.Tensor
    names: list[str]
    dim: int


def ground_truth(
    true: torch.Tensor | None, names: Sequence[str] | None, M: int, device: torch.device
) -> GroundTruth:
    """Validate ground-truth generators ``(L, M+1, M+1)`` (or ``None``) for phase dimension
    ``M`` and flatten them; default names ``"G*1".."G*L"``."""
    D = (M + 1) ** 2
    if true is None:
        flat, true_dtype = torch.zeros(0, D, dtype=F64, device=device), F64
    else:
        true = check_generators(true, "analyse_generators: true")
        if true.shape[-1] != M + 1:
            raise ValueError(
                f"analyse_generators: learned generators are {M + 1} x {M + 1} (M = {M}) but "
                f"the true ones are {true.shape[-1]} x {true.shape[-1]} "
                f"(M = {true.shape[-1] - 1}); both must come from the same system"
            )
        true_dtype = true.dtype
        flat = true.to(device=device, dtype=F64).reshape(true.shape[0], D)
    L = flat.shape[0]
    labels = [f"G*{l + 1}" for l in range(L)] if names is None else [str(n) for n in names]
    if len(labels) != L:
        raise ValueError(
            f"analyse_generators: got {len(labels)} true_names for {L} true generators"
        )
    norms = flat.norm(dim=1)
    if L and bool((norms == 0).any()):
        zero = [labels[l] for l in range(L) if float(norms[l]) == 0.0]
        raise ValueError(f"analyse_generators: true generators {zero} are zero; remove them")
    dim = 0
    if L:
        S_true = torch.linalg.svdvals(flat)
        dim = int((S_true > rank_tolerance(S_true, (L, D), true_dtype)).sum())
    unit = flat / norms[:, None] if L else flat
    return GroundTruth(flat=flat, unit=unit, names=labels, dim=dim)


def oriented_components(
    V: torch.Tensor, truth: GroundTruth
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Fix the sign of each right singular vector and decompose it on the ground truth.

    The sign makes the largest coefficient (or, without ground truth, the largest entry)
    positive.

    Returns:
        ``(V_oriented (r, D), coefficients (L, r) or None)``.
    """
    r = V.shape[0]
    if truth.flat.shape[0] and r:
        coeffs = torch.linalg.pinv(truth.unit.transpose(0, 1)) @ V.transpose(0, 1)  # (L, r)
        lead = coeffs.abs().argmax(dim=0)
        signs = torch.sign(coeffs.gather(0, lead[None, :])[0])
    elif r:
        coeffs = None
        lead = V.abs().argmax(dim=1)
        signs = torch.sign(V.gather(1, lead[:, None])[:, 0])
    else:
        coeffs, signs = None, V.new_zeros(0)
    signs = torch.where(signs == 0, torch.ones_like(signs), signs)
    if coeffs is not None:
        coeffs = coeffs * signs[None, :]
    return V * signs[:, None], coeffs


def fmt_small(x: float) -> str:
    """Two decimals, or scientific notation below 0.01."""
    return f"{x:.2f}" if abs(x) >= 0.01 or x == 0 else f"{x:.1e}"


def combination_text(coeffs: dict[str, float], max_terms: int = 6, cutoff: float = 0.05) -> str:
    """``"0.71 RABS_12 + 0.70 RCOM_12"`` from ordered coefficients (small ones dropped)."""
    terms = [(n, c) for n, c in coeffs.items() if abs(c) >= cutoff][:max_terms]
    if not terms:
        return "0 (no ground-truth component above 0.05)"
    text = ""
    for k, (name, c) in enumerate(terms):
        sign = "-" if c < 0 else "+"
        if k == 0:
            text = f"{'-' if c < 0 else ''}{abs(c):.2f} {name}"
        else:
            text += f" {sign} {abs(c):.2f} {name}"
    rest = sum(1 for c in coeffs.values() if abs(c) >= cutoff) - len(terms)
    if rest > 0:
        text += f" + ... ({rest} more)"
    return text
