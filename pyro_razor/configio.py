"""Strict loading and saving of typed, nested dataclass configs as TOML.

An experiment is described by nested (usually frozen) dataclasses; this module turns a TOML file
into such an object and back, independent of any particular config class:

* :func:`from_dict` builds a dataclass from a mapping, recursively, checking every value against
  the field's type annotation;
* :func:`load_config` reads a TOML file and calls :func:`from_dict`;
* :func:`to_dict` and :func:`dump_toml` write a config back (the resolved config of a run), so that
  ``from_dict(cls, tomllib.loads(dump_toml(to_dict(x)))) == x``;
* :func:`replace_path` returns a copy with one dotted field replaced (CLI overrides).

Supported field types: ``int``, ``float`` (an int value is converted), ``bool``, ``str``,
``Literal[...]``, unions such as ``X | None`` / ``Optional[X]``, ``tuple[T, ...]``, fixed
``tuple[A, B]``, ``list[T]``, ``dict[str, T]`` and nested dataclasses, combined freely.

Conversion is strict: a bool is never an int or a float and an int is never a bool; an int field
accepts a float only if it is integral (``steps = 1e4``); floats must be finite (TOML's
``inf``/``nan`` are rejected, on reading and on writing). TOML has no null, so an optional field
can be ``None`` only by being left out: :func:`to_dict` omits ``None`` fields whose default is
``None`` and refuses other ``None`` values. Every problem raises :class:`ConfigError` naming the
dotted key path, e.g. ``model.hidden[1]``.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import os
import re
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

try:  # Python >= 3.11
    import tomllib as _tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    try:
        import tomli as _tomllib
    except ModuleNotFoundError:
        _tomllib = None

__all__ = [
    "ConfigError",
    "dump_toml",
    "from_dict",
    "load_config",
    "replace_path",
    "to_dict",
]

T = TypeVar("T")

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
            "\r": "\\r"}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class ConfigError(ValueError):
    """A config value, key or file is invalid; the message names the dotted key path."""


# ----------------------------------------------------------------------------- small helpers


def _quote(s: str) -> str:
    """``s`` as a TOML basic string (quotes, backslashes and control characters escaped)."""
    out = []
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _key(key: str) -> str:
    """``key`` as a TOML key: bare if it only uses ``A-Za-z0-9_-``, else quoted."""
    return key if _BARE_KEY.fullmatch(key) else _quote(key)


def _join(path: str, key: str) -> str:
    """The dotted path of ``key`` inside ``path`` (``"model" + "hidden" -> "model.hidden"``)."""
    return f"{path}.{_key(key)}" if path else _key(key)


def _at(path: str) -> str:
    return f"key '{path}'" if path else "config"


def _found(value: Any) -> str:
    """A short description of a value for error messages, e.g. ``str 'abc'``."""
    if isinstance(value, (list, tuple)):
        kind = "array"
    elif isinstance(value, Mapping):
        kind = "table"
    else:
        kind = type(value).__name__
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{kind} {text}"


def _type_name(tp: Any) -> str:
    """A readable name for a type annotation, e.g. ``tuple[int, ...]`` or ``int or None``."""
    if tp is type(None):
        return "None"
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(c) for c in args)
    if origin is Union or origin is types.UnionType:
        return " or ".join(_type_name(a) for a in args)
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else _type_name(a) for a in args)
        return f"{origin.__name__}[{inner}]"
    if dataclasses.is_dataclass(tp):
        return f"table ({tp.__name__})"
    return getattr(tp, "__name__", repr(tp))


def _expected(tp: Any, value: Any, path: str, hint: str = "") -> ConfigError:
    return ConfigError(f"{_at(path)}: expected {_type_name(tp)}, got {_found(value)}{hint}")


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    """Resolved type hints of a dataclass (string annotations included)."""
    try:
        return get_type_hints(cls)
    except (NameError, TypeError) as exc:
        raise TypeError(
            f"cannot resolve the type annotations of {cls.__name__}: {exc}; define config "
            "dataclasses at module level and import every type their annotations use"
        ) from exc


def _init_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of a dataclass that its ``__init__`` takes (the ones a config file sets)."""
    return [f for f in dataclasses.fields(cls) if f.init]


