r"""Independent pieces of a run (its variants) in worker processes, so that small problems use
every core.

A quick config's SVI step is mostly Python and Pyro bookkeeping (a few thousand rows through a
64-wide network), so one process keeps about one core busy whatever torch's thread count;
training ``vanilla``, ``learned`` and ``oracle`` in separate processes runs them side by side.
Each worker is a fresh ``spawn``-ed interpreter with ``torch.set_num_threads(threads)``, and
every variant is built from a fresh param store and its own seeds, so a variant's numbers are
those of a one-process run with the same thread count (a test checks them bit for bit).
Changing the thread count, in either kind of run, can change the last bits of a result
(torch's reductions are then split differently).

Warnings raised in a worker are recorded there and raised again in the parent, so that a
command's warning filter and format apply to them as to its own.
"""

from __future__ import annotations

import multiprocessing
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

import torch

from pyro_razor.allocator import keep_freed_memory

__all__ = ["default_threads", "run_in_processes"]


def default_threads(jobs: int) -> int:
    """Torch threads per worker when ``jobs`` workers share this machine: the cores this
    process may use (``os.sched_getaffinity`` where it exists) divided among them, at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // jobs)


def _call_recording_warnings(fn: Callable, args: tuple, threads: int):
    """Run ``fn(*args)`` with ``threads`` torch threads and the training allocator settings
    (:func:`~pyro_razor.allocator.keep_freed_memory`): ``(result, [(message, category)])``."""
    torch.set_num_threads(threads)
    keep_freed_memory()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn(*args)
    return result, [(str(w.message), w.category) for w in caught]


def run_in_processes(
    fn: Callable, tasks: Sequence[tuple], jobs: int, threads: int | None = None
) -> Iterator[tuple[int, Any]]:
    """Call ``fn(*task)`` for every task in at most ``jobs`` spawned worker processes; yield
    ``(index, result)`` as each finishes.

    Args:
        fn: a module-level function (workers import it by name); its arguments and result
            must pickle.
        tasks: one argument tuple per call.
        jobs: worker processes (>= 1); never more than there are tasks.
        threads: torch threads per worker (default :func:`default_threads`).

    Raises:
        ValueError: ``jobs`` < 1.
        Whatever a call raised, in the parent, after the calls already running have ended
        (calls not yet started are cancelled).
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    workers = min(jobs, len(tasks))
    if workers == 0:
        return
    threads = threads or default_threads(workers)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(_call_recording_warnings, fn, task, threads): i
                   for i, task in enumerate(tasks)}
        try:
            for future in as_completed(futures):
                result, caught = future.result()
                for message, category in caught:
                    warnings.warn(message, category, stacklevel=2)
                yield futures[future], result
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
