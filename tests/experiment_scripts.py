"""Load a script of ``experiments/`` as a module (the scripts are not a package)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


def load_experiment(relative: str):
    """``experiments/<relative>`` (e.g. ``"sweeps/sweep.py"``) executed as a fresh module."""
    path = EXPERIMENTS / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
