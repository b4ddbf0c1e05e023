"""Redo the analysis of a finished run from its checkpoints (``pyro-razor analyse``)."""

from __future__ import annotations

import os

from pyro_razor.runs.figures import make_figures
from pyro_razor.runs.results import VariantArtefacts, analyse_variant
from pyro_razor.runs.rundir import RunDir
from pyro_razor.runs.variants import load_run_config, load_variant

__all__ = ["analyse_run"]


def _check_files(run: RunDir, summary: dict) -> None:
    """Read every checkpoint, metrics and history file of the summary's variants."""
    for variant in summary["variants"]:
        if not run.checkpoint(variant).is_file():
            raise FileNotFoundError(
                f"no checkpoint for variant {variant!r} in {run.root} "
                f"({run.checkpoint(variant)} is missing); train it with {run.rerun_hint()}"
            )
        run.read_checkpoint(variant)
        run.read_metrics(variant)
        run.read_history(variant)


def analyse_run(run_dir: str | os.PathLike, device: str | None = None) -> dict:
    """Recompute the long-horizon and symmetry analysis files, the summary fields they feed and
    every figure of a finished run from its checkpoints (training metrics are kept).

    Every file it reads is checked before anything is written.

    Raises:
        FileNotFoundError: ``run_dir`` has no ``summary.json``/``config.toml`` or a checkpoint
            is missing.
        RunError: ``summary.json``, a checkpoint, a ``metrics.json`` or a ``history.csv`` is
            damaged (the message names the file).
    """
    run = RunDir(run_dir)
    summary = run.read_summary()
    config = load_run_config(run)
    _check_files(run, summary)
    artefacts: dict[str, VariantArtefacts] = {}
    data = system = None
    for variant in summary["variants"]:
        config, loaded, model, guide = load_variant(run.root, variant, device)
        if data is None:
            data, system = loaded, loaded.system
        art = VariantArtefacts(history=run.read_history(variant))
        fields = analyse_variant(config, variant, system, model, guide, data, run, art)
        summary["variants"][variant].update(fields)
        metrics = run.read_metrics(variant)
        metrics.update(fields)
        run.write_json(variant, "metrics.json", metrics)
        artefacts[variant] = art
    run.write_summary(summary)
    if data is not None:
        make_figures(run, config, system, data, artefacts)
    return summary
