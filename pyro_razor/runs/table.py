"""Paper-style results tables of finished runs (``pyro-razor table``); a run that has not
finished every variant of its config says which are missing and how to continue."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

from pyro_razor.runs.config import VARIANT_LABELS, load_experiment
from pyro_razor.runs.rundir import RunDir

__all__ = ["format_number", "format_table"]


def format_number(value) -> str:
    """A table cell: 4 significant digits, scientific below 1e-3 or from 1e5, ``n/a`` for
    missing or non-finite values."""
    if value is None:
        return "n/a"
    if isinstance(value, float) and not math.isfinite(value):
        return "n/a"
    value = float(value)
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.3e}"
    return f"{value:.4g}"


def _ppc_columns(run: RunDir, variants: list[str]) -> dict[str, tuple[str, str]]:
    """Held-out mean log predictive density per transition and the PSIS-LOO verdict of each
    variant, from ``ppc_comparison.json`` (written by ``pyro-razor ppc``); empty if absent."""
    comparison = run.read_ppc_comparison()
    if comparison is None:
        return {}
    out = {}
    for variant in variants:
        test = comparison.get("test", {}).get(variant)
        loo = comparison.get("loo", {}).get(variant)
        if test is None:
            continue
        mlpd = f"{test['mlpd']:.4g} ± {test.get('mlpd_se', float('nan')):.2g}"
        if loo is None:
            verdict = ""
        elif loo.get("reliable"):
            verdict = f"{loo['elpd_loo_per_point']:.4g}/N"
        else:
            verdict = f"unreliable ({100 * loo.get('share_k_gt_0.7', float('nan')):.0f}% k > 0.7)"
        out[variant] = (mlpd, verdict)
    return out


def _error_text(se) -> str:
    """`` ± se`` for a finite Monte-Carlo standard error, else nothing."""
    return f" ± {format_number(se)}" if isinstance(se, float) and math.isfinite(se) else ""


def _table(run: RunDir) -> str:
    summary = run.read_summary()
    variants = summary["variants"]
    for variant in variants:  # a damaged metrics.json means the run is not what it says
        run.read_metrics(variant)
    extras = sorted({k[len("test_mse_"):] for m in variants.values() for k in m
                     if k.startswith("test_mse_")})
    columns = [("Train MSE", "train_mse"), ("NLL/N", "nll_per_n"), ("KL/N", "kl_per_n"),
               ("-ELBO/N", "neg_elbo_per_n"), ("Test MSE", "test_mse")]
    columns += [(f"Test {e}", f"test_mse_{e}") for e in extras]
    header = (f"{summary.get('experiment', run.root.name)} ({summary.get('system', '?')}, "
              f"N = {summary.get('n_train_transitions', '?')}, {summary.get('device', '?')})")
    lines = [header, "",
             "| Model | " + " | ".join(c for c, _ in columns) + " |",
             "|---|" + "---|" * len(columns)]
    ppc = _ppc_columns(run, list(variants))
    if ppc:
        lines[2] = lines[2] + " Test mlpd/N (PPC) | PSIS-LOO |"
        lines[3] = lines[3] + "---|---|"
    for variant, m in variants.items():
        errors = m.get("standard_errors", {})
        cells = [format_number(m.get(key)) + _error_text(errors.get(key)) for _, key in columns]
        if ppc:
            cells += list(ppc.get(variant, ("", "")))
        lines.append(f"| {VARIANT_LABELS.get(variant, variant)} | " + " | ".join(cells) + " |")
    missing = _missing_variants(run, variants)
    if missing:
        lines += ["", f"not finished: {', '.join(missing)} (continue with {run.rerun_hint()})"]
    return "\n".join(lines)


def _missing_variants(run: RunDir, finished) -> list[str]:
    """The variants the run's config lists that its summary does not hold yet."""
    if not run.config_path.is_file():
        return []
    return [v for v in load_experiment(run.config_path).variants if v not in finished]


def format_table(run_dirs: Sequence[str | os.PathLike]) -> str:
    """Paper-style markdown tables (Train MSE, NLL/N, KL/N, -ELBO/N, Test MSE [, moved,
    wider]) for each run directory, read from its ``summary.json``; with the posterior
    predictive comparison (held-out mean log predictive density per transition and the
    PSIS-LOO verdict) when ``pyro-razor ppc`` has been run on it.

    Raises:
        FileNotFoundError: a directory has no ``summary.json``.
        RunError: its ``summary.json``, a listed variant's ``metrics.json`` or its
            ``ppc_comparison.json`` is damaged (the message names the file).
    """
    blocks = []
    for run_dir in run_dirs:
        run = RunDir(run_dir)
        if not run.summary_path.is_file():
            raise FileNotFoundError(f"no summary.json in {run_dir}: not a finished pyro-razor run")
        blocks.append(_table(run))
    return "\n\n".join(blocks) + "\n"
