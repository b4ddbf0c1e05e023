"""The user errors of runs, printed by the command line as one line (exit status 2)."""

from __future__ import annotations

__all__ = ["RunError"]


class RunError(ValueError):
    """A user error about a run: device not available, output directory in use, resume
    mismatch, not a run directory, an unreadable run file."""
