"""One writing rule for every answer: about the data, simplest basis, small terms dropped."""

from __future__ import annotations

import torch

from pyro_razor.discovery.writing import (
    drop_small,
    formulas,
    origin,
    readable_basis,
    shifted_names,
)

F64 = torch.float64


def test_offset_energy_is_written_about_the_data_mean():
    """C = (x - 300)² + px² in (A, b) form about the origin: b = -A mu."""
    mu_true = torch.tensor([300.0, 0.0], dtype=F64)
    A = torch.diag(torch.tensor([2.0, 2.0], dtype=F64))[None]
    b = -(A[0] @ mu_true)[None]
    spread = torch.tensor([1.0, 1.0], dtype=F64)
    mu = origin(torch.tensor([300.0, 0.2], dtype=F64), spread)
    assert mu.tolist() == [300.0, 0.0]
    A_r, b_r, b_mu = readable_basis(A, b, mu, spread, precision=2)
    assert formulas(A_r, b_mu, ["x", "px"], mu, spread, 2) == ["C1 = (x − 300)² + px²"]
    torch.testing.assert_close(b_r / A_r[0, 0, 0], b[0:1] / A[0, 0, 0])  # same law, origin form
    assert shifted_names(["x", "y"], torch.tensor([-2.5, 0.0])) == ["(x + 2.5)", "y"]


def test_terms_below_the_floor_are_dropped_from_the_formula_only():
    c = torch.tensor([1.0, 0.004, 0.0, 0.0, 0.0], dtype=F64)  # x², x·p, p², x, p for M = 2
    kept = drop_small(c, torch.ones(2, dtype=F64), floor=0.01)
    assert kept.tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert drop_small(c, torch.ones(2, dtype=F64), floor=0.0).tolist() == c.tolist()
