"""The registry of config names: every name a config accepts builds, unknown names are refused."""

from __future__ import annotations

import typing

import pytest

from pyro_razor.models import ClosedFormVariancePrior, EmpiricalNoise, FixedNoise
from pyro_razor.runs import registry
from pyro_razor.runs.config import VARIANTS, GuideConfig, ModelConfig


def literal_names(cls, field: str) -> set[str]:
    return set(typing.get_args(typing.get_type_hints(cls)[field]))


def test_config_literals_and_registries_name_the_same_things():
    assert literal_names(ModelConfig, "prior") == set(registry.PRIORS)
    assert literal_names(ModelConfig, "noise") == set(registry.NOISES)
    assert literal_names(ModelConfig, "integrator") == set(registry.INTEGRATORS)
    assert literal_names(ModelConfig, "measure") == set(registry.MEASURES)
    assert literal_names(ModelConfig, "activation") == set(registry.ACTIVATION_NAMES)
    assert literal_names(ModelConfig, "eta_init") == set(registry.ETA_STARTS)
    assert literal_names(GuideConfig, "kind") == set(registry.GUIDES)
    assert set(VARIANTS) == set(registry.VARIANTS)


def test_builders_build_what_they_name():
    prior = registry.PRIORS["closed_form"](
        ModelConfig(prior_variance=0.5, prior_damping=0.5, prior_warmup_steps=7)
    )
    assert isinstance(prior, ClosedFormVariancePrior) and prior.initial_variance == 0.5
    assert prior.damping == 0.5 and prior.warmup_steps == 7
    assert isinstance(registry.NOISES["fixed"](1e-3), FixedNoise)
    noise = registry.NOISES["empirical"](2e-3)
    assert isinstance(noise, EmpiricalNoise) and float(noise.variance) == pytest.approx(2e-3)
    measure = registry.MEASURES["cube"](2.0)
    assert measure.kind == "cube" and measure.scale == 2.0


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown prior 'laplace'; choose one of \['closed_form'"):
        registry.PRIORS["laplace"]
    with pytest.raises(ValueError, match="unknown output noise 'student'"):
        registry.NOISES["student"]
    with pytest.raises(ValueError, match="unknown variant 'teacher'"):
        registry.VARIANTS["teacher"]
    assert len(registry.GUIDES) == 5 and "matrix_normal" in registry.GUIDES


def test_oracle_variants_use_the_fixed_group_and_the_full_orbit_group():
    from pyro_razor.systems import make_system

    system = make_system("nbody", n=3, dim=2)
    mc = ModelConfig(hidden=(8,))
    oracle = registry.VARIANTS["oracle"](12, 0.3, system, mc)
    orbit = registry.VARIANTS["oracle_orbit"](12, 0.3, system, mc)
    assert oracle.num_quantities == 3 and orbit.num_quantities == 7
