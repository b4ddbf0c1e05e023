"""Experiment configs: the shipped TOML files load, and bad values are errors naming the key."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest

from pyro_razor.configio import ConfigError, dump_toml, to_dict
from pyro_razor.runs.config import (
    DataConfig,
    EvaluationConfig,
    ExperimentConfig,
    GuideConfig,
    ModelConfig,
    load_experiment,
)
from pyro_razor.systems import DatasetSpec

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
SHIPPED = sorted(EXPERIMENTS.glob("*.toml"))

BASE = {
    "name": "tiny",
    "variants": ["vanilla", "learned", "oracle"],
    "data": {"system": "sho", "n_train": 3, "train_points": 4, "n_test": 2, "test_points": 4,
             "dt": 0.2},
    "model": {"hidden": [8], "num_quantities": 1},
    "train": {"epochs": 3},
}


def write(tmp_path: Path, changes: dict | None = None, remove: tuple[str, ...] = ()) -> Path:
    """A tiny config file: BASE with dotted-key ``changes`` applied and ``remove`` keys dropped."""
    data = copy.deepcopy(BASE)
    for dotted, value in (changes or {}).items():
        *parents, last = dotted.split(".")
        node = data
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    for dotted in remove:
        *parents, last = dotted.split(".")
        node = data
        for p in parents:
            node = node[p]
        del node[last]
    path = tmp_path / "config.toml"
    path.write_text(dump_toml(data))
    return path


# ----------------------------------------------------------------------------- shipped files


def test_every_shipped_config_loads_and_is_named_after_its_file(tmp_path):
    names = {p.stem for p in SHIPPED}
    expected = {"table1_sho", "table1_sho_quick", "table3_nbody", "table3_nbody_quick",
                "table2_oscillators_n2_quick", "table2_oscillators_n3_quick"}
    expected |= {f"table2_oscillators_n{n}" for n in range(1, 6)}
    assert expected <= names
    for path in SHIPPED:
        config = load_experiment(path)
        assert config.name == path.stem
        assert set(config.variants) == {"vanilla", "learned", "oracle"}
        quick = path.stem.endswith("_quick")
        assert config.device == ("cpu" if quick else "cuda"), path.name
        # the resolved config round-trips through TOML exactly
        copy_path = tmp_path / path.name
        copy_path.write_text(dump_toml(config))
        assert load_experiment(copy_path) == config


def test_paper_configs_match_appendix_c():
    t1 = load_experiment(EXPERIMENTS / "table1_sho.toml")
    assert t1.model.hidden == (200, 200) and t1.model.elu_alpha == 2.0
    assert (t1.model.tau_samples, t1.model.measure, t1.model.integrator_steps) == (200, "cube", 20)
    assert math.isclose(t1.model.measure_scale, math.pi, rel_tol=1e-15)
    assert (t1.train.num_particles, t1.train.batch_size, t1.train.epochs) == (20, None, 2000)
    assert t1.data.n_transitions == 28 and t1.model.num_quantities == 1
    assert t1.train.lr == 0.001 and t1.train.lr_scale == 0.01
    for n in range(1, 6):
        t2 = load_experiment(EXPERIMENTS / f"table2_oscillators_n{n}.toml")
        assert dict(t2.data.system_params) == {"n": n}
        assert t2.model.hidden == (200,) * 3 and t2.model.num_quantities == 30
        assert (t2.train.batch_size, t2.train.num_particles, t2.model.tau_samples) == (20, 2, 100)
        assert t2.data.n_transitions == 10_000 and t2.model.num_quantities >= n * n
    t3 = load_experiment(EXPERIMENTS / "table3_nbody.toml")
    assert t3.model.hidden == (250,) * 4 and t3.model.num_quantities == 10
    assert t3.model.eta_init_std == 0.01 and t3.evaluation.parallel_level == 0.95
    assert t3.data.extra_test_sets == ("moved", "wider")
    assert t3.data.spec().make_system().phase_dim == 12


def test_data_config_spec_matches_dataset_spec():
    data = DataConfig(system="oscillators", system_params={"n": 2}, n_train=5, train_points=7,
                      n_test=3, test_points=9, dt=0.25, seed=4)
    spec = data.spec()
    assert spec == DatasetSpec(system="oscillators", system_params={"n": 2}, n_train=5,
                               train_points=7, n_test=3, test_points=9, dt=0.25, seed=4)
    assert data.n_transitions == 5 * 6 == spec.n_train * (spec.train_points - 1)


def test_defaults_and_dtype(tmp_path):
    config = load_experiment(write(tmp_path, {"dtype": "float64"}))
    assert config.model.prior == "closed_form" and config.guide.kind == "matrix_normal"
    assert config.evaluation.threshold == 0.05 and config.evaluation.min_norm == 0.0
    assert config.evaluation.min_displacement == 0.1 and config.train.elbo == "meanfield"
    assert config.guide.resolved_init_scale() == "reference"
    import torch

    assert config.torch_dtype is torch.float64
    assert to_dict(config)["model"]["hidden"] == [8]


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        ({"model.hiddn": [8]}, r"unknown key 'model\.hiddn' \(did you mean 'hidden'\?\)"),
        ({"train.epoch": 3}, r"unknown key 'train\.epoch'"),
        ({"model.hidden": "wide"}, r"key 'model\.hidden': expected tuple\[int, \.\.\.\]"),
        ({"model.hidden": [8, 0]}, r"'model'.*hidden\[1\] must be >= 1, got 0"),
        ({"model.hidden": []}, r"'model'.*hidden must list at least one"),
        ({"train.epochs": -5}, r"'train'.*epochs must be >= 1, got -5"),
        ({"train.lr": 0.0}, r"'train'.*lr must be positive"),
        ({"train.epochs": 2.5}, r"key 'train\.epochs'.*fractional"),
        ({"model.num_quantities": 0}, r"key 'model\.num_quantities'.*'learned'.*got 0"),
        ({"variants": ["vanilla", "learnt"]}, r"key 'variants\[1\]'.*did you mean 'learned'"),
        ({"variants": []}, r"key 'variants': list at least one"),
        ({"variants": ["oracle", "oracle"]}, r"key 'variants': repeated"),
        ({"data.system": "pendulum"}, r"'data'.*unknown system 'pendulum'"),
        ({"data.system_params": {"m": 2}}, r"'data'.*unknown parameter"),
        ({"data.n_train": 0}, r"'data'.*n_train must be >= 1, got 0"),
        ({"data.train_points": 1}, r"'data'.*train_points must be >= 2"),
        ({"data.dt": -0.1}, r"'data'.*dt must be positive"),
        ({"data.extra_test_sets": ["moved"]}, r"'data'.*no test set 'moved'"),
        ({"model.integrator": "verlet"}, r"key 'model\.integrator'.*'euler'"),
        ({"model.prior": "empirical"}, r"key 'model\.prior'"),
        ({"model.measure_scale": 0.0}, r"'model'.*measure_scale must be positive"),
        ({"model.eta_init_std": -1.0}, r"'model'.*eta_init_std must be >= 0"),
        ({"guide.kind": "auto_mvn"}, r"key 'guide\.kind'"),
        ({"guide.init_scale": -1.0}, r"'guide'.*init_scale must be positive"),
        ({"guide.rank": 2}, r"'guide'.*rank applies only to kind 'auto_lowrank'"),
        ({"evaluation.threshold": 1.5}, r"'evaluation'.*threshold must be in \(0, 1\)"),
        ({"evaluation.parallel_level": 0.0}, r"'evaluation'.*parallel_level"),
        ({"evaluation.rollout_points": 1}, r"'evaluation'.*rollout_points must be >= 2"),
        ({"device": "gpu0"}, r"key 'device'"),
        ({"dtype": "float16"}, r"key 'dtype'"),
        ({"name": "a/b"}, r"key 'name'"),
        ({"train.batch_size": 4}, r"key 'train\.batch_size'.*only data\.n_train = 3"),
    ],
)
def test_bad_values_are_config_errors_naming_the_key(tmp_path, changes, pattern):
    path = write(tmp_path, changes)
    with pytest.raises(ConfigError, match=pattern) as info:
        load_experiment(path)
    assert str(path) in str(info.value)  # the message starts with the file


def test_missing_required_key_and_missing_file(tmp_path):
    # data needs a source: a system or a file (neither is required on its own)
    with pytest.raises(ConfigError, match=r"'data'.*give exactly one of system .* and file"):
        load_experiment(write(tmp_path, remove=("data.system",)))
    with pytest.raises(ConfigError, match="config file not found"):
        load_experiment(tmp_path / "nope.toml")


def test_vanilla_only_experiment_may_have_no_quantities():
    config = ExperimentConfig(
        name="v", variants=("vanilla",), data=DataConfig(system="sho", n_train=2),
        model=ModelConfig(num_quantities=0),
    )
    assert config.model.num_quantities == 0


def test_section_classes_validate_directly():
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        EvaluationConfig(num_samples=0)
    with pytest.raises(ValueError, match="init_scale must be positive"):
        GuideConfig(init_scale=float("nan"))
    with pytest.raises(ValueError, match="tau_samples must be >= 1"):
        ModelConfig(tau_samples=0)