def _unknown_key(path: str, key: str, valid: list[str]) -> ConfigError:
    """Error for an unknown key, suggesting the closest valid one."""
    match = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean '{match[0]}'?)" if match else ""
    return ConfigError(
        f"unknown key '{_join(path, key)}'{hint}; valid keys: {', '.join(valid) or '(none)'}"
    )


def _build(cls: type[T], kwargs: dict[str, Any], where: str) -> T:
    """``cls(**kwargs)``, re-raising its own validation errors as ConfigError at ``where``."""
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        place = f"'{where}' ({cls.__name__})" if where else cls.__name__
        raise ConfigError(f"invalid {place}: {exc}") from exc


# ----------------------------------------------------------------------------- reading


def _convert(tp: Any, value: Any, path: str) -> Any:
    """Check ``value`` against annotation ``tp`` and return it in the field's Python form."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        if any(type(value) is type(c) and value == c for c in args):
            return value
        hint = ""
        if isinstance(value, str):
            match = difflib.get_close_matches(value, [c for c in args if isinstance(c, str)], n=1)
            hint = f" (did you mean {match[0]!r}?)" if match else ""
        raise _expected(tp, value, path, hint)
    if origin is Union or origin is types.UnionType:
        return _convert_union(tp, args, value, path)
    if tp is type(None):
        if value is None:
            return None
        raise _expected(tp, value, path)
    if value is None:
        raise _expected(tp, value, path)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _expected(tp, value, path)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        hint = " (it has a fractional part)" if isinstance(value, float) else ""
        raise _expected(tp, value, path, hint)
    if tp is float:
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                return float(value)
            except OverflowError:
                raise _expected(tp, value, path, " (too large for a float)") from None
        if isinstance(value, float):
            if math.isfinite(value):
                return value
            raise _expected(tp, value, path, " (config floats must be finite)")
        raise _expected(tp, value, path)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _expected(tp, value, path)
    if origin is tuple or origin is list:
        return _convert_array(tp, origin, args, value, path)
    if origin is dict:
        if len(args) != 2 or args[0] is not str:
            raise TypeError(f"unsupported field type {tp!r} at {_at(path)}: use dict[str, T]")
        if not isinstance(value, Mapping):
            raise _expected(tp, value, path, " (a TOML table)")
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"{_at(path)}: table keys must be strings, got {_found(key)}")
            out[key] = _convert(args[1], item, _join(path, key))
        return out
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return from_dict(tp, value, path)
    raise TypeError(
        f"unsupported field type {tp!r} at {_at(path)}; supported: int, float, bool, str, "
        "Literal, X | None, tuple[T, ...], list[T], dict[str, T] and dataclasses"
    )


def _convert_union(tp: Any, args: tuple, value: Any, path: str) -> Any:
    """A union takes a value of an exactly matching scalar member first, then the first fit."""
    none = type(None)
    if value is None:
        if none in args:
            return None
        raise _expected(tp, value, path)
    arms = [a for a in args if a is not none]
    if len(arms) == 1:  # `X | None` with a value: X's own error is the informative one
        try:
            return _convert(arms[0], value, path)
        except ConfigError:
            if arms[0] in (bool, int, float, str):
                raise _expected(tp, value, path) from None
            raise
    for arm in arms:
        if arm in (bool, int, float, str) and type(value) is arm:
            return value
    for arm in arms:
        try:
            return _convert(arm, value, path)
        except ConfigError:
            pass
    raise _expected(tp, value, path)


def _convert_array(tp: Any, origin: type, args: tuple, value: Any, path: str) -> Any:
    """Convert a TOML array to ``tuple[T, ...]``, ``tuple[A, B, ...]`` or ``list[T]``."""
    if not isinstance(value, (list, tuple)):
        raise _expected(tp, value, path, " (a TOML array)")
    if origin is list or (len(args) == 2 and args[1] is Ellipsis):
        if not args:
            raise TypeError(f"unsupported field type {tp!r} at {_at(path)}: use list[T]")
        items = [_convert(args[0], item, f"{path}[{i}]") for i, item in enumerate(value)]
    else:
        if not args or Ellipsis in args:
            raise TypeError(f"unsupported field type {tp!r} at {_at(path)}: use tuple[T, ...]")
        if len(value) != len(args):
            raise _expected(tp, value, path, f" (need exactly {len(args)} items)")
        items = [_convert(args[i], item, f"{path}[{i}]") for i, item in enumerate(value)]
    return items if origin is list else tuple(items)


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from a (TOML-parsed) mapping, checking every value's type.

    Args:
        cls: a dataclass type whose fields use the supported annotations (module docstring).
        data: one entry per ``__init__`` field; fields with defaults may be left out; nested
            dataclass fields take nested mappings.
        where: dotted key path of ``data`` inside the whole config (for error messages).

    Returns:
        ``cls(**converted)``; arrays become tuples for tuple fields, ints become floats for
        float fields.

    Raises:
        ConfigError: unknown key (with the closest valid one), missing required key, wrong type
            or value, or a ``ValueError``/``TypeError`` from ``cls.__post_init__`` (re-raised with
            the key path of ``cls``).
        TypeError: ``cls`` is not a dataclass or uses an unsupported annotation.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"from_dict needs a dataclass type, got {cls!r}")
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{_at(where)}: expected a table of {cls.__name__} fields, got {_found(data)}"
        )
    fields = _init_fields(cls)
    names = [f.name for f in fields]
    for key in data:
        if not isinstance(key, str):
            raise ConfigError(f"{_at(where)}: keys must be strings, got {_found(key)}")
        if key not in names:
            raise _unknown_key(where, key, names)
    hints = _field_types(cls)
    kwargs = {}
    for f in fields:
        path = _join(where, f.name)
        if f.name in data:
            kwargs[f.name] = _convert(hints[f.name], data[f.name], path)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required key '{path}' ({_type_name(hints[f.name])})")
    return _build(cls, kwargs, where)


def load_config(
    path: str | os.PathLike[str], cls: type[T], prepare: Callable[[dict], dict] | None = None
) -> T:
    """Read the TOML file ``path`` and build ``cls`` from it with :func:`from_dict`
    (``prepare``, if given, may rewrite the parsed table first, e.g. resolve relative paths).

    Raises:
        ConfigError: the file is missing, is not valid UTF-8 TOML (the message carries the
            parser's line and column), or does not match ``cls``; the message starts with the path.
        ModuleNotFoundError: on Python 3.10 without the ``tomli`` package.
    """
    if _tomllib is None:  # pragma: no cover - Python 3.10 only
        raise ModuleNotFoundError(
            "reading TOML on Python 3.10 needs the 'tomli' package: pip install tomli "
            "(Python >= 3.11 has tomllib built in)"
        )
    p = Path(path)
    if not p.is_file():
        what = "is not a file" if p.exists() else "not found"
        raise ConfigError(f"config file {what}: {p}")
    try:
        with p.open("rb") as fh:
            data = _tomllib.load(fh)
    except _tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML in {p}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"invalid TOML in {p}: not UTF-8 text ({exc})") from exc
    if prepare is not None:
        data = prepare(data)
    try:
        return from_dict(cls, data)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from exc


# ----------------------------------------------------------------------------- writing


def _plain(value: Any, path: str) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain_dataclass(value, path)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"{_at(path)}: TOML keys must be strings, got {_found(key)}")
            out[key] = _plain(item, _join(path, key))
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if value is None:
        raise ConfigError(f"cannot write {_at(path)} to TOML: None has no TOML form")
    return value


def _plain_dataclass(obj: Any, where: str) -> dict[str, Any]:
    out = {}
    for f in _init_fields(type(obj)):
        value, path = getattr(obj, f.name), _join(where, f.name)
        if value is None:
            if f.default is None:
                continue  # leaving it out means None again when read back
            raise ConfigError(
                f"cannot write {_at(path)} to TOML: it is None, TOML has no null and leaving it "
                "out would not give None back; give the field the default None"
            )
        out[f.name] = _plain(value, path)
    return out


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass instance as a plain nested dict of TOML-able values.

    Nested dataclasses become dicts, tuples become lists; ``None`` fields whose default is
    ``None`` are left out (TOML has no null), so :func:`from_dict` restores them.

    Raises:
        TypeError: ``obj`` is not a dataclass instance.
        ConfigError: a ``None`` value that leaving out would not restore.
    """
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        raise TypeError(f"to_dict needs a dataclass instance, got {_found(obj)}")
    return _plain_dataclass(obj, "")


def _value(value: Any, path: str) -> str:
    """One TOML value (scalar, array or inline table) on a single line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ConfigError(f"cannot write {_at(path)} to TOML: {value} is outside int64")
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(
                f"cannot write {_at(path)} to TOML: {value} is not finite (configs must hold "
                "finite numbers)"
            )
        return repr(value)  # shortest repr round-trips exactly and is valid TOML (1e-05, 0.1)
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v, f"{path}[{i}]") for i, v in enumerate(value)) + "]"
    if isinstance(value, Mapping):
        items = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"{_at(path)}: TOML keys must be strings, got {_found(key)}")
            items.append(f"{_key(key)} = {_value(item, _join(path, key))}")
        return "{ " + ", ".join(items) + " }" if items else "{}"
    if value is None:
        raise ConfigError(f"cannot write {_at(path)} to TOML: None has no TOML form")
    raise ConfigError(f"cannot write {_at(path)} to TOML: unsupported value {_found(value)}")


def _write_table(table: Mapping[str, Any], keys: list[str], lines: list[str]) -> None:
    path = ".".join(_key(k) for k in keys)
    for key in table:
        if not isinstance(key, str):
            raise ConfigError(f"{_at(path)}: TOML keys must be strings, got {_found(key)}")
    if keys:
        if lines:
            lines.append("")
        lines.append(f"[{path}]")
    subtables = []
    for key, value in table.items():
        if isinstance(value, Mapping):
            subtables.append(key)
        else:
            lines.append(f"{_key(key)} = {_value(value, _join(path, key))}")
    for key in subtables:  # key/value pairs must come before the sub-table headers
        _write_table(table[key], [*keys, key], lines)


def dump_toml(obj: Any) -> str:
    """Write a dataclass instance (via :func:`to_dict`) or a nested dict as TOML text.

    Values: str, int (int64), finite float, bool, arrays of values (dicts inside arrays become
    inline tables) and nested tables (``[a.b]`` headers). Keys are quoted when not bare.

    Raises:
        TypeError: ``obj`` is neither a dataclass instance nor a mapping.
        ConfigError: a value TOML cannot hold (``None``, ``inf``/``nan``, other types, non-str
            keys); the message names its key path.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = to_dict(obj)
    if not isinstance(obj, Mapping):
        raise TypeError(f"dump_toml needs a dataclass instance or a mapping, got {_found(obj)}")
    lines: list[str] = []
    _write_table(obj, [], lines)
    return "\n".join(lines) + "\n" if lines else ""


# ----------------------------------------------------------------------------- overrides


def replace_path(obj: T, path: str, value: Any) -> T:
    """A copy of dataclass ``obj`` with the field at dotted ``path`` replaced by ``value``.

    ``value`` is checked and converted like a config value (``"train.epochs", 5``; a nested
    dataclass field also takes a mapping or an instance), and every dataclass on the path is
    rebuilt, so their ``__post_init__`` validation runs again. ``obj`` is not modified.

    Raises:
        ConfigError: unknown field on the path (with the closest valid name), a path through a
            non-dataclass value, or an invalid value.
        TypeError: ``obj`` is not a dataclass instance.
    """
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        raise TypeError(f"replace_path needs a dataclass instance, got {_found(obj)}")
    keys = path.split(".")
    if not all(keys):
        raise ConfigError(f"invalid key path {path!r}: use dotted field names like 'train.epochs'")

    def rebuild(node: Any, i: int, where: str) -> Any:
        cls = type(node)
        names = [f.name for f in _init_fields(cls)]
        key = keys[i]
        if key not in names:
            raise _unknown_key(where, key, names)
        here = _join(where, key)
        if i == len(keys) - 1:
            new = _convert(_field_types(cls)[key], value, here)
        else:
            child = getattr(node, key)
            if not dataclasses.is_dataclass(child) or isinstance(child, type):
                raise ConfigError(
                    f"cannot set '{path}': '{here}' holds {_found(child)}, not a table of fields"
                )
            new = rebuild(child, i + 1, here)
        kwargs = {name: getattr(node, name) for name in names}
        kwargs[key] = new
        return _build(cls, kwargs, where)

    return rebuild(obj, 0, "")
