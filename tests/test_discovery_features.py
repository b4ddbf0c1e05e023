"""Feature libraries beyond monomials, their conditioning, and the command-line spec parser."""

from __future__ import annotations

import math

import pytest
import torch

from pyro_razor.discovery.direct import direct_estimate
from pyro_razor.discovery.features import ConditionedFeatures, MonomialFeatures
from pyro_razor.discovery.libraries import (
    CallableFeatures,
    FeatureUnion,
    InverseDistanceFeatures,
    ProductFeatures,
    TrigFeatures,
    parse_feature_spec,
)
from pyro_razor.systems.units import fit_scaling

F64 = torch.float64


def _exp_library(M=4):
    return CallableFeatures(M, [lambda x: torch.exp(x[:, 0] - x[:, 1]), lambda x: x[:, 2] ** 3],
                            ["exp(x − y)", "px³"])


LIBRARIES = {
    "trig": lambda: TrigFeatures(4, [0, 1], harmonics=2),
    "central": lambda: InverseDistanceFeatures(4, 2),
    "bodies3d": lambda: InverseDistanceFeatures(12, 3),
    "callable": _exp_library,
    "union": lambda: FeatureUnion(MonomialFeatures(4, 3, standardised=False),
                                  InverseDistanceFeatures(4, 2)),
    "product": lambda: ProductFeatures(_exp_library(), MonomialFeatures(4, 1, False)),
}


@pytest.mark.parametrize("name", list(LIBRARIES))
def test_jacobians_match_autograd(name):
    """Every library's Jacobian equals autograd's to 1e-10 (float64; user callables return
    detached values, so theirs is checked against central differences, h = 1e-5, to 1e-7)."""
    f = LIBRARIES[name]()
    x = torch.randn(6, f.M, dtype=F64, generator=torch.Generator().manual_seed(1)) + 0.5
    phi, J = f(x)
    assert phi.shape == (6, f.num_features) and J.shape == (6, f.num_features, f.M)
    if name in ("callable", "product"):
        h, eye = 1e-5, torch.eye(f.M, dtype=F64)
        fd = torch.stack([(f(x + h * eye[m])[0] - f(x - h * eye[m])[0]) / (2 * h)
                          for m in range(f.M)], -1)
        torch.testing.assert_close(J, fd, rtol=1e-7, atol=1e-7)
    else:
        auto = torch.autograd.functional.jacobian(lambda z: f(z)[0].sum(0), x).permute(1, 0, 2)
        torch.testing.assert_close(J, auto, rtol=1e-10, atol=1e-10)
    assert len(f.labels([f"c{i}" for i in range(f.M)])) == f.num_features
    assert len(torch.as_tensor(f.complexities)) == f.num_features


def test_values_and_labels_are_the_named_functions():
    x = torch.tensor([[3.0, 4.0, 0.5, -1.0]], dtype=F64)
    phi, _ = InverseDistanceFeatures(4, 2)(x)
    torch.testing.assert_close(phi[0], torch.tensor([0.2, 0.6, 0.8], dtype=F64))  # 1/r, x/r, y/r
    assert InverseDistanceFeatures(4, 2).labels(["x", "y", "px", "py"]) == ["1/r", "x/r", "y/r"]
    two = InverseDistanceFeatures(8, 2)
    assert two.labels(["x1", "y1", "x2", "y2", "a", "b", "c", "d"])[:2] == ["1/r12",
                                                                           "(x1 − x2)/r12"]
    trig = TrigFeatures(2, [0], harmonics=2)
    assert trig.labels(["q", "p"]) == ["cos(q)", "sin(q)", "cos(2q)", "sin(2q)"]
    phi, _ = trig(torch.tensor([[0.3, 9.0]], dtype=F64))
    assert float(phi[0, 2]) == pytest.approx(math.cos(0.6), abs=1e-15)


def test_conditioning_drops_constant_and_duplicate_columns_with_a_warning():
    """A constant user feature and a copy of p² are dropped; the quartic energy is still found
    (1 law) with the remaining columns."""
    x = _quartic(B=12, n=11)
    dup = CallableFeatures(2, [lambda s: s[:, 1] ** 2, lambda s: s[:, 0] * 0 + 1.0],
                           ["p² again", "one"])
    lib = FeatureUnion(MonomialFeatures(2, 4, standardised=False), dup)
    e = direct_estimate(x, features=lib)
    assert e.features.num_features == 14
    assert any("'p² again' is a linear combination" in w for w in e.warnings)
    assert any("'one' is constant" in w for w in e.warnings)
    assert (e.status, e.count) == ("determined", 1)


