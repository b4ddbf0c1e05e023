"""Tests for pyro_razor.configio: strict TOML <-> nested dataclass configs."""

from __future__ import annotations  # string annotations: exercises get_type_hints resolution

import math
import sys
from dataclasses import dataclass, field
from typing import Literal

import pytest

from pyro_razor import configio
from pyro_razor.configio import (
    ConfigError,
    dump_toml,
    from_dict,
    load_config,
    replace_path,
    to_dict,
)

tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")

# ----------------------------------------------------------------------------- test configs


@dataclass(frozen=True)
class Layer:
    width: int
    act: Literal["elu", "tanh"] = "elu"


@dataclass(frozen=True)
class ModelConfig:
    hidden: tuple[int, ...]
    activation: Literal["elu", "tanh", "relu"] = "elu"
    dropout: float | None = None
    layers: tuple[Layer, ...] = ()

    def __post_init__(self) -> None:
        if any(h <= 0 for h in self.hidden):
            raise ValueError(f"hidden sizes must be positive, got {self.hidden}")


@dataclass(frozen=True)
class DataConfig:
    system: str
    params: dict[str, float] = field(default_factory=dict)
    n_traj: int = 10
    dt: float = 0.1
    shuffle: bool = True
    tags: list[str] = field(default_factory=list)
    span: tuple[float, float] = (0.0, 1.0)
    matrix: tuple[tuple[float, ...], ...] = ()
    seed: int | None = None


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    lr: float = 1e-3
    optimizer: Literal["adam", "sgd"] = "adam"
    label: str | int = "run"


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    data: DataConfig
    model: ModelConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    notes: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("name must not be empty")


@dataclass(frozen=True)
class BadAnnotation:
    items: set[int]


def full_config() -> ExperimentConfig:
    """A config that sets every supported type, with awkward strings, keys and floats."""
    return ExperimentConfig(
        name='sho "quick"\\ run\n\ttab \x7f\x01 é ∑',
        data=DataConfig(
            system="sho",
            params={"omega": 1.5, "mass ratio": 0.1, "x.y": -0.0, "": 1e-300},
            n_traj=2**62,
            dt=0.3,
            shuffle=False,
            tags=["a", "b c", ""],
            span=(-1.25, 2.5e10),
            matrix=((1.0, 0.0), (0.0, -1.0), ()),
            seed=7,
        ),
        model=ModelConfig(
            hidden=(64, 64),
            activation="tanh",
            dropout=0.25,
            layers=(Layer(8), Layer(4, "tanh")),
        ),
        train=TrainConfig(epochs=3, lr=2.5e-4, optimizer="sgd", label=5),
        notes="n",
    )


def minimal_data() -> dict:
    return {"name": "x", "data": {"system": "sho"}, "model": {"hidden": [4, 4]}}


# ----------------------------------------------------------------------------- round trips


def test_round_trip_every_type(tmp_path):
    cfg = full_config()
    text = dump_toml(cfg)
    assert text == dump_toml(to_dict(cfg))
    back = from_dict(ExperimentConfig, tomllib.loads(text))
    assert back == cfg
    # exact float round trip, signed zero kept, int kept as int, tuples restored
    assert math.copysign(1.0, back.data.params["x.y"]) == -1.0
    assert back.data.params[""] == 1e-300
    assert type(back.train.label) is int and back.train.label == 5
    assert isinstance(back.model.hidden, tuple) and isinstance(back.data.tags, list)
    assert isinstance(back.data.matrix[0], tuple) and back.model.layers[1] == Layer(4, "tanh")
    # the same through a file
    path = tmp_path / "run.toml"
    path.write_text(text, encoding="utf-8")
    assert load_config(path, ExperimentConfig) == cfg


def test_round_trip_defaults_and_none():
    cfg = from_dict(ExperimentConfig, minimal_data())
    assert cfg.data.seed is None and cfg.model.dropout is None and cfg.notes is None
    assert cfg.train == TrainConfig() and cfg.data.params == {}
    d = to_dict(cfg)
    assert "seed" not in d["data"] and "notes" not in d and d["model"]["hidden"] == [4, 4]
    assert from_dict(ExperimentConfig, tomllib.loads(dump_toml(cfg))) == cfg


def test_from_dict_conversions():
    data = minimal_data()
    data["data"].update(dt=1, n_traj=1e4, params={"k": 2})
    data["train"] = {"lr": 1, "label": "3"}
    cfg = from_dict(ExperimentConfig, data)
    assert type(cfg.data.dt) is float and cfg.data.dt == 1.0
    assert type(cfg.data.n_traj) is int and cfg.data.n_traj == 10_000
    assert type(cfg.data.params["k"]) is float and cfg.data.params["k"] == 2.0
    assert type(cfg.train.lr) is float and cfg.train.label == "3"
    assert cfg.model.hidden == (4, 4)
    # an existing dataclass instance is accepted for a nested field
    data["model"] = ModelConfig(hidden=(2,))
    assert from_dict(ExperimentConfig, data).model.hidden == (2,)


