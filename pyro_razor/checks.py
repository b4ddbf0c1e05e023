"""Argument checks shared by the library: one clear ``ValueError`` naming the argument."""

from __future__ import annotations

__all__ = ["check_int"]


def check_int(value: object, name: str, minimum: int = 1) -> int:
    """Return ``value`` if it is an ``int`` (not a ``bool``) of at least ``minimum``.

    Raises:
        ValueError: ``"<name> must be an int >= <minimum>, got <value>"``.
    """
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value
