"""Atomic file writes: a crash mid-write never leaves a truncated file behind; JSON and text
written through them."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

__all__ = ["atomic_path", "json_safe", "write_json", "write_text"]


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success ``os.replace`` it onto ``path``.

    The parent directory is created. If the body raises, the temporary file is removed and
    ``path`` is left as it was.

    Example::

        with atomic_path("run/checkpoint.pt") as tmp:
            torch.save(state, tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def json_safe(obj):
    """A JSON-ready copy: non-finite floats become ``None``; tensors, arrays and NumPy scalars
    become Python lists and numbers."""
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, torch.Tensor):
        return json_safe(obj.tolist())
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [json_safe(v) for v in list(obj)]
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj) -> None:
    """Write :func:`json_safe` of ``obj`` atomically (indented, strict JSON)."""
    write_text(path, json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n")