def test_dump_toml_exact_text():
    text = dump_toml(
        {
            "b": 1,
            "sub": {"x": [1, 2.5, "s"], "deep": {}},
            "a b": True,
            "arr": [{"k": 1}, {}],
            "f": 1e-05,
        }
    )
    assert text == (
        'b = 1\n"a b" = true\narr = [{ k = 1 }, {}]\nf = 1e-05\n\n'
        '[sub]\nx = [1, 2.5, "s"]\n\n[sub.deep]\n'
    )
    assert tomllib.loads(text) == {
        "b": 1,
        "a b": True,
        "arr": [{"k": 1}, {}],
        "f": 1e-05,
        "sub": {"x": [1, 2.5, "s"], "deep": {}},
    }
    assert dump_toml({}) == ""


# ----------------------------------------------------------------------------- errors


def _with(path: str, value) -> dict:
    """minimal_data() with the dotted ``path`` set to ``value``."""
    data = minimal_data()
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        ("data.n_traj", "10", r"key 'data\.n_traj': expected int, got str '10'"),
        ("data.n_traj", True, r"key 'data\.n_traj': expected int, got bool True"),
        ("data.n_traj", 2.5, r"key 'data\.n_traj': expected int, got float 2\.5 \(it has a frac"),
        ("data.shuffle", 1, r"key 'data\.shuffle': expected bool, got int 1"),
        ("data.dt", True, r"key 'data\.dt': expected float, got bool True"),
        ("data.dt", math.inf, r"key 'data\.dt': expected float, got float inf \(config floats"),
        ("data.system", 3, r"key 'data\.system': expected str, got int 3"),
        ("data.tags", "abc", r"key 'data\.tags': expected list\[str\], got str 'abc' \(a TOML"),
        ("data.span", [1.0], r"key 'data\.span': .*need exactly 2 items"),
        ("data.params", [1], r"key 'data\.params': expected dict\[str, float\], got array"),
        ("data.params", {"omega": "x"}, r"key 'data\.params\.omega': expected float, got str"),
        ("data.params", {"a b": "x"}, r"key 'data\.params\.\"a b\"': expected float"),
        ("data.seed", 1.5, r"key 'data\.seed': expected int or None, got float 1\.5"),
        ("data.matrix", [[1.0], [2.0, "x"]], r"key 'data\.matrix\[1\]\[1\]': expected float"),
        ("model.hidden", [4, "x"], r"key 'model\.hidden\[1\]': expected int, got str 'x'"),
        ("model.hidden", 4, r"key 'model\.hidden': expected tuple\[int, \.\.\.\], got int 4"),
        ("model.layers", [{"width": 2, "act": "relu"}], r"'model\.layers\[0\]\.act': expected o"),
        ("model", 3, r"key 'model': expected a table of ModelConfig fields, got int 3"),
        ("train.optimizer", "adm", r"expected one of 'adam', 'sgd', got str 'adm' \(did you mean"),
        ("train.optimizer", 1, r"key 'train\.optimizer': expected one of 'adam', 'sgd', got int"),
        ("train.label", 2.5, r"key 'train\.label': expected str or int, got float 2\.5"),
        ("notes", ["x"], r"key 'notes': expected str or None, got array \['x'\]"),
    ],
)
def test_wrong_value_messages(path, value, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(ExperimentConfig, _with(path, value))


def test_unknown_key_suggests_closest():
    data = minimal_data()
    data["model"]["hiden"] = [4]
    with pytest.raises(
        ConfigError,
        match=r"unknown key 'model\.hiden' \(did you mean 'hidden'\?\); "
        r"valid keys: hidden, activation, dropout, layers$",
    ):
        from_dict(ExperimentConfig, data)
    data = minimal_data()
    data["zzz"] = 1
    with pytest.raises(ConfigError, match=r"unknown key 'zzz'; valid keys: name, data, model"):
        from_dict(ExperimentConfig, data)


def test_missing_required_key():
    data = minimal_data()
    del data["model"]["hidden"]
    with pytest.raises(ConfigError, match=r"missing required key 'model\.hidden' \(tuple\[int"):
        from_dict(ExperimentConfig, data)
    with pytest.raises(ConfigError, match=r"missing required key 'name' \(str\)"):
        from_dict(ExperimentConfig, {"data": {"system": "s"}, "model": {"hidden": []}})


def test_post_init_error_gets_key_path():
    with pytest.raises(
        ConfigError,
        match=r"invalid 'model' \(ModelConfig\): hidden sizes must be positive, got \(4, 0\)",
    ) as info:
        from_dict(ExperimentConfig, _with("model.hidden", [4, 0]))
    assert isinstance(info.value.__cause__, ValueError)
    with pytest.raises(ConfigError, match=r"^invalid ExperimentConfig: name must not be empty"):
        from_dict(ExperimentConfig, _with("name", ""))
    with pytest.raises(ConfigError, match=r"invalid 'outer\.model' \(ModelConfig\): hidden"):
        from_dict(ModelConfig, {"hidden": [-1]}, where="outer.model")


def test_programming_errors_are_type_errors():
    with pytest.raises(TypeError, match="from_dict needs a dataclass type"):
        from_dict(dict, {})
    with pytest.raises(TypeError, match=r"unsupported field type set\[int\] at key 'items'"):
        from_dict(BadAnnotation, {"items": [1]})
    with pytest.raises(TypeError, match="to_dict needs a dataclass instance"):
        to_dict({"a": 1})
    with pytest.raises(TypeError, match="dump_toml needs a dataclass instance or a mapping"):
        dump_toml([1, 2])


def test_load_config_file_errors(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"config file not found: .*nope\.toml"):
        load_config(missing, ExperimentConfig)
    with pytest.raises(ConfigError, match=r"config file is not a file: "):
        load_config(tmp_path, ExperimentConfig)
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[model]\nhidden = [4,, 5]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"invalid TOML in .*bad\.toml: .*line 3, column 13"):
        load_config(bad, ExperimentConfig)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('name = "x"\n[data]\nsystem = "s"\n[model]\nhidden = [4, true]\n')
    with pytest.raises(ConfigError, match=r"wrong\.toml: key 'model\.hidden\[1\]': expected int"):
        load_config(str(wrong), ExperimentConfig)


