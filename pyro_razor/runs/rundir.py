"""A run directory and every file in it: the one place that knows their names and formats.

::

    <run>/
      config.toml            the resolved experiment config
      summary.json           per-variant figures of the paper's tables
      ppc_comparison.json    predictive comparison of the variants (``pyro-razor ppc``)
      figures/               every figure of the run
      <variant>/
        checkpoint.pt        resumable training state
        history.csv          one row per epoch
        metrics.json         the variant's summary entry plus prior/noise variances
        longterm.json        long-horizon rollouts against the exact solution
        symmetry.json        learned variants: SVD analysis of the generators (section 5.1)
        generators.pt        learned variants: the generators ``(K, M+1, M+1)``
        ppc.json, ppc.nc, ppc_train.nc   posterior predictive checks

JSON and text are written atomically; reading a missing file raises ``FileNotFoundError`` with
the command that creates it, reading a damaged one (truncated, random bytes, valid JSON of the
wrong shape, an unreadable checkpoint) raises :class:`~pyro_razor.runs.errors.RunError` with
one line naming the file, what is wrong and how to recreate it.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from pyro_razor.atomic import atomic_path, write_json, write_text
from pyro_razor.configio import dump_toml
from pyro_razor.inference.checkpoints import CheckpointError, load_checkpoint
from pyro_razor.runs.errors import RunError

__all__ = ["HISTORY_COLUMNS", "RunDir", "read_history"]

HISTORY_COLUMNS = ["epoch", "neg_elbo_per_n", "nll_per_n", "kl_per_n", "train_mse", "lr", "seconds"]
"""The leading columns of ``history.csv`` (further record keys follow)."""

RUN_HINT = "run `pyro-razor run CONFIG` first"


def read_history(path: str | os.PathLike) -> list[dict[str, float]]:
    """Read a ``history.csv`` back (``epoch`` as int, the rest as float)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [
        {k: (int(float(v)) if k == "epoch" else float(v)) for k, v in row.items() if v != ""}
        for row in rows
    ]


