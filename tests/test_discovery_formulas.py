"""Tests for :mod:`pyro_razor.discovery.formulas` (float64 unless stated)."""

from __future__ import annotations

import pytest
import torch

from pyro_razor.discovery.formulas import (
    format_quantities,
    format_quantity,
    monomials,
    quantity_coefficients,
    quantity_from_coefficients,
    simplest_basis,
)
from pyro_razor.symmetry import phase_labels, quadratic_value, symmetric_from_unconstrained
from pyro_razor.systems import make_system

DT = torch.float64
NBODY_NAMES = ["x1", "y1", "x2", "y2", "x3", "y3", "px1", "py1", "px2", "py2", "px3", "py3"]
U2_FORMULAS = [
    "C1 = q1² + p1²",
    "C2 = q1·q2 + p1·p2",
    "C3 = q2² + p2²",
    "C4 = q1·p2 − q2·p1",
]


def system_quantities(name: str, **params) -> tuple[torch.Tensor, torch.Tensor]:
    """Stacked ground-truth ``A (K, M, M)`` and ``b (K, M)`` of a built-in system."""
    quantities = make_system(name, **params).conserved_quantities
    return torch.stack([c.A for c in quantities]), torch.stack([c.b for c in quantities])


def mixed(A: torch.Tensor, b: torch.Tensor, rows: int, seed: int):
    """``rows`` random linear combinations of the ``K`` quantities (same span if rows >= K)."""
    W = torch.randn(rows, A.shape[0], dtype=DT, generator=torch.Generator().manual_seed(seed))
    return torch.einsum("lk,kij->lij", W, A), W @ b


