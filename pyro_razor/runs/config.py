"""Typed experiment configs: one TOML file describes one experiment (paper section 5).

An :class:`ExperimentConfig` is a frozen tree of dataclasses, read strictly from TOML by
:func:`load_experiment` (unknown keys, wrong types and impossible values raise
:class:`~pyro_razor.configio.ConfigError` naming the dotted key) and written back by
:func:`pyro_razor.configio.dump_toml` as the resolved config of a run::

    name = "table1_sho_quick"
    variants = ["vanilla", "learned", "oracle"]
    device = "cpu"
    dtype = "float32"

    [data]       # -> DataConfig -> systems.DatasetSpec
    system = "sho"
    ...
    [model]      # -> ModelConfig: F_theta, prior, noise, integrator, measure mu(tau), K
    [guide]      # -> GuideConfig: the variational family
    [train]      # -> inference.TrainConfig: epochs, batch size, particles, learning rates
    [evaluation] # -> EvaluationConfig: metrics, long-horizon rollouts, symmetry analysis

The three variants share every setting; they differ only in the conserved quantities of the
model: none (``"vanilla"`` HNN, ``K = 0``), ``model.num_quantities`` learnable ones
(``"learned"``; quadratic, or polynomial with ``model.quantity_family = "polynomial"``), or the
system's ground-truth generators (``"oracle"``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from pyro_razor.configio import ConfigError, load_config
from pyro_razor.inference.config import TrainConfig
from pyro_razor.systems import DatasetSpec

__all__ = [
    "VARIANTS",
    "VARIANT_LABELS",
    "DataConfig",
    "EvaluationConfig",
    "ExperimentConfig",
    "GuideConfig",
    "ModelConfig",
    "TrainConfig",
    "load_experiment",
]

VARIANTS = ("vanilla", "learned", "oracle", "oracle_orbit")
"""The model variants an experiment can train, in their canonical order."""

VARIANT_LABELS = {
    "vanilla": "HNN",
    "learned": "HNN + learned symmetry",
    "oracle": "HNN + fixed symmetry (oracle)",
    "oracle_orbit": "HNN + fixed full orbit group (oracle)",
}
"""How tables and figures name the variants."""

Variant = Literal["vanilla", "learned", "oracle", "oracle_orbit"]


def _positive(value: float, name: str) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be positive and finite, got {value}")


def _at_least(value: int, minimum: int, name: str) -> None:
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


DEFAULT_DT = 0.3
"""Time step of generated data when ``data.dt`` is not given."""


@dataclass(frozen=True)
class DataConfig:
    """The dataset: generated from a system, or read from a trajectory file.

    Exactly one of ``system`` and ``file``:

    Attributes:
        system: a built-in system, ``"sho"``, ``"oscillators"`` or ``"nbody"``, or a user's
            ``"package.module:function"`` returning a :class:`~pyro_razor.systems.HamiltonianSystem`
            (called with ``system_params``; its data are not cached, the code may change).
        file: a trajectory file (``.npz``, ``.npy``, ``.csv``, ``.nc``; formats in
            :mod:`pyro_razor.systems.files`); a relative path is relative to the config file.
        system_params: keyword arguments of the system (e.g. ``{n = 3}``; n-body: ``n, dim,
            masses, G, softening, shift_std, momentum_std``).
        n_train, train_points: generated training trajectories and states per trajectory;
            ``N = n_train * (train_points - 1)`` transitions.
        n_test, test_points: the same for the test set (and every extra test set).
        dt: time between stored states (generated data: default 0.3; files: from the file,
            which must agree if both give one).
        seed: data seed (independent of the training seed); files: seeds the train/test split.
        extra_test_sets: the system's extra test sets, e.g. ``["moved", "wider"]`` (n-body).
        names: the ``M`` phase coordinate names, positions first (default: the file's, or
            ``q1..qd, p1..pd``); for files with named columns also selects and orders them.
        test_fraction: share of a file's trajectories held out for testing when it has no
            test set.
        standardise: train in units that keep the dynamics Hamiltonian (a shift and scales of
            positions and momenta with equal products) and report in the user's; default on
            for files, off for systems.
    """

    system: str | None = None
    file: str | None = None
    system_params: dict[str, int | float | tuple[float, ...]] = field(default_factory=dict)
    n_train: int = 200
    train_points: int = 51
    n_test: int = 100
    test_points: int = 51
    dt: float | None = None
    seed: int = 0
    extra_test_sets: tuple[str, ...] = ()
    names: tuple[str, ...] | None = None
    test_fraction: float = 0.2
    standardise: bool | None = None

    def __post_init__(self) -> None:
        if (self.system is None) == (self.file is None):
            raise ValueError(
                "give exactly one of system (a built-in system or 'package.module:function') "
                "and file (a trajectory file)"
            )
        _at_least(self.seed, 0, "seed")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.dt is not None:
            _positive(self.dt, "dt")
        if self.file is not None:
            self._check_file()
        else:
            self._check_generated()
        if self.standardise is None:
            object.__setattr__(self, "standardise", self.file is not None)

    def _check_file(self) -> None:
        from pyro_razor.runs.data import read_data_file

        if self.system_params or self.extra_test_sets:
            raise ValueError("system_params and extra_test_sets apply to a system, not to a file")
        contents = read_data_file(self.file, self.dt, self.names)
        object.__setattr__(self, "dt", float(contents.dt))
        object.__setattr__(self, "names", tuple(contents.names))
        if contents.test is None and contents.trajectories.shape[0] < 2:
            raise ValueError(
                f"{self.file} holds {contents.trajectories.shape[0]} trajectory; a train/test "
                "split needs at least 2 (or store a test set in the file)"
            )

    def _check_generated(self) -> None:
        if self.dt is None:
            object.__setattr__(self, "dt", DEFAULT_DT)
        _at_least(self.n_train, 1, "n_train")
        _at_least(self.n_test, 1, "n_test")
        _at_least(self.train_points, 2, "train_points")
        _at_least(self.test_points, 2, "test_points")
        system = self.spec().make_system()  # validates the system, its parameters, test sets
        if self.names is not None and len(self.names) != system.phase_dim:
            raise ValueError(
                f"names lists {len(self.names)} coordinates but the system has M = "
                f"{system.phase_dim}"
            )

    def spec(self) -> DatasetSpec:
        """The equivalent :class:`~pyro_razor.systems.DatasetSpec` (generated data only)."""
        if self.system is None:
            raise ValueError("a file data set has no DatasetSpec")
        return DatasetSpec(
            system=self.system,
            system_params=dict(self.system_params),
            n_train=self.n_train,
            train_points=self.train_points,
            n_test=self.n_test,
            test_points=self.test_points,
            dt=self.dt,
            seed=self.seed,
            extra_test_sets=self.extra_test_sets,
        )

    def make_system(self):
        """The true system, or ``None`` for file data."""
        return None if self.system is None else self.spec().make_system()

    def shapes(self) -> dict[str, object]:
        """Sizes without generating data: ``phase_dim``, ``train`` and ``test`` as
        ``(trajectories, points)`` and the number of ``extra`` test sets."""
        if self.file is not None:
            from pyro_razor.runs.data import file_split, read_data_file

            train, test = file_split(read_data_file(self.file, self.dt, self.names),
                                     self.test_fraction, self.seed)
            return {"phase_dim": train.shape[-1], "train": tuple(train.shape[:2]),
                    "test": tuple(test.shape[:2]), "extra": 0}
        return {"phase_dim": self.spec().make_system().phase_dim,
                "train": (self.n_train, self.train_points), "test": (self.n_test, self.test_points),
                "extra": len(self.extra_test_sets)}

    @property
    def source(self) -> str:
        """The system's name or the file's path, for reports."""
        return self.system if self.system is not None else str(self.file)

    @property
    def n_transitions(self) -> int:
        """``N``, training transitions: the divisor of every per-transition figure."""
        trajectories, points = self.shapes()["train"]
        return trajectories * (points - 1)


@dataclass(frozen=True)
class ModelConfig:
    """The Bayesian HNN ``F_theta``, its symmetrisation and its likelihood.

    Attributes:
        hidden: hidden widths of ``F_theta`` (at least one layer), e.g. ``[200, 200]``.
        activation: ``"elu"``, ``"tanh"``, ``"softplus"`` or ``"silu"``.
        elu_alpha: ``alpha`` of ELU.
        prior: how the per-layer prior variance ``v_l`` is chosen: ``"fixed"``, ``"learned"``
            (gradient) or ``"closed_form"`` (appendix D.3, the default).
        prior_variance: the (initial) prior variance.
        prior_damping: ``"closed_form"`` only: damping ``rho`` of the precision update
            (0: jump to the KL minimiser; the reference code uses 0.5).
        prior_warmup_steps: ``"closed_form"`` only: SVI steps before the prior starts to move.
        noise: ``"fixed"`` or ``"empirical"`` output noise ``sigma^2_data`` (appendix D.2).
        noise_variance: the (initial) ``sigma^2_data`` (paper: 0.001).
        integrator: ``"euler"`` (paper), ``"rk4"``, ``"leapfrog"`` or ``"midpoint"``.
        integrator_steps: sub-steps per ``dt`` in the likelihood (paper: 20).
        checkpoint_steps: recompute each sub-step's activations in the backward pass
            (memory / sub-steps, ~30% more compute); needed for paper scale on a CPU.
        tau_samples: ``S``, symmetrisation samples per training step.
        tau_antithetic: draw the symmetry times in antithetic pairs ``(tau, -tau)``: still
            unbiased, and a small generator's first-order effect, zero in expectation,
            cancels within each pair instead of dominating its gradient as noise (use an
            even ``S``).
        measure: ``mu(tau)``: ``"ball"`` (unit L2 ball), ``"cube"`` (``[-1, 1]^K``) or
            ``"normal"``.
        measure_scale: factor multiplying ``tau`` (reference code: ``pi``).
        num_quantities: ``K``, learnable quantities of the ``"learned"`` variant.
        quantity_family: the learned quantities' family: ``"quadratic"`` (exact
            matrix-exponential flows, the paper's) or ``"polynomial"`` (all monomials of degree
            1..``quantity_degree``, flows integrated by implicit midpoint:
            :class:`~pyro_razor.models.PolynomialQuantities`; no generator matrices, so no
            generator analysis).
        quantity_degree: ``"polynomial"`` only: the highest degree, 2..4.
        quantity_flow_steps: ``"polynomial"`` only: implicit-midpoint sub-steps of each
            time-1 flow (cost per step grows with it).
        quantity_max_speed: ``"polynomial"`` only: the flows' speed limit ``v`` (the same
            orbits, at most ``v`` fast: a cubic or quartic flow can otherwise leave every
            bounded region in finite time); 0: no limit.
        quantity_compile: ``"polynomial"`` only: run the training step's flows through
            ``torch.compile`` (one fused graph; about 2.4x faster per step on the quartic quick
            config, after a one-time compilation of about a minute, cached on disk; evaluation
            stays eager; falls back to eager with a warning if compilation fails).
        eta_init: where the learned quantities start: ``"normal"`` (``W, b ~ N(0,
            eta_init_std^2)``, 0: identity flow) or ``"direct"`` (the direct estimate's
            candidates on the training data, each at unit flow speed, the rest at zero:
            :func:`~pyro_razor.discovery.candidates.direct_start`; for polynomial quantities
            of degree 3-4 the direct estimate of that degree,
            :func:`~pyro_razor.discovery.candidates.polynomial_candidates`).
        eta_init_std: the standard deviation of the ``"normal"`` start.
        eta_seed: seed of that initialisation.
    """

    hidden: tuple[int, ...] = (200, 200)
    activation: Literal["elu", "tanh", "softplus", "silu"] = "elu"
    elu_alpha: float = 1.0
    prior: Literal["fixed", "learned", "closed_form"] = "closed_form"
    prior_variance: float = 1.0
    prior_damping: float = 0.0
    prior_warmup_steps: int = 0
    noise: Literal["fixed", "empirical"] = "fixed"
    noise_variance: float = 1e-3
    integrator: Literal["euler", "rk4", "leapfrog", "midpoint"] = "euler"
    integrator_steps: int = 20
    checkpoint_steps: bool = False
    tau_samples: int = 100
    tau_antithetic: bool = False
    measure: Literal["ball", "cube", "normal"] = "ball"
    measure_scale: float = math.pi
    num_quantities: int = 1
    quantity_family: Literal["quadratic", "polynomial"] = "quadratic"
    quantity_degree: int = 4
    quantity_flow_steps: int = 8
    quantity_max_speed: float = 10.0
    quantity_compile: bool = False
    eta_init: Literal["normal", "direct"] = "normal"
    eta_init_std: float = 0.0
    eta_seed: int = 0

    def __post_init__(self) -> None:
        if len(self.hidden) == 0:
            raise ValueError("hidden must list at least one hidden-layer width, e.g. [200, 200]")
        for i, width in enumerate(self.hidden):
            _at_least(width, 1, f"hidden[{i}]")
        if not 0.0 <= self.prior_damping < 1.0:
            raise ValueError(f"prior_damping must be in [0, 1), got {self.prior_damping}")
        _at_least(self.prior_warmup_steps, 0, "prior_warmup_steps")
        for name in ("elu_alpha", "prior_variance", "noise_variance", "measure_scale"):
            _positive(getattr(self, name), name)
        _at_least(self.integrator_steps, 1, "integrator_steps")
        _at_least(self.tau_samples, 1, "tau_samples")
        _at_least(self.num_quantities, 0, "num_quantities")
        if not 2 <= self.quantity_degree <= 4:
            raise ValueError(f"quantity_degree must be in 2..4 (polynomials of degree <= 4), "
                             f"got {self.quantity_degree}")
        _at_least(self.quantity_flow_steps, 1, "quantity_flow_steps")
        if not (self.quantity_max_speed >= 0 and math.isfinite(self.quantity_max_speed)):
            raise ValueError(f"quantity_max_speed must be >= 0 and finite (0: no limit), got "
                             f"{self.quantity_max_speed}")
        if not (self.eta_init_std >= 0 and math.isfinite(self.eta_init_std)):
            raise ValueError(f"eta_init_std must be >= 0 and finite, got {self.eta_init_std}")
        _at_least(self.eta_seed, 0, "eta_seed")


@dataclass(frozen=True)
class GuideConfig:
    """The variational family over the network weights.

    Attributes:
        kind: ``"matrix_normal"`` (per-layer matrix normal, appendix D.1), ``"auto_normal"``
            (mean field), ``"auto_lowrank"`` (low-rank multivariate normal), ``"auto_delta"``
            (MAP; its "KL" is then ``-log p(theta)``) or ``"auto_diagonal"``.
        init_scale: initial posterior standard deviation of the weights: a float (every
            weight), and for ``"matrix_normal"`` also a list (one per layer) or
            ``"reference"`` (per layer as the reference implementation starts:
            :func:`~pyro_razor.guides.matrix_normal.reference_init_scales`). Default: the
            kind's own (``"reference"`` for the matrix normal, Pyro's 0.1 for AutoGuides).
            Start wide: within a run a log-parameterised scale can grow by at most
            ``exp(2 sum_t lr_t)``.
        rank: rank of ``"auto_lowrank"`` (default: Pyro's ``sqrt`` of the dimension).
    """

    kind: Literal[
        "matrix_normal", "auto_normal", "auto_lowrank", "auto_delta", "auto_diagonal"
    ] = "matrix_normal"
    init_scale: float | Literal["reference"] | tuple[float, ...] | None = None
    rank: int | None = None

    def resolved_init_scale(self) -> float | str | tuple[float, ...]:
        """``init_scale``, or the kind's default when it is not set."""
        if self.init_scale is not None:
            return self.init_scale
        return "reference" if self.kind == "matrix_normal" else 0.1

    def __post_init__(self) -> None:
        scales = self.init_scale
        if isinstance(scales, tuple):
            if not scales:
                raise ValueError("init_scale must list at least one value (one per layer)")
            for i, value in enumerate(scales):
                _positive(value, f"init_scale[{i}]")
        elif isinstance(scales, float):
            _positive(scales, "init_scale")
        if self.kind != "matrix_normal" and scales is not None and not isinstance(scales, float):
            raise ValueError(
                f"init_scale = {scales!r} applies to kind 'matrix_normal' only; give one float "
                f"for {self.kind!r}"
            )
        if self.rank is not None:
            _at_least(self.rank, 1, "rank")
            if self.kind != "auto_lowrank":
                raise ValueError(f"rank applies only to kind 'auto_lowrank', not {self.kind!r}")


@dataclass(frozen=True)
class EvaluationConfig:
    """Evaluation after training.

    Attributes:
        num_samples: weight samples from the posterior for the metrics.
        tau_samples: symmetrisation samples at evaluation (more than in training: the
            S-sample estimate of ``H_hat`` is noisy).
        tau_sampling: how they are drawn: ``"independent"`` (eq. 5's plain Monte Carlo, the
            paper's) or ``"stratified"`` (one Latin-hypercube set per weight draw, equally
            unbiased: on the quick SHO 16 stratified times estimate ``H_hat`` and its
            gradient more precisely than 256 independent ones; RESULTS.md).
        rollout_points: states per long-horizon rollout, the start included (so the horizon is
            ``(rollout_points - 1) dt``); choose it well past ``train_points``.
        rollout_trajectories: test initial conditions rolled out.
        rollout_steps: RK4 sub-steps per ``dt`` in the rollouts; 0 (default): as many as the
            likelihood's ``model.integrator_steps``. Every rollout also measures its own
            integration error (the first weight draw again at twice the sub-steps,
            ``longterm.json``'s ``integration_error``), so a smaller value can be checked.
        threshold: singular values above ``threshold`` (relative to the largest) count as
            significant (paper section 5.1: 0.05).
        min_norm: ...and only if their absolute size is at least ``min_norm`` (0: no such
            threshold; the displacement below is the evidence that does not depend on a
            tuned singular value).
        min_displacement: ...and only if the direction's flow, under the model's measure,
            moves the training points by more than this share of their spread.
        parallel_level: parallelness that counts as a recovered direction (paper: 0.99 for
            oscillators, 0.95 for the 3-body system).
        grid: points per axis of the phase-portrait grids (2-d systems).
        chunk_size: trajectories evaluated at once (lower it if evaluation runs out of
            memory: a chunk holds ``chunk_size x transitions x tau_samples`` points).
    """

    num_samples: int = 8
    tau_samples: int = 512
    tau_sampling: Literal["independent", "stratified"] = "independent"
    rollout_points: int = 201
    rollout_trajectories: int = 10
    rollout_steps: int = 0
    threshold: float = 0.05
    min_norm: float = 0.0
    min_displacement: float = 0.1
    parallel_level: float = 0.99
    grid: int = 61
    chunk_size: int = 64

    def __post_init__(self) -> None:
        _at_least(self.num_samples, 1, "num_samples")
        _at_least(self.tau_samples, 1, "tau_samples")
        _at_least(self.rollout_points, 2, "rollout_points")
        _at_least(self.rollout_trajectories, 1, "rollout_trajectories")
        _at_least(self.rollout_steps, 0, "rollout_steps")
        _at_least(self.grid, 2, "grid")
        _at_least(self.chunk_size, 1, "chunk_size")
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if not (self.min_norm >= 0 and math.isfinite(self.min_norm)):
            raise ValueError(f"min_norm must be >= 0 and finite, got {self.min_norm}")
        if not (self.min_displacement >= 0 and math.isfinite(self.min_displacement)):
            raise ValueError(
                f"min_displacement must be >= 0 and finite, got {self.min_displacement}"
            )
        if not 0 < self.parallel_level <= 1:
            raise ValueError(f"parallel_level must be in (0, 1], got {self.parallel_level}")


@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment: a dataset, a model family and how to train and evaluate its variants.

    Attributes:
        name: run name (default output directory ``runs/<name>``).
        variants: which of ``"vanilla"``, ``"learned"``, ``"oracle"`` (the system's fixed
            group), ``"oracle_orbit"`` (all its known quantities) to train (no repeats).
        data, model, guide, train, evaluation: the sections above.
        device: a torch device string, ``"cpu"`` or ``"cuda"`` / ``"cuda:1"``.
        dtype: ``"float32"`` (fast) or ``"float64"``.
    """

    name: str
    variants: tuple[Variant, ...]
    data: DataConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    guide: GuideConfig = field(default_factory=GuideConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    device: str = "cpu"
    dtype: Literal["float32", "float64"] = "float32"

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in "/\\" + os.sep) or self.name in (".", ".."):
            raise ConfigError(
                f"key 'name': must be a non-empty file name without slashes, got {self.name!r}"
            )
        if not self.variants:
            raise ConfigError(f"key 'variants': list at least one of {list(VARIANTS)}")
        if len(set(self.variants)) != len(self.variants):
            raise ConfigError(f"key 'variants': repeated variant in {list(self.variants)}")
        if "learned" in self.variants and self.model.num_quantities < 1:
            raise ConfigError(
                "key 'model.num_quantities': the 'learned' variant needs K >= 1 learnable "
                f"quantities, got {self.model.num_quantities}"
            )
        oracles = [v for v in self.variants if v.startswith("oracle")]
        system = self.data.make_system() if oracles else None
        if oracles and (system is None or not system.conserved_quantities):
            raise ConfigError(
                f"key 'variants': {self.data.source!r} has no ground-truth generators, so it "
                f"has no {oracles[0]!r} variant"
            )
        try:
            device = torch.device(self.device)
        except (RuntimeError, ValueError) as exc:
            raise ConfigError(
                f"key 'device': {self.device!r} is not a torch device (use 'cpu' or 'cuda')"
            ) from exc
        if device.type not in ("cpu", "cuda", "mps"):
            raise ConfigError(f"key 'device': unsupported device type {device.type!r}")
        if self.train.batch_size is not None and self.train.batch_size > self.data.n_train:
            raise ConfigError(
                f"key 'train.batch_size': {self.train.batch_size} trajectories per batch but "
                f"only data.n_train = {self.data.n_train}; leave it out for full batch"
            )

    @property
    def torch_dtype(self) -> torch.dtype:
        """``torch.float32`` or ``torch.float64``."""
        return torch.float32 if self.dtype == "float32" else torch.float64


def load_experiment(path: str | os.PathLike[str]) -> ExperimentConfig:
    """Read an experiment TOML file strictly.

    Raises:
        ConfigError: missing file, invalid TOML, unknown key, wrong type or impossible value;
            the message starts with the file path and names the dotted key.
    """
    return load_config(path, ExperimentConfig, prepare=_data_file_relative_to(path))


def _data_file_relative_to(path: str | os.PathLike[str]):
    """Resolve a relative ``data.file`` against the config file's folder."""

    def prepare(raw: dict) -> dict:
        data = raw.get("data")
        if isinstance(data, dict) and isinstance(data.get("file"), str):
            file = Path(data["file"]).expanduser()
            if not file.is_absolute():
                data = {**data, "file": str((Path(path).resolve().parent / file).resolve())}
                raw = {**raw, "data": data}
        return raw

    return prepare
