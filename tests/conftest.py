"""Shared test options: ``--device`` for the tests marked ``device`` (run on the CPU by default,
on a GPU with ``python -m pytest -m device --device cuda``)."""

from __future__ import annotations

import pytest
import torch


def pytest_addoption(parser) -> None:
    parser.addoption("--device", default="cpu",
                     help="torch device of the tests marked `device` (default cpu)")


@pytest.fixture
def device(request) -> torch.device:
    """The ``--device`` of the run; CUDA tests skip where CUDA is absent."""
    name = request.config.getoption("--device")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA is not available on this machine")
    return dev