def random_quantities(K: int, M: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``K`` random quadratic quantities on ``R^M`` (standard normal entries)."""
    g = torch.Generator().manual_seed(seed)
    A = symmetric_from_unconstrained(torch.randn(K, M, M, dtype=DT, generator=g))
    return A, torch.randn(K, M, dtype=DT, generator=g)


def coefficient_row(M: int, terms: dict[str, float], names=None) -> torch.Tensor:
    """Coefficients of ``sum_label value * monomial(label)``, located by label."""
    labels = monomials(names or phase_labels(M))
    row = torch.zeros(len(labels), dtype=DT)
    for label, value in terms.items():
        row[labels.index(label)] = value
    return row


def evaluate_monomials(labels: list[str], names: list[str], x: torch.Tensor) -> torch.Tensor:
    """``(..., n_monomials)`` monomial values at ``x (..., M)``, parsed from the labels."""
    values = []
    for label in labels:
        if label.endswith("²"):
            values.append(x[..., names.index(label[:-1])] ** 2)
        else:
            factors = [x[..., names.index(part)] for part in label.split("·")]
            values.append(factors[0] if len(factors) == 1 else factors[0] * factors[1])
    return torch.stack(values, dim=-1)


# ----------------------------------------------------------------------------- monomials


def test_phase_labels_and_monomial_order():
    """Default names, and the order q q (i <= j), q p (all), p p (i <= j), then linear."""
    assert phase_labels(4) == ["q1", "q2", "p1", "p2"]
    assert monomials(["x", "y", "px", "py"]) == [
        "x²", "x·y", "y²", "x·px", "x·py", "y·px", "y·py", "px²", "px·py", "py²",
        "x", "y", "px", "py",
    ]  # fmt: skip
    for M in (2, 6, 12):
        assert len(monomials(phase_labels(M))) == M * (M + 3) // 2


# ----------------------------------------------------------------------------- coefficients


def test_coefficients_of_a_hand_example():
    """``A = [[2, 3], [3, 4]], b = (5, 6)``: ``C = q² + 3 q p + 2 p² + 5 q + 6 p`` exactly."""
    A = torch.tensor([[[2.0, 3.0], [3.0, 4.0]]], dtype=DT)
    b = torch.tensor([[5.0, 6.0]], dtype=DT)
    assert quantity_coefficients(A, b).tolist() == [[1.0, 3.0, 2.0, 5.0, 6.0]]


def test_coefficients_evaluate_the_quantity():
    """``sum coeff * monomial(x) = 1/2 x^T A x + b^T x`` at random points (1e-12 relative)."""
    A, b = random_quantities(3, 6, seed=1)
    names = phase_labels(6)
    x = torch.randn(50, 6, dtype=DT, generator=torch.Generator().manual_seed(2))
    basis = evaluate_monomials(monomials(names), names, x)
    value = basis @ quantity_coefficients(A, b).T
    for k in range(3):
        expected = quadratic_value(A[k], b[k], x)
        assert torch.allclose(value[:, k], expected, rtol=1e-12, atol=1e-12)


def test_coefficients_round_trip_exactly():
    """Both compositions are the identity bit for bit (factors 2 and 1/2 are exact)."""
    A, b = random_quantities(5, 6, seed=3)
    A_back, b_back = quantity_from_coefficients(quantity_coefficients(A, b), 6)
    assert torch.equal(A_back, A) and torch.equal(b_back, b)
    c = torch.randn(4, 27, dtype=DT, generator=torch.Generator().manual_seed(4))
    assert torch.equal(quantity_coefficients(*quantity_from_coefficients(c, 6)), c)


# ----------------------------------------------------------------------------- simplest basis


def test_rref_of_u2_recovers_the_canonical_rows():
    """Any mix of H1, H2, R12, F12 reduces to q1²+p1², q1q2+p1p2, q2²+p2², q1p2-q2p1 (1e-10)."""
    A, b = mixed(*system_quantities("oscillators", n=2), rows=4, seed=5)
    A_r, b_r, rank = simplest_basis(A, b)
    expected = torch.stack([
        coefficient_row(4, {"q1²": 1, "p1²": 1}),
        coefficient_row(4, {"q1·q2": 1, "p1·p2": 1}),
        coefficient_row(4, {"q2²": 1, "p2²": 1}),
        coefficient_row(4, {"q1·p2": 1, "q2·p1": -1}),
    ])  # fmt: skip
    assert rank == 4 and A_r.shape == (4, 4, 4) and b_r.shape == (4, 4)
    assert torch.allclose(quantity_coefficients(A_r, b_r), expected, rtol=0, atol=1e-10)


def test_rref_drops_dependent_and_zero_rows():
    """Nine mixes plus a zero row of the 4-dim u(2) span: rank 4, the same canonical rows."""
    A, b = system_quantities("oscillators", n=2)
    A_many, b_many = mixed(A, b, rows=9, seed=6)
    A_many = torch.cat([A_many, torch.zeros(1, 4, 4, dtype=DT)])
    b_many = torch.cat([b_many, torch.zeros(1, 4, dtype=DT)])
    A_r, b_r, rank = simplest_basis(A_many, b_many)
    A_ref, b_ref, _ = simplest_basis(A, b)
    assert rank == 4
    assert torch.allclose(A_r, A_ref, atol=1e-10) and torch.allclose(b_r, b_ref, atol=1e-10)


def test_rref_structure_and_span():
    """Pivots are 1, pivot columns are 0 elsewhere, and the row space is unchanged."""
    A, b = random_quantities(3, 4, seed=7)
    A_r, b_r, rank = simplest_basis(A, b)
    R = quantity_coefficients(A_r, b_r)
    pivots = [int((row.abs() > 0).nonzero()[0]) for row in R]
    assert rank == 3 and pivots == sorted(pivots)
    for k, col in enumerate(pivots):
        assert R[k, col] == 1.0 and int((R[:, col] != 0).sum()) == 1
    both = torch.cat([quantity_coefficients(A, b), R])
    assert int(torch.linalg.matrix_rank(both)) == 3


def test_rref_of_the_2d_three_body_quantities():
    """7 independent rows; the last two are the total linear momenta, in span (rank 7)."""
    A, b = mixed(*system_quantities("nbody", n=3, dim=2), rows=7, seed=8)
    A_r, b_r, rank = simplest_basis(A, b)
    assert rank == 7
    px = torch.zeros(12, dtype=DT)
    px[[6, 8, 10]] = 1.0
    py = torch.zeros(12, dtype=DT)
    py[[7, 9, 11]] = 1.0
    assert torch.allclose(A_r[5:], torch.zeros(2, 12, 12, dtype=DT), atol=1e-10)
    assert torch.allclose(b_r[5:], torch.stack([px, py]), atol=1e-10)
    both = torch.cat([quantity_coefficients(A, b), quantity_coefficients(A_r, b_r)])
    assert int(torch.linalg.matrix_rank(both)) == 7


def test_rank_tolerance_is_relative():
    """A third row off the span by 1e-6 (relative) counts at tol 1e-8 but not at tol 1e-4."""
    A, b = random_quantities(2, 4, seed=9)
    A = A * 1e-5  # tiny overall scale: rows are normalised, so the decision does not change
    b = b * 1e-5
    extra_A = (A[0] + A[1] + 1e-6 * 1e-5 * torch.eye(4, dtype=DT))[None]
    extra_b = (b[0] + b[1])[None]
    A3, b3 = torch.cat([A, extra_A]), torch.cat([b, extra_b])
    assert simplest_basis(A3, b3, tol=1e-8)[2] == 3
    assert simplest_basis(A3, b3, tol=1e-4)[2] == 2


def test_simplest_basis_keeps_dtype():
    """float32 in, float32 out, equal to the float64 result to 1e-5."""
    A, b = mixed(*system_quantities("oscillators", n=2), rows=4, seed=10)
    A32, b32, rank = simplest_basis(A.float(), b.float())
    A64, b64, _ = simplest_basis(A, b)
    assert rank == 4 and A32.dtype == torch.float32 and b32.dtype == torch.float32
    assert torch.allclose(A32.double(), A64, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_formulas_on_cuda():
    """The same formulas from tensors on the GPU."""
    A, b = mixed(*system_quantities("oscillators", n=2), rows=4, seed=11)
    A_r, b_r, _ = simplest_basis(A.cuda(), b.cuda())
    assert A_r.device.type == "cuda"
    assert format_quantities(A.cuda(), b.cuda()) == U2_FORMULAS


# ----------------------------------------------------------------------------- formatting


def test_format_u2_and_three_body():
    """Exact strings for u(2) (default names) and the 3-body momenta (user names)."""
    A, b = mixed(*system_quantities("oscillators", n=2), rows=4, seed=12)
    assert format_quantities(A, b) == U2_FORMULAS
    lines = format_quantities(*mixed(*system_quantities("nbody", n=3, dim=2), 7, 13), NBODY_NAMES)
    assert len(lines) == 7
    assert lines[0] == "C1 = x1·py1 − y1·px1 + x2·py2 − y2·px2 + x3·py3 − y3·px3"
    assert lines[2] == "C3 = px1² + 2 px1·px2 + 2 px1·px3 + px2² + 2 px2·px3 + px3²"
    assert lines[5:] == ["C6 = px1 + px2 + px3", "C7 = py1 + py2 + py3"]


def test_noisy_span_prints_the_same_formulas():
    """Noise of 1e-4 on every entry of an orthogonally mixed u(2) basis leaves the
    precision-2 formulas unchanged (so for 300 of 300 seeds tried; a badly conditioned mix,
    cond > 50, amplifies the noise past the 5e-3 display threshold, as it should)."""
    A, b = system_quantities("oscillators", n=2)
    Q = torch.linalg.qr(torch.randn(4, 4, dtype=DT, generator=torch.Generator().manual_seed(14)))
    A, b = torch.einsum("lk,kij->lij", Q[0], A), Q[0] @ b
    g = torch.Generator().manual_seed(15)
    A_noisy = A + 1e-4 * symmetric_from_unconstrained(torch.randn(4, 4, 4, dtype=DT, generator=g))
    b_noisy = b + 1e-4 * torch.randn(4, 4, dtype=DT, generator=g)
    assert format_quantities(A_noisy, b_noisy, precision=2) == U2_FORMULAS
    # With a rank tolerance below the noise, a noise entry becomes the fourth pivot.
    assert format_quantities(A_noisy, b_noisy, precision=2, tol=1e-8)[3] != U2_FORMULAS[3]


def test_format_signs_rounding_and_names():
    """Leading minus, ' − ' between terms, rounding at the precision, ±1 written bare."""
    names = ["x", "y", "px", "py"]
    angular = coefficient_row(4, {"x·py": 1.0, "y·px": -1.0}, names)
    assert format_quantity(angular, names, label="L") == "L = x·py − y·px"
    row = coefficient_row(4, {"x²": -1.004, "px²": 0.5, "x": -2.25, "py": 1 / 3}, names)
    assert format_quantity(row, names) == "C1 = −x² + 0.5 px² − 2.25 x + 0.33 py"
    expected = "C1 = −1.004 x² + 0.5 px² − 2.25 x + 0.333 py"
    assert format_quantity(row, names, precision=3) == expected
    near_one = coefficient_row(2, {"q1²": 0.999, "p1²": 1.006})
    assert format_quantity(near_one) == "C1 = q1² + 1.01 p1²"
    assert format_quantity(torch.zeros(5, dtype=DT)) == "C1 = 0"


def test_scientific_notation_rule():
    """Small or large kept coefficients go scientific; terms tiny relative to the largest drop."""
    fmt = format_quantity
    assert fmt(coefficient_row(2, {"q1²": 1e-6, "p1²": 2.5e-6})) == "C1 = 1e-6 q1² + 2.5e-6 p1²"
    assert fmt(coefficient_row(2, {"q1²": 25000.0, "p1²": 300.0})) == "C1 = 2.5e4 q1² + 300 p1²"
    assert fmt(coefficient_row(2, {"q1²": 0.5, "p1²": 0.004})) == "C1 = 0.5 q1² + 4e-3 p1²"
    tiny = coefficient_row(2, {"q1²": 1.0, "p1²": 1e-6})
    assert fmt(tiny, precision=2) == "C1 = q1²"  # 1e-6 < 0.5e-2 relative: dropped
    assert fmt(tiny, precision=6) == "C1 = q1² + 1e-6 p1²"  # kept, and not 0.000001
    assert fmt(coefficient_row(2, {"q1²": 0.05}), precision=1) == "C1 = 5e-2 q1²"
    assert fmt(coefficient_row(2, {"q1²": 0.05}), precision=4) == "C1 = 0.05 q1²"
    assert fmt(coefficient_row(2, {"q1²": 1234.5678}), precision=0) == "C1 = 1235 q1²"


def parse_formula(text: str, labels: list[str]) -> dict[str, float]:
    """Invert :func:`format_quantity` for the test: ``{monomial label: printed value}``."""
    body = text.split(" = ", 1)[1]
    body = body.replace(" − ", " + −")
    out = {}
    for term in body.split(" + "):
        sign = -1.0 if term.startswith("−") else 1.0
        parts = term.lstrip("−").split(" ")
        number, label = (parts[0], parts[1]) if len(parts) == 2 else ("1", parts[0])
        assert label in labels
        out[label] = sign * float(number)
    return out


def test_printed_numbers_follow_the_rule():
    """Random rows over 16 decades: each printed number matches its coefficient (fixed: to
    0.5e-p absolute; scientific: to 0.5e-p relative, p = 2), is never 0, and exactly the terms
    below 0.5e-2 times the largest are dropped."""
    g = torch.Generator().manual_seed(16)
    labels = monomials(phase_labels(2))
    for _ in range(50):
        magnitude = 10.0 ** (6 * torch.rand(5, dtype=DT, generator=g) - 3)
        sign = torch.where(torch.rand(5, dtype=DT, generator=g) < 0.5, -1.0, 1.0)
        overall = 10.0 ** (16 * torch.rand((), dtype=DT, generator=g) - 8)
        row = sign * magnitude * overall
        printed = parse_formula(format_quantity(row, precision=2), labels)
        largest = float(row.abs().max())
        for label, c in zip(labels, row.tolist(), strict=True):
            if abs(c) < 0.5e-2 * largest:
                assert label not in printed
                continue
            value = printed[label]
            assert value != 0.0 and (value < 0) == (c < 0)
            if 1e-2 <= abs(c) < 1e4:
                assert abs(value - c) <= 0.5e-2 + 1e-12
            else:
                assert abs(value - c) <= 0.5e-2 * abs(c) * (1 + 1e-9)


# ----------------------------------------------------------------------------- bad input


def test_bad_input_raises_one_clear_value_error():
    A, b = random_quantities(2, 4, seed=17)
    bad_A = A.clone()
    bad_A[0, 0, 1] += 1.0
    nan_b = b.clone()
    nan_b[1, 2] = float("nan")
    with pytest.raises(ValueError, match="symmetric"):
        quantity_coefficients(bad_A, b)
    with pytest.raises(ValueError, match="NaN or inf"):
        simplest_basis(A, nan_b)
    with pytest.raises(ValueError, match=r"A\[None\]"):
        simplest_basis(A[0], b[0])
    with pytest.raises(ValueError, match="positive and even"):
        quantity_coefficients(torch.zeros(1, 3, 3, dtype=DT), torch.zeros(1, 3, dtype=DT))
    with pytest.raises(ValueError, match="tol"):
        simplest_basis(A, b, tol=0.0)
    with pytest.raises(ValueError, match=r"shape \(K, 14\)"):
        quantity_from_coefficients(torch.zeros(2, 13, dtype=DT), 4)
    with pytest.raises(ValueError, match="positive even"):
        quantity_from_coefficients(torch.zeros(2, 9, dtype=DT), 3)
    with pytest.raises(ValueError, match="M \\(M \\+ 3\\) / 2"):
        format_quantity(torch.zeros(13, dtype=DT))
    with pytest.raises(ValueError, match="precision"):
        format_quantity(torch.zeros(14, dtype=DT), precision=-1)
    with pytest.raises(ValueError, match="NaN or inf"):
        format_quantity(torch.full((14,), float("inf"), dtype=DT))
    with pytest.raises(ValueError, match="3 coordinate names for phase dimension M = 4"):
        format_quantities(A, b, names=["x", "y", "px"])
    with pytest.raises(ValueError, match="distinct"):
        monomials(["x", "x", "px", "py"])
    with pytest.raises(ValueError, match="even, positive number of names"):
        monomials(["x", "y", "px"])


def test_format_coefficient_fixed_point_above_the_cut_scientific_below():
    """Both answers write numbers by one rule: fixed point with ``precision`` decimals from
    10^-min(precision, 2) up to 1e4 (trailing zeros dropped), else a mantissa of
    ``precision`` decimals; never a sign."""
    from pyro_razor.discovery.formulas import format_coefficient

    assert format_coefficient(0.5, 2) == "0.5"
    assert format_coefficient(-1.0, 2) == "1"
    assert format_coefficient(3.9e-4, 2) == "3.9e-4"
    assert format_coefficient(0.0123, 2) == "0.01"
    assert format_coefficient(12345.0, 2) == "1.23e4"