def test_conditioned_columns_carry_the_noise_in_standardised_units():
    """For a library on the user's coordinates, J is multiplied by the scale D: d phi / dz."""
    x = torch.randn(50, 2, dtype=F64, generator=torch.Generator().manual_seed(2)) * \
        torch.tensor([10.0, 0.1], dtype=F64)
    scaling = fit_scaling(x)
    z = scaling.to_scaled(x)
    c = ConditionedFeatures(TrigFeatures(2, [0, 1]), scaling, z)
    auto = torch.autograd.functional.jacobian(lambda s: c(s)[0].sum(0), z).permute(1, 0, 2)
    torch.testing.assert_close(c(z)[1], auto, rtol=1e-10, atol=1e-10)
    assert float(c(z)[0].std(0, correction=0).max()) == pytest.approx(1.0, abs=1e-12)


def test_default_degree_two_is_bit_identical_to_the_plain_monomials():
    x = _quartic(B=10, n=11)
    a, b = direct_estimate(x), direct_estimate(x, degree=2, features=None)
    assert torch.equal(a.coefficients, b.coefficients) and torch.equal(a.ratios, b.ratios)
    assert isinstance(a.features, MonomialFeatures)


def test_parse_feature_spec_builds_the_library():
    lib = parse_feature_spec("trig:0,inverse-distance:2", 4, 2)
    assert lib.num_features == 14 + 2 + 3
    assert lib.labels(["x", "y", "px", "py"])[-5:] == ["cos(x)", "sin(x)", "1/r", "x/r", "y/r"]
    assert parse_feature_spec("", 2, 4).num_features == 14
    assert parse_feature_spec("trig:0+1:2", 2, 0).num_features == 8
    with pytest.raises(ValueError, match="cannot read 'spline:3'"):
        parse_feature_spec("spline:3", 2, 2)
    with pytest.raises(ValueError, match=r"coordinates \[5\] must be indices in 0..1"):
        parse_feature_spec("trig:5", 2, 2)
    with pytest.raises(ValueError, match="no features"):
        parse_feature_spec("", 2, 0)


def test_bad_inputs_give_one_line_errors():
    with pytest.raises(ValueError, match=r"coordinates \[2\] must be indices in 0..1"):
        TrigFeatures(2, [2])
    with pytest.raises(ValueError, match="library is for M = 4, the data have M = 2"):
        direct_estimate(_quartic(B=4, n=5), features=TrigFeatures(4, [0]))
    bad = CallableFeatures(2, [lambda x: x[:, :1]], ["column"])
    with pytest.raises(ValueError, match=r"'column' returned \(3, 1\); it must return one value"):
        bad(torch.zeros(3, 2, dtype=F64))
    with pytest.raises(ValueError, match="states contain NaN"):
        TrigFeatures(2, [0])(torch.tensor([[float("nan"), 0.0]], dtype=F64))
    with pytest.raises(ValueError, match="'1/r' is NaN or inf on the data"):
        x = torch.cat([_quartic(B=4, n=5)] * 2, -1)
        x[0, 0, :2] = 0.0  # a state at the centre: r = 0
        direct_estimate(x, features=InverseDistanceFeatures(4, 2))
    with pytest.raises(ValueError, match="mixes libraries on standardised"):
        FeatureUnion(MonomialFeatures(2, 2), TrigFeatures(2, [0]))
    with pytest.raises(ValueError) as info:
        CallableFeatures(2, [abs], [])
    assert "\n" not in str(info.value)


def _quartic(B: int, n: int) -> torch.Tensor:
    from pyro_razor.systems import HamiltonianSystem, gaussian_initial, simulate

    system = HamiltonianSystem("quartic", 2, lambda x: 0.5 * x[..., 1] ** 2
                               + 0.25 * x[..., 0] ** 4, gaussian_initial(2))
    g = torch.Generator().manual_seed(0)
    return simulate(system, system.sample_initial(B, g), n, 0.2)
