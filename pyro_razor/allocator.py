r"""The C allocator's settings for training: keep freed memory in the process.

A training step allocates and frees the same large tensors (activations of ``P x S x n``
rows, their gradients) every step. glibc's ``malloc`` serves blocks above its mmap threshold
(128 KiB, raised dynamically) with fresh ``mmap`` pages and returns the top of its heap to the
kernel once more than ``M_TRIM_THRESHOLD`` is free, so each step faults in and zeroes the
same pages again: kernel time, not arithmetic. :func:`keep_freed_memory` raises both
thresholds, so freed blocks below 32 MiB are reused from the heap. It changes no result (the
same arithmetic on other addresses); the process keeps its peak heap instead of handing it
back between steps.

Measured on the project's 2-core AMD EPYC VM in fresh processes (``experiments/RESULTS.md``,
issue 26): the learned step of ``discover`` on a spring file 60-81 -> 43-46 ms, the n = 2
quick config's learned step 85 -> 67-70 ms, the quick SHO evaluation's metrics 3.5 -> 1.8 s;
the quick SHO training step (tensors of a few KiB) is unchanged. End to end, ``run`` of the
n = 2 quick config with ``--jobs 2`` took 215 -> 196 s; inside ``discover``, whose process has
run other work before training, the learned model's training did not change.

``pyro-razor``'s commands, :func:`~pyro_razor.runs.run_experiment` (and so the razor stage of
:func:`~pyro_razor.runs.discover.run_discovery`) and their worker processes call it; a library
user training in their own process can call it once at the start.
"""

from __future__ import annotations

import ctypes
import functools

__all__ = ["MMAP_THRESHOLD_BYTES", "TRIM_THRESHOLD_BYTES", "keep_freed_memory"]

MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
"""Blocks below this size come from the heap (glibc's largest allowed mmap threshold on
64-bit systems)."""

TRIM_THRESHOLD_BYTES = 2**31 - 1
"""Free memory at the heap's top kept before it is returned to the kernel (``mallopt`` takes
a C ``int``)."""

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


@functools.cache
def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds (:data:`MMAP_THRESHOLD_BYTES`,
    :data:`TRIM_THRESHOLD_BYTES`) for this process, once.

    Returns:
        ``True`` where both settings were applied; ``False`` where the C library is not glibc
        (macOS, musl, Windows), which is left as it is.
    """
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - present in glibc only
        mallopt = libc.mallopt
    except (AttributeError, OSError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return (mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
            and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1)
