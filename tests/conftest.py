"""Shared test options: ``--device`` for the tests marked ``device`` (run on the CPU by default,
on a GPU with ``python -m pytest -m device --device cuda``)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser) -> None:
    parser.addoption("--device", default="cpu",
                     help="torch device of the tests marked `device` (default cpu)")


@pytest.fixture
def device(request):
    """The ``--device`` of the run (a ``torch.device``); CUDA tests skip where CUDA is absent.
    torch is imported here, not at the top, so that torch-free tests (the ArviZ 1.x line of
    ``tests/test_arviz_versions.py`` on Python 3.12) can run with this conftest."""
    import torch

    name = request.config.getoption("--device")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA is not available on this machine")
    return dev