def test_load_config_without_toml_parser(tmp_path, monkeypatch):
    monkeypatch.setattr(configio, "_tomllib", None)
    with pytest.raises(ModuleNotFoundError, match="pip install tomli"):
        load_config(tmp_path / "x.toml", ExperimentConfig)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"a": {"b": math.nan}}, r"cannot write key 'a\.b' to TOML: nan is not finite"),
        ({"a": [1.0, -math.inf]}, r"cannot write key 'a\[1\]' to TOML: -inf is not finite"),
        ({"a": None}, r"cannot write key 'a' to TOML: None has no TOML form"),
        ({"a": [None]}, r"cannot write key 'a\[0\]' to TOML: None has no TOML form"),
        ({"a": {1, 2}}, r"cannot write key 'a' to TOML: unsupported value set"),
        ({"a": {1: 2}}, r"key 'a': TOML keys must be strings, got int 1"),
        ({"a": [{1: 2}]}, r"key 'a\[0\]': TOML keys must be strings"),
        ({"a": 2**63}, r"cannot write key 'a' to TOML: 9223372036854775808 is outside int64"),
    ],
)
def test_dump_toml_rejects(data, match):
    with pytest.raises(ConfigError, match=match):
        dump_toml(data)


def test_to_dict_rejects_none_that_cannot_round_trip():
    @dataclass
    class Opt:
        x: int | None = 3

    with pytest.raises(ConfigError, match=r"cannot write key 'x' to TOML: it is None.*default No"):
        to_dict(Opt(x=None))
    assert to_dict(Opt()) == {"x": 3}


# ----------------------------------------------------------------------------- replace_path


def test_replace_path_nested_and_validated():
    cfg = full_config()
    new = replace_path(cfg, "train.epochs", 99)
    assert new.train.epochs == 99 and cfg.train.epochs == 3
    assert new.train.lr == cfg.train.lr and new.data is cfg.data and new.model is cfg.model
    new = replace_path(cfg, "data.dt", 2)
    assert type(new.data.dt) is float and new.data.dt == 2.0
    assert replace_path(cfg, "model.hidden", [8, 16, 32]).model.hidden == (8, 16, 32)
    assert replace_path(cfg, "data.seed", None).data.seed is None
    assert replace_path(cfg, "train", {"epochs": 1}).train == TrainConfig(epochs=1)
    assert replace_path(cfg, "name", "y") == ExperimentConfig("y", cfg.data, cfg.model, cfg.train,
                                                              cfg.notes)
    with pytest.raises(ConfigError, match=r"invalid 'model' \(ModelConfig\): hidden sizes must"):
        replace_path(cfg, "model.hidden", [0])
    with pytest.raises(ConfigError, match=r"^invalid ExperimentConfig: name must not be empty"):
        replace_path(cfg, "name", "")
    with pytest.raises(ConfigError, match=r"key 'train\.epochs': expected int, got str '5'"):
        replace_path(cfg, "train.epochs", "5")


def test_replace_path_rejects_unknown_paths():
    cfg = full_config()
    with pytest.raises(
        ConfigError,
        match=r"unknown key 'train\.epoch' \(did you mean 'epochs'\?\); valid keys: epochs, lr",
    ):
        replace_path(cfg, "train.epoch", 1)
    with pytest.raises(ConfigError, match=r"unknown key 'trian' \(did you mean 'train'\?\)"):
        replace_path(cfg, "trian.epochs", 1)
    with pytest.raises(ConfigError, match=r"'train\.epochs' holds int 3, not a table of fields"):
        replace_path(cfg, "train.epochs.x", 1)
    with pytest.raises(ConfigError, match=r"invalid key path 'train\.\.epochs'"):
        replace_path(cfg, "train..epochs", 1)
    with pytest.raises(TypeError, match="replace_path needs a dataclass instance"):
        replace_path({"train": {}}, "train", 1)
