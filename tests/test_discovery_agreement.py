"""span_agreement: principal angles between the razor's and the direct estimate's spans."""

from __future__ import annotations

import math

import pytest
import torch

from pyro_razor.discovery.agreement import quadratic_span, records_agreement, span_agreement
from pyro_razor.systems.units import PhaseSpaceScaling

F64 = torch.float64


def energies(*weights) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantities ``sum_i w_i E_i`` of two oscillators, ``E_i = (q_i^2 + p_i^2) / 2``, in
    ``M = 4`` coordinates ``(q1, q2, p1, p2)``; one per row of ``weights``."""
    A = torch.stack([torch.diag(torch.tensor([w[0], w[1], w[0], w[1]], dtype=F64))
                     for w in weights])
    return A, torch.zeros(len(weights), 4, dtype=F64)


IDENTITY = PhaseSpaceScaling(torch.zeros(4, dtype=F64), torch.ones(2, dtype=F64),
                             torch.ones(2, dtype=F64))


def test_same_span_in_another_basis_gives_zero_angles():
    """{2 E1 + 1.16 E2, E1 - E2} spans what {E1, E2} spans: both angles 0 to 1e-6 degrees,
    also after a standardisation that rescales the coordinates."""
    scaled = PhaseSpaceScaling(torch.tensor([0.3, -0.2, 0.1, 0.0], dtype=F64),
                               torch.tensor([2.0, 0.5], dtype=F64),
                               torch.tensor([0.25, 1.0], dtype=F64))
    for scaling in (IDENTITY, scaled):
        out = span_agreement(energies((2.0, 1.16), (1.0, -1.0)), energies((1, 0), (0, 1)),
                             scaling)
        assert out["razor"] == out["direct"] == 2
        assert out["angles_deg"] == pytest.approx([0.0, 0.0], abs=1e-6)


def test_angles_are_those_of_the_coefficient_vectors():
    """E1 against E1 + E2: 45 degrees (orthogonal, equal-length coefficient vectors); E1
    against E2: 90; an empty span: no angle."""
    out = span_agreement(energies((1, 0)), energies((1, 1)), IDENTITY)
    assert out["largest_deg"] == pytest.approx(45.0, abs=1e-9)
    assert span_agreement(energies((1, 0)), energies((0, 1)), IDENTITY)["angles_deg"] == \
        pytest.approx([90.0], abs=1e-9)
    empty = (torch.zeros(0, 4, 4, dtype=F64), torch.zeros(0, 4, dtype=F64))
    assert span_agreement(empty, energies((1, 0)), IDENTITY) == {
        "razor": 0, "direct": 1, "angles_deg": [], "largest_deg": None}
    assert math.isclose(span_agreement(energies((1, 0), (0, 1)), energies((1, 1)),
                                       IDENTITY)["largest_deg"], 0.0, abs_tol=1e-6)


def test_quadratic_span_of_quantity_records_including_none():
    """A razor answer with nothing found (re-deciding a grid row, or discover) must not fail
    on the empty span."""
    A, b = quadratic_span([])
    assert A.shape == (0, 0, 0) and b.shape == (0, 0)
    A, b = quadratic_span([{"A": [[1.0, 0.0], [0.0, 1.0]], "b": [0.0, 2.0]}])
    assert A.shape == (1, 2, 2) and b.tolist() == [[0.0, 2.0]]


def test_records_agreement_compares_with_the_direct_laws_only():
    """Only the direct estimate's ``conserved`` records are its laws; approximate or undecided
    ones are left out of the comparison."""
    eye, flip = torch.eye(4, dtype=F64), torch.diag(torch.tensor([1.0, -1.0, 1.0, -1.0]))
    law = {"A": eye.tolist(), "b": [0.0] * 4}
    other = {"A": flip.tolist(), "b": [0.0] * 4}
    direct = [{**law, "kind": "conserved"}, {**other, "kind": "approximate"}]
    out = records_agreement([law], direct, IDENTITY)
    assert (out["razor"], out["direct"]) == (1, 1) and out["largest_deg"] < 1e-6
    assert records_agreement([], direct, IDENTITY)["largest_deg"] is None
