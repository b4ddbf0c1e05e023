"""The training allocator settings (``pyro_razor/allocator.py``): freed tensors' pages stay in
the process instead of going back to the kernel, and nothing else changes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from pyro_razor.allocator import keep_freed_memory

glibc_linux = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not os.confstr("CS_GNU_LIBC_VERSION"),
    reason="the settings are glibc's",
)

# Resident memory handed back to the kernel when a filled 16 MiB tensor is freed, in MiB.
FREED_BACK = textwrap.dedent("""
    import os, sys, torch
    from pyro_razor.allocator import keep_freed_memory
    if sys.argv[1] == "keep":
        assert keep_freed_memory()
    page = os.sysconf("SC_PAGE_SIZE")
    def resident():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page
    x = torch.ones(4 * 2**20)  # 16 MiB, every page written
    held = resident()
    del x
    print((held - resident()) / 2**20)
""")


def _freed_back_mib(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", FREED_BACK, mode], capture_output=True,
                         text=True, check=True)
    return float(out.stdout.strip())


@glibc_linux
def test_keep_freed_memory_applies_once_under_glibc():
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True  # cached: set once per process


@glibc_linux
def test_freed_pages_stay_in_the_process_only_with_the_settings():
    """By default glibc unmaps a freed 16 MiB block at once (its pages go back: >= 15 MiB
    less resident); with the settings the block is reused from the heap (< 1 MiB back)."""
    assert _freed_back_mib("default") >= 15.0
    assert _freed_back_mib("keep") < 1.0


def test_keep_freed_memory_leaves_other_c_libraries_alone(monkeypatch):
    """Where the C library has no ``gnu_get_libc_version`` (not glibc) nothing is set."""
    import ctypes

    class NotGlibc:
        def __getattr__(self, name):
            raise AttributeError(name)

    keep_freed_memory.cache_clear()
    monkeypatch.setattr(ctypes, "CDLL", lambda name: NotGlibc())
    try:
        assert keep_freed_memory() is False
    finally:
        keep_freed_memory.cache_clear()


def test_every_command_sets_the_allocator_first(monkeypatch, tmp_path, capsys):
    """``pyro-razor``'s entry point applies the settings before its command runs (here one
    that fails at once on a missing run directory)."""
    import pyro_razor.allocator as allocator
    from pyro_razor.cli import main

    calls = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(1) or True)
    assert main(["table", str(tmp_path / "missing")]) == 2
    assert calls == [1]
    assert "pyro-razor: error:" in capsys.readouterr().err