class RunDir:
    """Paths and reads/writes of one run directory.

    Args:
        root: the directory (need not exist yet).
    """

    VARIANT_FILES = ("checkpoint.pt", "history.csv", "metrics.json", "longterm.json",
                     "symmetry.json", "generators.pt", "quantities.json", "ppc.json", "ppc.nc",
                     "ppc_train.nc")

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    # ------------------------------------------------------------------ paths
    @property
    def config_path(self) -> Path:
        return self.root / "config.toml"

    @property
    def summary_path(self) -> Path:
        return self.root / "summary.json"

    @property
    def ppc_comparison_path(self) -> Path:
        return self.root / "ppc_comparison.json"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    def variant(self, name: str) -> Path:
        """``<run>/<name>/``."""
        return self.root / name

    def file(self, variant: str, name: str) -> Path:
        """``<run>/<variant>/<name>`` for one of :attr:`VARIANT_FILES`."""
        if name not in self.VARIANT_FILES:
            raise ValueError(f"unknown run file {name!r}; one of {self.VARIANT_FILES}")
        return self.root / variant / name

    def checkpoint(self, variant: str) -> Path:
        return self.file(variant, "checkpoint.pt")

    def figure(self, name: str) -> Path:
        """``<run>/figures/<name>``."""
        return self.figures / name

    # ------------------------------------------------------------------ state
    def holds_run(self, variants: Sequence[str]) -> bool:
        """Whether a run (a config or any variant's checkpoint) is already here."""
        return self.config_path.is_file() or any(self.checkpoint(v).is_file() for v in variants)

    def trained_variants(self) -> list[str]:
        """Variant names with a checkpoint, in directory order."""
        return sorted(p.parent.name for p in self.root.glob("*/checkpoint.pt"))

    def variants_with_ppc(self) -> list[str]:
        """Variant names with both PPC netCDF files."""
        return sorted(p.parent.name for p in self.root.glob("*/ppc.nc")
                      if (p.parent / "ppc_train.nc").is_file())

    # ------------------------------------------------------------------ reads and writes
    def rerun_hint(self) -> str:
        """How to recreate a run file: resume the run from its own config."""
        return f"`pyro-razor run {self.config_path} --out {self.root} --resume`"

    def write_config(self, config) -> None:
        write_text(self.config_path, dump_toml(config))

    def read_summary(self) -> dict:
        """``summary.json``: an object whose ``"variants"`` maps names to objects.

        Raises:
            FileNotFoundError: it is missing.
            RunError: it is damaged.
        """
        if not self.summary_path.is_file():
            raise FileNotFoundError(
                f"no summary.json in {self.root}: not a finished pyro-razor run (run "
                "`pyro-razor run CONFIG --out DIR` first, or --resume an interrupted one)"
            )
        hint = f"rewrite it with {self.rerun_hint()} (finished variants are not retrained)"
        summary = _read_json(self.summary_path, hint)
        variants = summary.get("variants")
        if not isinstance(variants, dict):
            raise RunError(
                f"{self.summary_path} is damaged: 'variants' must be an object of per-variant "
                f"results, got {_kind(variants)}; {hint}"
            )
        for name, entry in variants.items():
            if not isinstance(entry, dict):
                raise RunError(
                    f"{self.summary_path} is damaged: variants.{name} must be an object, got "
                    f"{_kind(entry)}; {hint}"
                )
        return summary

    def write_summary(self, summary: dict) -> None:
        write_json(self.summary_path, summary)

    def read_json(self, variant: str, name: str) -> dict:
        """A variant's JSON file (an object); ``RunError`` if damaged."""
        hint = f"delete it and run {self.rerun_hint()} to recompute it"
        return _read_json(self.file(variant, name), hint)

    def write_json(self, variant: str, name: str, obj) -> None:
        write_json(self.file(variant, name), obj)

    def read_metrics(self, variant: str) -> dict:
        """``<variant>/metrics.json`` (``{}`` if absent); ``RunError`` if damaged."""
        path = self.file(variant, "metrics.json")
        return self.read_json(variant, "metrics.json") if path.is_file() else {}

    def read_checkpoint(self, variant: str) -> dict:
        """``<variant>/checkpoint.pt`` (:func:`~pyro_razor.inference.load_checkpoint`).

        Raises:
            FileNotFoundError: it is missing.
            RunError: it is unreadable or not a pyro-razor checkpoint.
        """
        try:
            return load_checkpoint(self.checkpoint(variant))
        except CheckpointError as exc:
            raise RunError(
                f"{exc}; delete it to retrain variant {variant!r} from scratch with "
                f"{self.rerun_hint()}, or restore it from a backup"
            ) from exc

    def write_history(self, variant: str, history: Sequence[dict]) -> None:
        keys = list(HISTORY_COLUMNS)
        for record in history:
            keys += [k for k in record if k not in keys]
        with atomic_path(self.file(variant, "history.csv")) as tmp:
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=keys)
                writer.writeheader()
                writer.writerows(history)

    def read_history(self, variant: str) -> list[dict[str, float]]:
        """``<variant>/history.csv`` (``[]`` if absent); ``RunError`` if damaged."""
        path = self.file(variant, "history.csv")
        if not path.is_file():
            return []
        try:
            return read_history(path)
        except (ValueError, TypeError, csv.Error) as exc:
            raise RunError(
                f"{path} is damaged ({type(exc).__name__}: {exc}); delete it and run "
                f"{self.rerun_hint()} to rewrite it from the checkpoint"
            ) from exc

    def write_generators(self, variant: str, generators: torch.Tensor) -> None:
        torch.save(generators.detach().cpu(), self.file(variant, "generators.pt"))

    def read_ppc_comparison(self) -> dict | None:
        """``ppc_comparison.json`` (``None`` if absent); ``RunError`` if damaged."""
        path = self.ppc_comparison_path
        if not path.is_file():
            return None
        hint = f"delete it or recompute it with `pyro-razor ppc {self.root}`"
        comparison = _read_json(path, hint)
        for section in ("test", "loo"):
            entries = comparison.get(section, {})
            if not isinstance(entries, dict) or not all(
                isinstance(e, dict) for e in entries.values()
            ):
                raise RunError(
                    f"{path} is damaged: '{section}' must map variants to objects; {hint}"
                )
        for name, entry in comparison.get("test", {}).items():
            if not isinstance(entry.get("mlpd"), (int, float)):
                raise RunError(f"{path} is damaged: test.{name}.mlpd is not a number; {hint}")
        return comparison

    def write_ppc_comparison(self, comparison: dict) -> None:
        write_json(self.ppc_comparison_path, comparison)


def _kind(value) -> str:
    """How a JSON value reads in an error message: ``"a list"``, ``"null"``, ..."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _read_json(path: Path, hint: str) -> dict:
    """A JSON object from ``path``; ``RunError`` (with ``hint``) if it is not one."""
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except json.JSONDecodeError as exc:
        raise RunError(
            f"{path} is damaged: not valid JSON ({exc.msg}: line {exc.lineno} column "
            f"{exc.colno}); {hint}"
        ) from exc
    except UnicodeDecodeError as exc:
        raise RunError(f"{path} is damaged: not UTF-8 text ({exc.reason}); {hint}") from exc
    if not isinstance(obj, dict):
        raise RunError(f"{path} is damaged: expected a JSON object, got {_kind(obj)}; {hint}")
    return obj
